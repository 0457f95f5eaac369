//! SidecarTemplate objects from the cluster, merged with the `--config` files.
//! Pure: the reflector hands in the objects, this decides what is in force and
//! what each object's status should say.

use std::sync::Arc;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::template::{Scope, SidecarTemplateStatus, Template, TemplateSet, template_from_object};

/// The status an object should carry, when it differs from what it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    pub namespace: String,
    pub name: String,
    pub status: SidecarTemplateStatus,
}

/// The templates in force: files first, then every valid cluster object.
/// A template in `own_namespace` is cluster-wide; one in any other namespace
/// serves only that namespace. Invalid objects are left out and reported.
pub fn merge(
    files: &[Arc<Template>],
    objects: &[Arc<DynamicObject>],
    own_namespace: &str,
) -> (TemplateSet, Vec<StatusUpdate>) {
    let mut all: Vec<Arc<Template>> = files.to_vec();
    let mut updates = Vec::new();
    let mut sorted: Vec<&Arc<DynamicObject>> = objects.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for obj in sorted {
        let (Some(namespace), Some(name)) =
            (obj.metadata.namespace.clone(), obj.metadata.name.clone())
        else {
            continue;
        };
        let scope = if namespace == own_namespace {
            Scope::Cluster
        } else {
            Scope::Namespace(namespace.clone())
        };
        let doc = serde_json::to_value(obj.as_ref()).unwrap_or(Value::Null);
        let result = template_from_object(&doc, &namespace, scope.clone()).and_then(|t| {
            let taken = all.iter().any(|o| o.scope == t.scope && o.name == t.name);
            if taken {
                Err(format!(
                    "a template named {name} already comes from the --config files"
                ))
            } else {
                Ok(t)
            }
        });
        let status = match result {
            Ok(t) => {
                let status = SidecarTemplateStatus {
                    valid: true,
                    message: None,
                    hash: Some(t.hash.clone()),
                    observed_generation: obj.metadata.generation,
                };
                all.push(Arc::new(t));
                status
            }
            Err(message) => {
                tracing::warn!(%namespace, %name, %message, "SidecarTemplate rejected");
                SidecarTemplateStatus {
                    valid: false,
                    message: Some(message),
                    hash: None,
                    observed_generation: obj.metadata.generation,
                }
            }
        };
        let current: Option<SidecarTemplateStatus> = obj
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        if current.as_ref() != Some(&status) {
            updates.push(StatusUpdate {
                namespace,
                name,
                status,
            });
        }
    }
    // Duplicates were excluded above, so building the set cannot fail.
    let set = TemplateSet::from_shared(all).unwrap_or_default();
    (set, updates)
}
