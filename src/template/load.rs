//! Reading SidecarTemplates from a file, a multi-document file or a directory.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::validate::FieldError;
use super::{API_VERSION, KIND, Scope, SidecarTemplateSpec, Template};
use crate::facts::json::Order;

/// A template that could not be loaded, naming the file, the template and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{path}: not valid YAML or JSON: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: document {document}: {message}")]
    Document {
        path: String,
        document: usize,
        message: String,
    },
    #[error("{path}: template \"{template}\": {error}")]
    Field {
        path: String,
        template: String,
        error: FieldError,
    },
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Loads every template under `path` (a file, or the YAML/JSON files of a
/// directory). All errors are returned, not just the first, so `tandem check`
/// can list them in one run.
pub fn load_path(path: &Path) -> Result<Vec<Template>, Vec<LoadError>> {
    let files = match files_under(path) {
        Ok(files) => files,
        Err(e) => return Err(vec![e]),
    };
    let mut templates = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let display = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_documents(&display, &text) {
                Ok(mut t) => templates.append(&mut t),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(LoadError::Read {
                path: display,
                message: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(templates)
    } else {
        Err(errors)
    }
}

fn files_under(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let read_err = |e: std::io::Error| LoadError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Secret and ConfigMap volumes keep their real files under `..data`
        // and link them from the top; dot entries are that machinery.
        if name.starts_with('.') {
            continue;
        }
        let is_manifest = [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if is_manifest && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Parses the templates of one file's text. `path` is only used in messages.
pub fn parse_documents(path: &str, text: &str) -> Result<Vec<Template>, Vec<LoadError>> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        vec![LoadError::Syntax {
            path: path.to_string(),
            message: e.to_string(),
        }]
    })?;
    // The same text once more for its field order; a text that parsed as
    // values parses as orders too, and an order is only ever a nicety.
    let mut orders: Vec<Order> = serde_saphyr::from_multiple(text).unwrap_or_default();
    orders.resize_with(documents.len(), Order::default);
    let mut templates = Vec::new();
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for (i, (doc, order)) in documents.into_iter().zip(orders).enumerate() {
        match doc {
            Value::Null => {}
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(list)) = o.get("items") {
                    let mut item_orders = match order {
                        Order::Map { keys } => {
                            keys.into_iter().find(|(k, _)| k == "items").map(|(_, o)| o)
                        }
                        _ => None,
                    }
                    .map(|o| match o {
                        Order::List(items) => items,
                        _ => Vec::new(),
                    })
                    .unwrap_or_default();
                    item_orders.resize_with(list.len(), Order::default);
                    items.extend(list.iter().cloned().zip(item_orders).map(|it| (i + 1, it)));
                }
            }
            other => items.push((i + 1, (other, order))),
        }
    }
    for (document, (doc, order)) in items {
        match template_from_document(&doc, path, Scope::Cluster, spec_order(order)) {
            Ok(t) => templates.push(t),
            Err(DocError::Shape(message)) => errors.push(LoadError::Document {
                path: path.to_string(),
                document,
                message,
            }),
            Err(DocError::Fields(template, errs)) => {
                errors.extend(errs.into_iter().map(|error| LoadError::Field {
                    path: path.to_string(),
                    template: template.clone(),
                    error,
                }))
            }
        }
    }
    if errors.is_empty() {
        Ok(templates)
    } else {
        Err(errors)
    }
}

enum DocError {
    Shape(String),
    Fields(String, Vec<FieldError>),
}

/// The order of a document's `spec`.
fn spec_order(document: Order) -> Order {
    match document {
        Order::Map { keys } => keys
            .into_iter()
            .find(|(k, _)| k == "spec")
            .map(|(_, o)| o)
            .unwrap_or_default(),
        _ => Order::Other,
    }
}

/// Turns one SidecarTemplate object (from a file or the cluster) into a
/// validated template.
fn template_from_document(
    doc: &Value,
    source: &str,
    scope: Scope,
    written: Order,
) -> Result<Template, DocError> {
    let Value::Object(obj) = doc else {
        return Err(DocError::Shape("expected a SidecarTemplate object".into()));
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != API_VERSION || kind != KIND {
        return Err(DocError::Shape(format!(
            "expected apiVersion {API_VERSION} and kind {KIND}, found {:?} {:?}",
            api_version, kind
        )));
    }
    let metadata = obj.get("metadata");
    let Some(name) = metadata.and_then(|m| m.get("name")).and_then(Value::as_str) else {
        return Err(DocError::Shape("metadata.name is missing".into()));
    };
    let field_err = |field: String, message: String| {
        DocError::Fields(name.to_string(), vec![FieldError { field, message }])
    };
    let Some(raw_spec) = obj.get("spec") else {
        return Err(field_err("spec".into(), "is missing".into()));
    };
    let spec = spec_from_value(raw_spec).map_err(|e| field_err(e.field, e.message))?;
    Template::new(
        name,
        scope,
        source.to_string(),
        spec,
        Some(raw_spec),
        written,
    )
    .map_err(|errs| DocError::Fields(name.to_string(), errs))
}

/// Deserialises a spec, naming the field that does not fit.
fn spec_from_value(raw: &Value) -> Result<SidecarTemplateSpec, FieldError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        FieldError {
            field: if path == "." {
                "spec".into()
            } else {
                format!("spec.{path}")
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Why a SidecarTemplate object from the cluster is not a template: its
/// shape, or the fields that do not validate (all of them, one message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectError {
    #[error("{0}")]
    Shape(String),
    #[error("{}", join(.0))]
    Fields(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Loads a SidecarTemplate read from the cluster.
pub fn template_from_object(
    doc: &Value,
    namespace: &str,
    scope: Scope,
) -> Result<Template, ObjectError> {
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let source = format!("cluster:{namespace}/{name}");
    template_from_document(doc, &source, scope, Order::Other).map_err(|e| match e {
        DocError::Shape(m) => ObjectError::Shape(m),
        DocError::Fields(_, errs) => ObjectError::Fields(errs),
    })
}
