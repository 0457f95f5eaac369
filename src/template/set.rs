//! The templates in force, indexed by scope.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Scope, Template};

/// Two templates with one name in one scope.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template \"{name}\" is defined twice: in {first} and in {second}")]
pub struct DuplicateTemplate {
    pub name: String,
    /// Where the one already in the set came from.
    pub first: String,
    pub second: String,
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
    pub fn new(
        templates: impl IntoIterator<Item = Template>,
    ) -> Result<TemplateSet, DuplicateTemplate> {
        let mut set = TemplateSet::default();
        for t in templates {
            set.insert(Arc::new(t))?;
        }
        Ok(set)
    }

    /// Adds a template; one with the same name and scope already in the set
    /// is an error naming both sources, and leaves the set as it was.
    pub fn insert(&mut self, t: Arc<Template>) -> Result<(), DuplicateTemplate> {
        let map = match &t.scope {
            Scope::Cluster => &mut self.cluster,
            Scope::Namespace(ns) => self.namespaced.entry(ns.clone()).or_default(),
        };
        if let Some(prev) = map.get(&t.name) {
            return Err(DuplicateTemplate {
                name: t.name.clone(),
                first: prev.source.clone(),
                second: t.source.clone(),
            });
        }
        map.insert(t.name.clone(), t);
        Ok(())
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
