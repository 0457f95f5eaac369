//! SidecarTemplate objects from the cluster, merged with the `--config` files.
//! Pure: the reflector hands in the objects, this decides what is in force and
//! what each object's status should say.

use std::sync::Arc;

use kube::api::DynamicObject;

use crate::template::{
    DuplicateTemplate, ObjectError, Scope, SidecarTemplateStatus, Template, TemplateSet,
    template_from_object,
};

/// Why an object is not in force; its status message.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error("cannot read the object: {0}")]
    Unreadable(#[source] serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] ObjectError),
    /// A template of the same name and scope is already in force: objects
    /// are merged after the files, so it is always a `--config` file's.
    #[error("a template named {} already comes from the --config file {}", .0.name, .0.first)]
    Duplicate(#[from] DuplicateTemplate),
}

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
///
/// The files come from a `TemplateSet` (so they are free of duplicates);
/// each object is added on its own, so one object that clashes with what is
/// already in force is refused alone and the rest stay in force.
pub fn merge(
    files: &[Arc<Template>],
    objects: &[Arc<DynamicObject>],
    own_namespace: &str,
) -> (TemplateSet, Vec<StatusUpdate>) {
    let mut set = TemplateSet::default();
    for t in files {
        if let Err(e) = set.insert(t.clone()) {
            tracing::error!(error = %e, "a --config template left out");
        }
    }
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
        let result = serde_json::to_value(obj.as_ref())
            .map_err(Rejected::Unreadable)
            .and_then(|doc| Ok(template_from_object(&doc, &namespace, scope)?))
            .and_then(|t| {
                let t = Arc::new(t);
                set.insert(t.clone())?;
                Ok(t)
            });
        let status = match result {
            Ok(t) => SidecarTemplateStatus {
                valid: true,
                message: None,
                hash: Some(t.hash.clone()),
                observed_generation: obj.metadata.generation,
                ..SidecarTemplateStatus::default()
            },
            Err(rejected) => {
                let message = rejected.to_string();
                tracing::warn!(%namespace, %name, %message, "SidecarTemplate rejected");
                SidecarTemplateStatus {
                    valid: false,
                    message: Some(message),
                    hash: None,
                    observed_generation: obj.metadata.generation,
                    ..SidecarTemplateStatus::default()
                }
            }
        };
        // The pod counts are written apart (cluster/pods.rs); the verdict
        // is compared without them.
        let current: Option<SidecarTemplateStatus> = obj
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<SidecarTemplateStatus>(s.clone()).ok())
            .map(|s| SidecarTemplateStatus {
                injected_pods: None,
                up_to_date_pods: None,
                ..s
            });
        if current.as_ref() != Some(&status) {
            updates.push(StatusUpdate {
                namespace,
                name,
                status,
            });
        }
    }
    (set, updates)
}
