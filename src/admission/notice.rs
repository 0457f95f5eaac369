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

/// Where a pod's event goes: its controller, in the request's namespace
/// (`kubectl describe deployment` is where users look). A pod without one
/// gets none: it does not exist yet while it is admitted, and an Event on a
/// name the request made up is what a forged review would want. The
/// cluster layer checks the controller exists before publishing.
fn regarding(pod: &Doc<'_>, namespace: &str) -> Option<ObjectReference> {
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Doc::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Doc::as_bool) == Some(true))?;
    let text = |v: &Doc<'_>, k: &str| v.get(k).and_then(Doc::as_str).map(str::to_string);
    Some(ObjectReference {
        api_version: text(owner, "apiVersion"),
        kind: text(owner, "kind"),
        name: text(owner, "name"),
        namespace: Some(namespace.to_string()),
        uid: text(owner, "uid"),
        ..ObjectReference::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_point_at_the_controller_only() {
        let owned = json!({"metadata": {"generateName": "web-", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": true}
        ]}});
        let r = regarding(&Doc::from(&owned), "shop").unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref()),
            (Some("ReplicaSet"), Some("web-1"))
        );
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.uid.as_deref(), Some("u1"));
        // A bare pod does not exist yet; an owner that is not the controller
        // is not where the pod's Events go.
        let bare = json!({"metadata": {"name": "debug"}});
        assert!(regarding(&Doc::from(&bare), "shop").is_none());
        let not_controller = json!({"metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1"}
        ]}});
        assert!(regarding(&Doc::from(&not_controller), "shop").is_none());
    }
}
