//! Kubernetes Events for skipped and denied injections, sent from a
//! background task so the admission path never waits on the API server.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::admission::Answer;
use crate::engine::{Outcome, Verdict};

/// One Warning event to publish.
pub struct Notice {
    pub regarding: ObjectReference,
    pub reason: &'static str,
    pub note: String,
}

/// The event an answered review calls for, if any: the admission layer sets
/// `regarding` only for skipped or denied injections outside dry runs.
pub fn notice(answer: &Answer) -> Option<Notice> {
    let regarding = answer.regarding.clone()?;
    let d = answer.decision.as_ref()?;
    let (reason, note) = match &d.outcome {
        Outcome::Denied { message } => ("InjectionDenied", message.clone()),
        _ => {
            let skipped: Vec<String> = d
                .templates
                .iter()
                .filter(|t| matches!(t.verdict, Verdict::Skipped { .. } | Verdict::Missing))
                .map(|t| format!("{}: {}", t.name, t.why))
                .collect();
            ("InjectionSkipped", skipped.join("; "))
        }
    };
    Some(Notice {
        regarding,
        reason,
        note: format!("pod {}: {note}", answer.name),
    })
}

/// Where a pod's event goes: its controller (a pod being created has no uid
/// yet, and `kubectl describe deployment` is where users look), else the pod
/// when it has a name.
pub fn regarding(pod: &Value, namespace: &str) -> Option<ObjectReference> {
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    let owner = owners.and_then(|o| {
        o.iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .or_else(|| o.first())
    });
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
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
    let name = pod.pointer("/metadata/name").and_then(Value::as_str)?;
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    })
}

/// Starts the publisher; events beyond the queue are dropped, not waited for.
pub fn start(client: Client, instance: Option<String>) -> mpsc::Sender<Notice> {
    let (tx, mut rx) = mpsc::channel::<Notice>(256);
    let reporter = Reporter {
        controller: "tandem".into(),
        instance,
    };
    let recorder = Recorder::new(client, reporter);
    tokio::spawn(async move {
        while let Some(n) = rx.recv().await {
            let event = Event {
                type_: EventType::Warning,
                reason: n.reason.into(),
                note: Some(n.note.chars().take(1000).collect()),
                action: "Inject".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &n.regarding).await {
                tracing::warn!(error = %e, "could not publish an event");
            }
        }
    });
    tx
}
