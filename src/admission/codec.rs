//! The AdmissionReview wire format: a lean parse of the request and the typed
//! answer written back. Shared by `/mutate` and `/validate`.

use super::notice::Notice;
use crate::engine::Decision;
use crate::facts::json::{self, Keep};
use crate::facts::{Doc, Fields, display_name, write_json_string};

/// How a review was answered, for metrics and logs; derived from the reply
/// alone ([`Reply::outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Patched,
    Allowed,
    Denied,
    Invalid,
    /// Tandem could not encode its own answer: a bug, answered as a refusal.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

/// A body that cannot be answered as an AdmissionReview at all: always
/// the request's fault, answered with 400.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("not an AdmissionReview: {0}")]
    NotAReview(String),
}

/// What the front-ends need to know about one answered review.
pub struct Answer {
    pub body: Vec<u8>,
    pub outcome: Outcome,
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

/// The request as an endpoint sees it: the envelope fields every answer
/// echoes, the request document and its object.
pub(super) struct Incoming<'a> {
    pub request: &'a Doc<'a>,
    pub object: Option<&'a Doc<'a>>,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub dry_run: bool,
}

/// An endpoint's whole answer to one request: the reply, the one-line note,
/// and for a pod, its decision and the Event it calls for. The outcome is
/// the reply's.
pub(super) struct Response {
    pub reply: Reply,
    pub note: String,
    pub decision: Option<Decision>,
    pub notice: Option<Notice>,
}

impl Response {
    pub(super) fn new(reply: Reply, note: impl Into<String>) -> Response {
        Response {
            reply,
            note: note.into(),
            decision: None,
            notice: None,
        }
    }

    /// The request's fault: 400, with why.
    pub(super) fn invalid(message: &str) -> Response {
        Response::new(Reply::refused(400, "BadRequest", message), message)
    }

    /// Tandem failed at its own work: refused (so `failurePolicy` and the
    /// companion policy decide), logged and counted as an error.
    pub(super) fn internal(message: &str) -> Response {
        Response::new(Reply::refused(500, "InternalError", message), message)
    }
}

/// Parses `body`, lets `respond` answer the request, and encodes the answer.
pub(super) fn answer(
    body: &[u8],
    reads: ObjectReads,
    respond: impl FnOnce(&Incoming<'_>) -> Response,
) -> Result<Answer, ReviewError> {
    let doc = parse_review(body, reads)?;
    let request = doc.get("request").filter(|r| r.is_object());
    let uid = request
        .and_then(|r| r.get("uid"))
        .and_then(Doc::as_str)
        .filter(|u| !u.is_empty());
    let api_version = doc.get("apiVersion").and_then(Doc::as_str);
    let shape_error = match (api_version, doc.get("kind").and_then(Doc::as_str)) {
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
    let text = |field: &str| request.get(field).and_then(Doc::as_str).unwrap_or_default();
    let object = request.get("object").filter(|o| !o.is_null());
    let generate_name = object
        .and_then(|o| o.pointer("/metadata/generateName"))
        .and_then(Doc::as_str);
    let incoming = Incoming {
        request,
        object,
        namespace: text("namespace").to_string(),
        name: display_name(Some(text("name")).filter(|n| !n.is_empty()), generate_name)
            .unwrap_or_default(),
        operation: text("operation").to_string(),
        dry_run: request
            .get("dryRun")
            .and_then(Doc::as_bool)
            .unwrap_or(false),
    };
    let response = match shape_error {
        Some(why) => Response::invalid(&why),
        None => respond(&incoming),
    };
    Ok(Answer {
        body: response.reply.encode(api_version, uid),
        outcome: response.reply.outcome(),
        uid: uid.to_string(),
        namespace: incoming.namespace,
        name: incoming.name,
        operation: incoming.operation,
        dry_run: incoming.dry_run,
        note: response.note,
        decision: response.decision,
        notice: response.notice,
    })
}

/// The part of a response that depends on the request's content.
#[derive(Default)]
pub(super) struct Reply {
    allowed: bool,
    status: Option<Status>,
    /// The JSON patch, encoded as JSON (not yet base64).
    patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    /// The audit annotation `decision`.
    audit: Option<String>,
}

struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

impl Reply {
    pub(super) fn allowed() -> Reply {
        Reply {
            allowed: true,
            ..Reply::default()
        }
    }

    /// Allowed, with this JSON patch (sent as base64).
    pub(super) fn patched(patch: Vec<u8>) -> Reply {
        Reply {
            patch: Some(patch),
            ..Reply::allowed()
        }
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
    /// The one place an answer's outcome comes from: what the reply says.
    pub(super) fn outcome(&self) -> Outcome {
        match (&self.status, &self.patch) {
            (Some(s), _) if s.code == 400 => Outcome::Invalid,
            (Some(s), _) if s.code >= 500 => Outcome::Error,
            (Some(_), _) => Outcome::Denied,
            (None, Some(_)) => Outcome::Patched,
            (None, None) => Outcome::Allowed,
        }
    }

    pub(super) fn audit(&mut self, decision: String) {
        self.audit = Some(decision);
    }

    /// The AdmissionReview answer, written into one buffer. The patch goes
    /// in as base64 straight from its JSON, by a SIMD encoder chosen at run
    /// time: through serde it was a string re-scanned for escapes (or a
    /// `RawValue` re-validated), and the scalar encoder alone was 7% of a
    /// small pod's admission. Strings are escaped as serde_json escapes
    /// them, plain runs copied whole.
    fn encode(&self, api_version: &str, uid: &str) -> Vec<u8> {
        let patch_len = self.patch.as_ref().map_or(0, |p| p.len() * 4 / 3 + 4);
        let mut out = Vec::with_capacity(384 + patch_len);
        let text = write_json_string;
        out.extend_from_slice(b"{\"apiVersion\":");
        text(&mut out, api_version);
        out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
        text(&mut out, uid);
        out.extend_from_slice(if self.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        });
        if let Some(status) = &self.status {
            out.extend_from_slice(
                format!(",\"status\":{{\"code\":{},\"reason\":", status.code).as_bytes(),
            );
            text(&mut out, status.reason);
            out.extend_from_slice(b",\"message\":");
            text(&mut out, &status.message);
            out.push(b'}');
        }
        if let Some(patch) = &self.patch {
            out.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
            base64_simd::STANDARD.encode_append(patch, &mut out);
            out.push(b'"');
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":[");
            for (i, w) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                text(&mut out, w);
            }
            out.push(b']');
        }
        if let Some(decision) = &self.audit {
            out.extend_from_slice(b",\"auditAnnotations\":{\"decision\":");
            text(&mut out, decision);
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// A request Tandem cannot decide on: refused with 400 and the reason.
/// Which fields of `request.object` a front-end reads; the parse builds
/// only those.
#[derive(Clone, Copy)]
pub(super) enum ObjectReads {
    /// The whole object (but `metadata.managedFields`): a SidecarTemplate to
    /// validate.
    Whole,
    /// The fields either set names: a pod, read by the engine and by the
    /// admission layer itself.
    Either(Fields, Fields),
}

/// Parses a review body into a `Doc` holding what Tandem reads: the
/// envelope fields below, and of `request.object` what `reads` names. The
/// rest is checked to be valid JSON and skipped without being built.
fn parse_review(body: &[u8], reads: ObjectReads) -> Result<Doc<'_>, ReviewError> {
    let text = std::str::from_utf8(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    json::parse(text, Shape::Review(reads)).map_err(|e| ReviewError::Json(e.to_string()))
}

/// Where the parse is in the review, and so which keys it keeps.
#[derive(Clone, Copy)]
enum Shape {
    /// The review: `apiVersion`, `kind`, `request`.
    Review(ObjectReads),
    /// `request`: what `answer` and the front-ends read, and the object.
    Request(ObjectReads),
    /// Everything but `managedFields` inside `metadata` (`metadata` says
    /// whether this value is one): nothing Tandem decides or validates reads
    /// them, and they are often half of an object's JSON.
    All { metadata: bool },
    /// The keys either field set keeps.
    Either(Fields, Fields),
}

const REQUEST_READS: [&str; 7] = [
    "uid",
    "kind",
    "namespace",
    "name",
    "operation",
    "dryRun",
    "subResource",
];

impl Keep for Shape {
    fn child(self, key: &str) -> Option<Shape> {
        let whole = Shape::All {
            metadata: key == "metadata",
        };
        match self {
            Shape::Review(reads) => match key {
                "apiVersion" | "kind" => Some(whole),
                "request" => Some(Shape::Request(reads)),
                _ => None,
            },
            Shape::Request(reads) => match (key, reads) {
                ("object", ObjectReads::Whole) => Some(whole),
                ("object", ObjectReads::Either(a, b)) => Some(Shape::Either(a, b)),
                _ => REQUEST_READS.contains(&key).then_some(whole),
            },
            Shape::All { metadata } => (!(metadata && key == "managedFields")).then_some(whole),
            Shape::Either(a, b) => match (a.child(key), b.child(key)) {
                (None, None) => None,
                (Some(Fields::All), _) | (_, Some(Fields::All)) => Some(whole),
                (a, b) => Some(Shape::Either(
                    a.unwrap_or(Fields::Only(&[])),
                    b.unwrap_or(Fields::Only(&[])),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const POD: ObjectReads = ObjectReads::Either(
        Fields::Only(&[(
            "metadata",
            Fields::Only(&[("name", Fields::All), ("labels", Fields::All)]),
        )]),
        Fields::Only(&[
            ("metadata", Fields::Only(&[("uid", Fields::All)])),
            (
                "spec",
                Fields::Only(&[("containers", Fields::Only(&[("name", Fields::All)]))]),
            ),
        ]),
    );

    #[test]
    fn answers_are_json_with_every_field_escaped_and_the_patch_in_base64() {
        use base64::Engine as _;
        let patch = json!([{ "op": "add", "path": "/a", "value": "\u{1F600} \"q\"" }]);
        let mut reply = Reply::patched(serde_json::to_vec(&patch).unwrap());
        reply.warnings = vec!["tandem: a \"quoted\"\nline".into()];
        reply.audit("patched injected=x(native)\t".into());
        let body = reply.encode("admission.k8s.io/v1", "u\"id\\");
        let out: Value = serde_json::from_slice(&body).unwrap();
        let sent = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap(), patch);
        let mut out = out;
        out["response"]["patch"] = json!("…");
        let r = out["response"].clone();
        assert_eq!(
            out,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
        );
        assert_eq!(
            r,
            json!({"uid": "u\"id\\", "allowed": true, "patchType": "JSONPatch", "patch": "…",
                "warnings": ["tandem: a \"quoted\"\nline"],
                "auditAnnotations": {"decision": "patched injected=x(native)\t"}})
        );

        let refused = Reply::refused(403, "Forbidden", "no \"way\"");
        let out: Value = serde_json::from_slice(&refused.encode("v1beta1", "u")).unwrap();
        assert_eq!(
            out["response"],
            json!({"uid": "u", "allowed": false,
                "status": {"code": 403, "reason": "Forbidden", "message": "tandem: no \"way\""}})
        );
    }

    #[test]
    fn whole_objects_lose_only_managed_fields_of_metadata() {
        let body = br#"{"kind":"AdmissionReview","request":{"uid":"u","object":{"a":{"metadata":{"name":"x","managedFields":[{"f":1}]},"managedFields":2},"n":[1,-2,3.5,true,null,"s"]}}}"#;
        let v = parse_review(body, ObjectReads::Whole).unwrap().to_value();
        let o = &v["request"]["object"];
        assert_eq!(o["a"]["metadata"], json!({"name": "x"}));
        assert_eq!(o["a"]["managedFields"], 2, "only inside metadata");
        assert_eq!(o["n"], json!([1, -2, 3.5, true, null, "s"]));
    }

    #[test]
    fn a_pod_keeps_what_either_reader_names_and_the_envelope_what_answer_reads() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","extra":1,
            "request":{"uid":"u","kind":{"group":"","kind":"Pod"},"userInfo":{"username":"me"},
              "operation":"CREATE","dryRun":true,"namespace":"ns","oldObject":null,
              "object":{"kind":"Pod","metadata":{"name":"p","uid":"1","labels":{"a":"b"},"managedFields":[]},
                "spec":{"containers":[{"name":"app","image":"i"},{"name":"two","args":["x"]}],"dnsPolicy":"x"},
                "status":{}}}}"#;
        let v = parse_review(body, POD).unwrap().to_value();
        assert_eq!(
            v,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {"group": "", "kind": "Pod"},
                  "operation": "CREATE", "dryRun": true, "namespace": "ns",
                  "object": {"metadata": {"name": "p", "uid": "1", "labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "app"}, {"name": "two"}]}}}})
        );
    }

    #[test]
    fn a_wrong_shape_is_kept_for_the_reader_to_report() {
        let body = br#"{"request":{"object":{"metadata":"no","spec":{"containers":{"name":1}}}}}"#;
        let v = parse_review(body, POD).unwrap().to_value();
        assert_eq!(v["request"]["object"]["metadata"], "no");
        assert_eq!(
            v["request"]["object"]["spec"]["containers"],
            json!({"name": 1})
        );
    }

    #[test]
    fn parse_review_is_stack_safe_and_strict_about_what_it_skips() {
        for reads in [ObjectReads::Whole, POD] {
            assert!(parse_review("[".repeat(100_000).as_bytes(), reads).is_err());
            assert!(parse_review(b"{} trailing", reads).is_err());
            assert!(parse_review(b"{\"a\":1,}", reads).is_err());
            assert!(parse_review(br#"{"skipped":[1,}"#, reads).is_err());
            assert!(parse_review(br#"{"skipped":"\x"}"#, reads).is_err());
            assert!(parse_review(b"{\"skipped\":\"\xff\"}", reads).is_err());
            assert!(parse_review(br#"{"k\u0069nd":"AdmissionReview"}"#, reads).is_ok());
        }
        let v = parse_review(br#"{"k\u0069nd":"AdmissionReview"}"#, POD)
            .unwrap()
            .to_value();
        assert_eq!(
            v["kind"], "AdmissionReview",
            "escaped keys are matched unescaped"
        );
    }
}
