//! Publishing the Events the admission layer asks for, from a background task
//! so the admission path never waits on the API server.

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::admission::Notice;

/// Events waiting to be published; beyond this, new ones are dropped.
const QUEUE: usize = 256;

/// Starts the publisher; events beyond the queue are dropped, not waited for.
pub(super) fn start(client: Client, instance: Option<String>) -> mpsc::Sender<Notice> {
    let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
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
