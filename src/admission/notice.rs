//! The Warning Event an answer calls for: a skipped or denied injection is
//! reported where users look. Built here, with the decision in hand; the
//! cluster layer only publishes it.

use crate::engine::{Decision, Outcome};
use crate::facts::Doc;
use k8s_openapi::api::core::v1::ObjectReference;

/// One Warning Event to publish.
#[derive(Clone, Debug)]
pub struct Notice {
    pub regarding: ObjectReference,
    /// `InjectionDenied` or `InjectionSkipped`.
    pub reason: &'static str,
    pub note: String,
}

impl Notice {
    /// The Event a decision on `pod` calls for: a denial, or templates left
    /// out that were wanted. `None` when all went as asked, or when there is
    /// nothing to attach the Event to.
    pub fn for_decision(
        decision: &Decision,
        pod: &Doc<'_>,
        namespace: &str,
        pod_name: &str,
    ) -> Option<Notice> {
        let (reason, note) = match &decision.outcome {
            Outcome::Denied { message } => ("InjectionDenied", message.clone()),
            _ => {
                let skipped: Vec<String> = decision
                    .skipped()
                    .map(|t| format!("{}: {}", t.name, t.why))
                    .collect();
                if skipped.is_empty() {
                    return None;
                }
                ("InjectionSkipped", skipped.join("; "))
            }
        };
        Some(Notice {
            regarding: regarding(pod, namespace)?,
            reason,
            note: format!("pod {pod_name}: {note}"),
        })
    }
}

/// Where a pod's event goes: its controller (a pod being created has no uid
/// yet, and `kubectl describe deployment` is where users look), else the pod
/// when it has a name.
fn regarding(pod: &Doc<'_>, namespace: &str) -> Option<ObjectReference> {
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Doc::as_array);
    let owner = owners.and_then(|o| {
        o.iter()
            .find(|r| r.get("controller").and_then(Doc::as_bool) == Some(true))
            .or_else(|| o.first())
    });
    let text = |v: &Doc<'_>, k: &str| v.get(k).and_then(Doc::as_str).map(str::to_string);
    if let Some(o) = owner {
        return Some(ObjectReference {
            api_version: text(o, "apiVersion"),
            kind: text(o, "kind"),
            name: text(o, "name"),
            namespace: Some(namespace.to_string()),
            uid: text(o, "uid"),
            ..ObjectReference::default()
        });
    }
    let name = pod.pointer("/metadata/name").and_then(Doc::as_str)?;
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_point_at_the_controller_or_the_named_pod() {
        let owned = json!({"metadata": {"generateName": "web-", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": true}
        ]}});
        let r = regarding(&Doc::from(&owned), "shop").unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref()),
            (Some("ReplicaSet"), Some("web-1"))
        );
        let bare = json!({"metadata": {"name": "debug"}});
        assert_eq!(
            regarding(&Doc::from(&bare), "shop")
                .unwrap()
                .kind
                .as_deref(),
            Some("Pod")
        );
        let unnamed = json!({"metadata": {"generateName": "x-"}});
        assert!(regarding(&Doc::from(&unnamed), "shop").is_none());
    }
}
