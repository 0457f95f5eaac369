//! SidecarTemplates: the type shared with the CRD, loading from files and
//! directories, validation on load, the per-template lints of `tandem check`,
//! and the set of templates in force. Imports only `facts`.

mod examples;
mod lint;
mod load;
// Every item is re-exported below; `unreachable_pub` misreads the
// CustomResource derive's expansion of the spec type as unreachable.
#[allow(unreachable_pub)]
mod model;
mod parameters;
mod set;
mod validate;

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::facts::json::Order;
use crate::facts::{Doc, QosShare};

pub use examples::examples;
pub use lint::{Lint, lint};
pub use load::{LoadError, ObjectError, load_path, parse_documents, template_from_object};
pub use model::{
    API_VERSION, AppSpec, KIND, Lifecycle, Mode, OnConflict, Pattern, Position, QosPolicy,
    SidecarTemplate, SidecarTemplateSpec, SidecarTemplateStatus,
};
pub use parameters::{
    FieldKind, List, Parameter, ParameterType, Refused, Target, annotation as parameter_annotation,
    parameter_of, text as parameter_text,
};
pub use set::{DuplicateTemplate, TemplateSet};
pub use validate::{FieldError, unknown_fields};

/// Which pods a template may reach.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// From a config file or Tandem's own namespace: every namespace.
    Cluster,
    /// From another namespace: only pods of that namespace.
    Namespace(String),
}

/// A validated template, with everything the admission path needs rendered once
/// at load time so that no request pays for it.
#[derive(Debug)]
pub struct Template {
    pub name: String,
    pub scope: Scope,
    /// Where it came from, for messages: a file path or `cluster:<ns>/<name>`.
    pub source: String,
    pub spec: SidecarTemplateSpec,
    /// Content hash recorded in `tandem.dev/status`.
    pub hash: String,
    pub rendered: Rendered,
    /// The spec's field order as written (nothing for a cluster object):
    /// `tandem inject` writes what the template adds in that order.
    pub written: Order,
    /// This template as rendered with pods' own parameter values, the most
    /// recent first: a Deployment's pods share their values, and rendering
    /// costs ten times a decision.
    variants: Mutex<Vec<(String, Arc<Template>)>>,
    /// Per parameter, in order: its annotation and its default as injected,
    /// worked out once here rather than on every admission.
    pub declared: Vec<Declared>,
}

/// What admission needs of a declared parameter.
#[derive(Debug)]
pub struct Declared {
    /// `<template>.tandem.dev/<parameter>`.
    pub annotation: String,
    /// The default, checked at load, as the targets get it.
    pub default: Value,
}

/// How many renderings with pods' own values a template keeps.
const VARIANTS: usize = 32;

/// The template's objects as raw JSON, ready to be placed in a patch.
#[derive(Debug, Default)]
pub struct Rendered {
    pub containers: Vec<Arc<Object>>,
    /// `containers` as native sidecars (`restartPolicy: Always`).
    pub native_containers: Vec<Arc<Object>>,
    pub init_containers: Vec<Arc<Object>>,
    pub volumes: Vec<Arc<Object>>,
    pub app_volume_mounts: Vec<Arc<Object>>,
    pub app_env: Vec<Arc<Object>>,
    pub app_env_from: Vec<Arc<Object>>,
    /// With `qos: preserve`: the containers again with their requests set
    /// to their limits, for Guaranteed pods.
    pub preserved: Option<Preserved>,
}

/// A `qos: preserve` template's containers as a Guaranteed pod gets them.
#[derive(Debug, Default)]
pub struct Preserved {
    pub containers: Vec<Arc<Object>>,
    pub native_containers: Vec<Arc<Object>>,
    pub init_containers: Vec<Arc<Object>>,
}

/// One object a template adds, as the engine reads it and as a patch
/// carries it: converted and encoded once per template version, so no
/// admission clones its tree or re-escapes its strings. Shared (`Arc`)
/// between the template set and the decisions that place it.
#[derive(Debug)]
pub struct Object {
    value: Value,
    doc: Doc<'static>,
    json: Box<RawValue>,
    /// What it adds to a pod's QoS class, when it is a container.
    pub qos: QosShare,
}

impl Object {
    pub fn new(value: Value) -> Result<Object, serde_json::Error> {
        let json = serde_json::value::to_raw_value(&value)?;
        let doc = Doc::from(&value).into_owned();
        let qos = QosShare::of(&doc);
        Ok(Object {
            value,
            doc,
            json,
            qos,
        })
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The object as the engine reads pods, to compare it with theirs.
    pub fn doc(&self) -> &Doc<'static> {
        &self.doc
    }

    /// The object's JSON, exactly as serializing its value writes it.
    pub fn json(&self) -> &RawValue {
        &self.json
    }
}

impl Deref for Object {
    type Target = Doc<'static>;
    fn deref(&self) -> &Doc<'static> {
        &self.doc
    }
}

impl Template {
    /// Validates `spec` and renders it. `raw_spec` is the spec as written, used to
    /// find fields the typed model would silently drop.
    pub fn new(
        name: &str,
        scope: Scope,
        source: String,
        spec: SidecarTemplateSpec,
        raw_spec: Option<&Value>,
        written: Order,
    ) -> Result<Template, Vec<FieldError>> {
        validate::validate(name, &spec, raw_spec)?;
        let unencodable = |e: serde_json::Error| {
            vec![FieldError {
                field: "spec".into(),
                message: format!("cannot be encoded as JSON: {e}"),
            }]
        };
        let defaults: Vec<Value> = declared(name, &spec)
            .into_iter()
            .map(|d| d.default)
            .collect();
        let spec = with_values(&spec, &defaults).map_err(unencodable)?;
        Self::render(name, scope, source, spec, written).map_err(unencodable)
    }

    /// This template with its parameters set to `values` (one per
    /// declared parameter, in order, each checked by [`Parameter::check`]):
    /// what a pod that sets some of them gets. Its hash covers the values.
    pub fn with_values(&self, values: &[Value]) -> Result<Arc<Template>, serde_json::Error> {
        let key = serde_json::to_string(values)?;
        let mut variants = self.variants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = variants.iter().position(|(k, _)| *k == key) {
            let hit = variants.remove(i);
            let t = hit.1.clone();
            variants.insert(0, hit);
            return Ok(t);
        }
        let spec = with_values(&self.spec, values)?;
        let t = Arc::new(Self::render(
            &self.name,
            self.scope.clone(),
            self.source.clone(),
            spec,
            self.written.clone(),
        )?);
        variants.insert(0, (key, t.clone()));
        variants.truncate(VARIANTS);
        Ok(t)
    }

    fn render(
        name: &str,
        scope: Scope,
        source: String,
        spec: SidecarTemplateSpec,
        written: Order,
    ) -> Result<Template, serde_json::Error> {
        let hash = content_hash(&spec)?;
        let containers = objects(&spec.containers)?;
        let rendered = Rendered {
            native_containers: containers
                .iter()
                .map(|c| native_sidecar(c.value()))
                .collect::<Result<_, _>>()?,
            containers,
            init_containers: objects(&spec.init_containers)?,
            volumes: objects(&spec.volumes)?,
            app_volume_mounts: objects(&spec.app.volume_mounts)?,
            app_env: objects(&spec.app.env)?,
            app_env_from: objects(&spec.app.env_from)?,
            preserved: None,
        };
        let rendered = Rendered {
            preserved: (spec.qos == QosPolicy::Preserve)
                .then(|| preserve(&rendered))
                .transpose()?,
            ..rendered
        };
        let declared = declared(name, &spec);
        Ok(Template {
            name: name.to_string(),
            scope,
            source,
            spec,
            hash,
            declared,
            rendered,
            written,
            variants: Mutex::default(),
        })
    }

    /// Names of the containers the template adds, long-running and init.
    pub fn container_names(&self) -> impl Iterator<Item = &str> {
        self.spec
            .init_containers
            .iter()
            .chain(&self.spec.containers)
            .map(|c| c.name.as_str())
    }
}

fn native_sidecar(container: &Value) -> Result<Arc<Object>, serde_json::Error> {
    let mut c = container.clone();
    if let Value::Object(m) = &mut c {
        m.insert("restartPolicy".into(), Value::String("Always".into()));
    }
    Object::new(c).map(Arc::new)
}

/// A container with `resources.requests` set to its `resources.limits`.
fn guaranteed(container: &Object) -> Result<Arc<Object>, serde_json::Error> {
    let mut c = container.value().clone();
    if let Some(limits) = c.pointer("/resources/limits").cloned() {
        c["resources"]["requests"] = limits;
    }
    Object::new(c).map(Arc::new)
}

fn preserve(r: &Rendered) -> Result<Preserved, serde_json::Error> {
    let all = |list: &[Arc<Object>]| -> Result<Vec<Arc<Object>>, serde_json::Error> {
        list.iter().map(|c| guaranteed(c)).collect()
    };
    Ok(Preserved {
        containers: all(&r.containers)?,
        native_containers: all(&r.native_containers)?,
        init_containers: all(&r.init_containers)?,
    })
}

fn objects<T: serde::Serialize>(items: &[T]) -> Result<Vec<Arc<Object>>, serde_json::Error> {
    items
        .iter()
        .map(|item| Object::new(serde_json::to_value(item)?).map(Arc::new))
        .collect()
}

/// The annotation and checked default of each parameter of `spec`
/// (validation passed every default).
fn declared(name: &str, spec: &SidecarTemplateSpec) -> Vec<Declared> {
    spec.parameters
        .iter()
        .map(|p| Declared {
            annotation: p.annotation(name),
            default: p.check(&parameters::text(&p.default)).unwrap_or_default(),
        })
        .collect()
}

/// `spec` with each parameter's targets set to its value in `values`.
fn with_values(
    spec: &SidecarTemplateSpec,
    values: &[Value],
) -> Result<SidecarTemplateSpec, serde_json::Error> {
    if spec.parameters.is_empty() {
        return Ok(spec.clone());
    }
    let mut json = serde_json::to_value(spec)?;
    for (p, value) in spec.parameters.iter().zip(values) {
        for target in p.targets.iter().filter_map(|t| Target::parse(t).ok()) {
            target.write(&mut json, value.clone());
        }
    }
    serde_json::from_value(json)
}

/// First 16 hex digits of the SHA-256 of the spec's canonical JSON, its
/// parameters' values written into their targets and the declarations left
/// out: two pods get the same hash exactly when they get the same objects.
/// An error, never a default: templates hashing alike would pass for one
/// another in `tandem.dev/status`.
fn content_hash(spec: &SidecarTemplateSpec) -> Result<String, serde_json::Error> {
    let bytes = if spec.parameters.is_empty() {
        serde_json::to_vec(spec)?
    } else {
        serde_json::to_vec(&SidecarTemplateSpec {
            parameters: Vec::new(),
            ..spec.clone()
        })?
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
