//! SidecarTemplates: the type shared with the CRD, loading from files and
//! directories, validation on load and the lints of `tandem check`.

mod examples;
pub mod lint;
mod load;
mod model;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use examples::examples;
pub use load::{LoadError, load_path, parse_documents, spec_from_value, template_from_object};
pub use model::*;

/// Annotation on a SidecarTemplate with a one-line description for `explain`.
pub const DESCRIPTION_ANNOTATION: &str = "tandem.dev/description";

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
    pub description: Option<String>,
    pub rendered: Rendered,
}

/// The template's objects as raw JSON, ready to be placed in a patch.
#[derive(Debug, Default)]
pub struct Rendered {
    pub containers: Vec<Value>,
    pub init_containers: Vec<Value>,
    pub volumes: Vec<Value>,
    pub app_volume_mounts: Vec<Value>,
    pub app_env: Vec<Value>,
    pub app_env_from: Vec<Value>,
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
        description: Option<String>,
    ) -> Result<Template, Vec<validate::FieldError>> {
        validate::validate(name, &spec, raw_spec)?;
        let hash = content_hash(&spec);
        let rendered = Rendered {
            containers: to_values(&spec.containers),
            init_containers: to_values(&spec.init_containers),
            volumes: to_values(&spec.volumes),
            app_volume_mounts: to_values(&spec.app.volume_mounts),
            app_env: to_values(&spec.app.env),
            app_env_from: to_values(&spec.app.env_from),
        };
        Ok(Template {
            name: name.to_string(),
            scope,
            source,
            spec,
            hash,
            description,
            rendered,
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

fn to_values<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    // Serialising k8s-openapi types to a Value cannot fail: they hold no maps
    // with non-string keys.
    items
        .iter()
        .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
        .collect()
}

/// First 16 hex digits of the SHA-256 of the spec's canonical JSON.
pub fn content_hash(spec: &SidecarTemplateSpec) -> String {
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The templates in force, indexed by scope. Cheap to share: the server swaps a
/// whole `Arc<TemplateSet>` on reload.
#[derive(Debug, Default)]
pub struct TemplateSet {
    cluster: BTreeMap<String, Arc<Template>>,
    namespaced: BTreeMap<String, BTreeMap<String, Arc<Template>>>,
}

impl TemplateSet {
    /// Builds a set; a second template with the same name and scope is an error
    /// naming both sources.
    pub fn new(templates: impl IntoIterator<Item = Template>) -> Result<TemplateSet, String> {
        TemplateSet::from_shared(templates.into_iter().map(Arc::new))
    }

    /// Like `new`, for templates already shared (merging files and cluster objects).
    pub fn from_shared(
        templates: impl IntoIterator<Item = Arc<Template>>,
    ) -> Result<TemplateSet, String> {
        let mut set = TemplateSet::default();
        for t in templates {
            let map = match &t.scope {
                Scope::Cluster => &mut set.cluster,
                Scope::Namespace(ns) => set.namespaced.entry(ns.clone()).or_default(),
            };
            if let Some(prev) = map.get(&t.name) {
                return Err(format!(
                    "template \"{}\" is defined twice: in {} and in {}",
                    t.name, prev.source, t.source
                ));
            }
            map.insert(t.name.clone(), t);
        }
        Ok(set)
    }

    /// The template a pod in `namespace` gets for `name`: its own namespace's
    /// first, then the cluster-wide one. Another namespace's is never visible.
    pub fn lookup(&self, namespace: &str, name: &str) -> Option<&Arc<Template>> {
        self.namespaced
            .get(namespace)
            .and_then(|m| m.get(name))
            .or_else(|| self.cluster.get(name))
    }

    /// Every template visible to pods of `namespace`, by name, local ones
    /// shadowing cluster-wide ones of the same name.
    pub fn visible(&self, namespace: &str) -> impl Iterator<Item = &Arc<Template>> {
        let local = self.namespaced.get(namespace);
        let shadowed = move |name: &str| local.is_some_and(|m| m.contains_key(name));
        self.cluster
            .values()
            .filter(move |t| !shadowed(&t.name))
            .chain(local.into_iter().flat_map(|m| m.values()))
    }

    /// All templates, in a stable order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Template>> {
        self.cluster
            .values()
            .chain(self.namespaced.values().flat_map(|m| m.values()))
    }

    pub fn len(&self) -> usize {
        self.cluster.len() + self.namespaced.values().map(BTreeMap::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
