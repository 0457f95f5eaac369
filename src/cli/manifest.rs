//! Reading and writing manifests, and finding the pods inside workloads.

use std::io::Read;

use serde_json::Value;

use super::CliError;
use super::order::{Added, Ordered};
use crate::facts::json::Order;
use crate::template::TemplateSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

pub struct Manifests {
    pub path: String,
    pub format: Format,
    pub docs: Vec<Value>,
    /// The field order of each document as written.
    pub order: Vec<Order>,
}

/// Reads `path` (`-` for stdin): one JSON value, or YAML with any number of documents.
pub fn read(path: &str) -> Result<Manifests, CliError> {
    let input_err = |message: String| CliError::Input {
        path: path.to_string(),
        message,
    };
    let text = if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| input_err(format!("cannot read standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| input_err(format!("cannot read: {e}")))?
    };
    parse(path, &text)
}

pub fn parse(path: &str, text: &str) -> Result<Manifests, CliError> {
    let input_err = |message: String| CliError::Input {
        path: path.to_string(),
        message,
    };
    let trimmed = text.trim_start();
    let (format, docs, order) = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: Value =
            serde_json::from_str(text).map_err(|e| input_err(format!("not valid JSON: {e}")))?;
        let order: Order =
            serde_json::from_str(text).map_err(|e| input_err(format!("not valid JSON: {e}")))?;
        (Format::Json, vec![v], vec![order])
    } else {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| input_err(format!("not valid YAML: {e}")))?;
        let orders: Vec<Order> = serde_saphyr::from_multiple(text)
            .map_err(|e| input_err(format!("not valid YAML: {e}")))?;
        let (docs, order) = docs
            .into_iter()
            .zip(orders)
            .filter(|(d, _)| !d.is_null())
            .unzip();
        (Format::Yaml, docs, order)
    };
    Ok(Manifests {
        path: path.to_string(),
        format,
        docs,
        order,
    })
}

/// Renders documents in `format`. An error, never an empty document: output
/// that silently lost a manifest would be applied as if it were whole.
pub fn render(format: Format, docs: &[impl serde::Serialize]) -> Result<String, CliError> {
    let failed = |e: String| CliError::Failed(format!("cannot render the output: {e}"));
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        match format {
            Format::Json => {
                out.push_str(&serde_json::to_string_pretty(d).map_err(|e| failed(e.to_string()))?);
                out.push('\n');
            }
            Format::Yaml => {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(d).map_err(|e| failed(e.to_string()))?);
            }
        }
    }
    Ok(out)
}

/// Renders `docs` in `format` with the field order of `order` (the
/// documents they were made from, as written); what `templates` added, in
/// the order of the templates as written.
pub fn render_in_order(
    format: Format,
    docs: &[Value],
    order: &[Order],
    templates: &TemplateSet,
) -> Result<String, CliError> {
    let added = Added::of(templates);
    let ordered: Vec<Ordered<'_>> = docs
        .iter()
        .enumerate()
        .map(|(i, value)| Ordered::new(value, order.get(i), &added))
        .collect();
    render(format, &ordered)
}

/// A pod, or a workload's pod template, inside a document.
#[derive(Debug, Clone)]
pub struct PodRef {
    /// JSON pointer from the document to the pod-shaped object (`""` for a Pod).
    pub pointer: String,
    /// `Kind/name` for messages.
    pub label: String,
    pub namespace: Option<String>,
}

/// Finds the pods in a document. Kinds without pods give none; the caller
/// reports them.
pub fn pods_in(doc: &Value) -> Result<Vec<PodRef>, String> {
    let mut out = Vec::new();
    walk(doc, String::new(), &mut out, 0)?;
    Ok(out)
}

fn walk(doc: &Value, base: String, out: &mut Vec<PodRef>, depth: usize) -> Result<(), String> {
    let Some(kind) = doc.get("kind").and_then(Value::as_str) else {
        return Err("document has no kind".into());
    };
    let name = doc
        .pointer("/metadata/name")
        .or_else(|| doc.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let template = match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        "PodTemplate" => Some("/template"),
        "List" if depth == 0 => {
            let items = doc
                .get("items")
                .and_then(Value::as_array)
                .ok_or("List has no items array")?;
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{base}/items/{i}"), out, depth + 1)?;
            }
            None
        }
        _ => None,
    };
    if let Some(t) = template {
        let pointer = format!("{base}{t}");
        if !doc.pointer(t).is_some_and(Value::is_object) {
            return Err(format!("{kind}/{name} has no pod template at {t}"));
        }
        out.push(PodRef {
            pointer,
            label: format!("{kind}/{name}"),
            namespace,
        });
    }
    Ok(())
}

/// The kinds `pods_in` understands, for messages.
pub const WORKLOAD_KINDS: &str = "Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController, PodTemplate, List";
