//! The AdmissionReview wire format: a lean parse of the request and the typed
//! answer written back. Shared by `/mutate` and `/validate`.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::notice::Notice;
use crate::engine::Decision;
use crate::facts::display_name;

/// How a review was answered, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Patched,
    Allowed,
    Denied,
    Invalid,
    /// Tandem could not encode its own answer: a bug, answered as a refusal.
    Error,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Patched => "patched",
            Kind::Allowed => "allowed",
            Kind::Denied => "denied",
            Kind::Invalid => "invalid",
            Kind::Error => "error",
        }
    }
}

/// A review that cannot be answered as an AdmissionReview at all.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("not an AdmissionReview: {0}")]
    NotAReview(String),
    /// The answer could not be encoded; a bug, never the request's fault.
    #[error("cannot encode the answer: {0}")]
    Encode(String),
}

impl ReviewError {
    /// Whether the request was at fault (else Tandem was).
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, ReviewError::Encode(_))
    }
}

/// What the front-ends need to know about one answered review.
pub struct Answer {
    pub body: Vec<u8>,
    pub kind: Kind,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub dry_run: bool,
    /// The outcome in one line: the decision's summary, or why nothing was
    /// decided (pass-through or invalid).
    pub note: String,
    pub decision: Option<Decision>,
    /// The Warning Event this answer calls for: set only for a skipped or
    /// denied injection outside a dry run.
    pub notice: Option<Notice>,
}

/// Parses `body`, lets `respond` answer the request, and encodes the answer.
pub(super) fn answer(
    body: &[u8],
    respond: impl FnOnce(&Value, Option<&Value>, &mut Answer) -> Reply,
) -> Result<Answer, ReviewError> {
    let doc = parse_review(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    let request = doc.get("request").filter(|r| r.is_object());
    let uid = request
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    let api_version = doc.get("apiVersion").and_then(Value::as_str);
    let shape_error = match (api_version, doc.get("kind").and_then(Value::as_str)) {
        (Some("admission.k8s.io/v1" | "admission.k8s.io/v1beta1"), Some("AdmissionReview")) => None,
        (v, k) => Some(format!(
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, found {v:?} {k:?}"
        )),
    };
    let (Some(request), Some(uid)) = (request, uid) else {
        let why = shape_error.unwrap_or_else(|| "request.uid is missing".into());
        return Err(ReviewError::NotAReview(why));
    };
    // With a uid in hand every problem is answered as an AdmissionReview, so
    // the API server reports our message instead of a generic webhook failure.
    let api_version = if api_version == Some("admission.k8s.io/v1beta1") {
        "admission.k8s.io/v1beta1"
    } else {
        "admission.k8s.io/v1"
    };
    let text = |field: &str| {
        request
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let object = request.get("object").filter(|o| !o.is_null());
    let generate_name = object
        .and_then(|o| o.pointer("/metadata/generateName"))
        .and_then(Value::as_str);
    let mut answer = Answer {
        body: Vec::new(),
        kind: Kind::Allowed,
        uid: uid.to_string(),
        namespace: text("namespace").to_string(),
        name: display_name(Some(text("name")).filter(|n| !n.is_empty()), generate_name)
            .unwrap_or_default(),
        operation: text("operation").to_string(),
        dry_run: request
            .get("dryRun")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        note: String::new(),
        decision: None,
        notice: None,
    };
    let reply = match shape_error {
        Some(why) => invalid(&mut answer, &why),
        None => respond(request, object, &mut answer),
    };
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &answer.uid,
            reply,
        },
    };
    answer.body = serde_json::to_vec(&out).map_err(|e| ReviewError::Encode(e.to_string()))?;
    Ok(answer)
}

/// The AdmissionReview written back, serialised straight from these types.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    uid: &'a str,
    #[serde(flatten)]
    reply: Reply,
}

/// The part of a response that depends on the request's content.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Reply {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// The JSON patch, base64-encoded, as a ready JSON string: base64 needs
    /// no escaping, so the encoder does not scan its kilobytes again.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_annotations: Option<AuditAnnotations>,
}

#[derive(Serialize)]
struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

#[derive(Serialize)]
struct AuditAnnotations {
    decision: String,
}

impl Reply {
    pub(super) fn allowed() -> Reply {
        Reply {
            allowed: true,
            ..Reply::default()
        }
    }

    /// Allowed, with this JSON patch, encoded as base64. `Err` only if the
    /// patch cannot be encoded.
    pub(super) fn patched(patch: &impl Serialize) -> Result<Reply, serde_json::Error> {
        use base64::Engine as _;
        let json = serde_json::to_vec(patch)?;
        // The JSON string `"<base64>"`, built once (serde_json's writer made
        // many small writes through a base64 writer; five times the cost).
        let mut text = String::with_capacity(json.len() * 4 / 3 + 8);
        text.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(&json, &mut text);
        text.push('"');
        Ok(Reply {
            patch_type: Some("JSONPatch"),
            patch: Some(RawValue::from_string(text)?),
            ..Reply::allowed()
        })
    }

    pub(super) fn refused(code: u16, reason: &'static str, message: &str) -> Reply {
        Reply {
            allowed: false,
            status: Some(Status {
                code,
                reason,
                message: format!("tandem: {message}"),
            }),
            ..Reply::default()
        }
    }

    /// Records the decision as the audit annotation `decision`.
    pub(super) fn audit(&mut self, decision: String) {
        self.audit_annotations = Some(AuditAnnotations { decision });
    }
}

/// A request Tandem cannot decide on: refused with 400 and the reason.
pub(super) fn invalid(answer: &mut Answer, message: &str) -> Reply {
    answer.kind = Kind::Invalid;
    answer.note = message.to_string();
    Reply::refused(400, "BadRequest", message)
}

/// Parses a review body, dropping `metadata.managedFields` on the way: it is
/// often half of a pod's JSON, and nothing Tandem decides or patches reads it.
fn parse_review(body: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Lean { metadata: false }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A `Value` deserializer that skips `managedFields` inside `metadata` objects.
struct Lean {
    metadata: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Lean {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Lean {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(Lean { metadata: false })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.metadata && key == "managedFields" {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let metadata = key == "metadata";
            out.insert(key, map.next_value_seed(Lean { metadata })?);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parse_review_drops_only_managed_fields_of_metadata() {
        let body = br#"{"a":{"metadata":{"name":"x","managedFields":[{"f":1}]},"managedFields":2},"n":[1,-2,3.5,true,null,"s"]}"#;
        let v = parse_review(body).unwrap();
        assert_eq!(v["a"]["metadata"], json!({"name": "x"}));
        assert_eq!(v["a"]["managedFields"], 2, "only inside metadata");
        assert_eq!(v["n"], json!([1, -2, 3.5, true, null, "s"]));
    }

    #[test]
    fn parse_review_is_stack_safe_and_strict() {
        assert!(parse_review("[".repeat(100_000).as_bytes()).is_err());
        assert!(parse_review(b"{} trailing").is_err());
        assert!(parse_review(b"{\"a\":1,}").is_err());
    }
}
