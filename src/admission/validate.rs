//! `/validate`: a SidecarTemplate checked with the same validation as
//! `tandem check`, so `kubectl apply` rejects what Tandem would reject, with
//! the same message.

use super::codec::{Answer, Kind, ObjectReads, Reply, ReviewError, answer, invalid};
use crate::facts::Doc;
use crate::template::{self, Scope};

/// Answers one AdmissionReview body for `/validate`.
pub fn validate_template(body: &[u8]) -> Result<Answer, ReviewError> {
    answer(body, ObjectReads::Whole, |request, object, answer| {
        let kind = request
            .pointer("/kind/kind")
            .and_then(Doc::as_str)
            .unwrap_or_default();
        if kind != template::KIND || answer.operation == "DELETE" {
            answer.note = format!("{kind} {} not checked", answer.operation);
            return Reply::allowed();
        }
        let Some(object) = object else {
            return invalid(answer, "request.object is missing");
        };
        let scope = Scope::Namespace(answer.namespace.clone());
        match template::template_from_object(&object.to_value(), &answer.namespace, scope) {
            Ok(_) => Reply::allowed(),
            Err(message) => {
                answer.kind = Kind::Denied;
                let reply = Reply::refused(422, "Invalid", &message);
                answer.note = message;
                reply
            }
        }
    })
}
