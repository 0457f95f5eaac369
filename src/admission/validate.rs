//! `/validate`: a SidecarTemplate checked with the same validation as
//! `tandem check`, so `kubectl apply` rejects what Tandem would reject, with
//! the same message.

use super::codec::{Answer, ObjectReads, Reply, Response, ReviewError, answer};
use crate::facts::Doc;
use crate::template::{self, Scope};

/// Answers one AdmissionReview body for `/validate`.
pub fn validate_template(body: &[u8]) -> Result<Answer, ReviewError> {
    answer(body, ObjectReads::Whole, |incoming| {
        let kind = incoming
            .request
            .pointer("/kind/kind")
            .and_then(Doc::as_str)
            .unwrap_or_default();
        if kind != template::KIND || incoming.operation == "DELETE" {
            let note = format!("{kind} {} not checked", incoming.operation);
            return Response::new(Reply::allowed(), note);
        }
        let Some(object) = incoming.object else {
            return Response::invalid("request.object is missing");
        };
        let scope = Scope::Namespace(incoming.namespace.clone());
        match template::template_from_object(&object.to_value(), &incoming.namespace, scope) {
            Ok(_) => Response::new(Reply::allowed(), ""),
            Err(e) => {
                let message = e.to_string();
                Response::new(Reply::refused(422, "Invalid", &message), message)
            }
        }
    })
}
