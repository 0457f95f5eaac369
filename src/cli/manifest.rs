//! Reading and writing manifests, and finding the pods inside workloads.

use std::io::Read;

use serde_json::Value;

use super::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

pub struct Manifests {
    pub path: String,
    pub format: Format,
    pub docs: Vec<Value>,
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
    let (format, docs) = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: Value =
            serde_json::from_str(text).map_err(|e| input_err(format!("not valid JSON: {e}")))?;
        (Format::Json, vec![v])
    } else {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| input_err(format!("not valid YAML: {e}")))?;
        (
            Format::Yaml,
            docs.into_iter().filter(|d| !d.is_null()).collect(),
        )
    };
    Ok(Manifests {
        path: path.to_string(),
        format,
        docs,
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
