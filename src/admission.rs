//! AdmissionReview in, AdmissionReview out. Owns the uid (always echoed), the
//! mapping of decisions to allow/deny, warnings, audit annotations and dry
//! run. Knows nothing of HTTP or TLS.

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{
    self, Capabilities, Decision, EngineError, Input, Namespace, Outcome, Policy, Verdict,
};
use crate::template::TemplateSet;

/// The API server rejects a response whose warnings exceed this in total.
const MAX_WARNINGS_BYTES: usize = 4000;

/// Namespace facts for the pod's namespace; `None` when unknown.
pub trait NamespaceFacts: Send + Sync {
    fn get(&self, name: &str) -> Option<Namespace>;
}

/// Without a cluster: only the namespace's name is known.
pub struct NoNamespaces;

impl NamespaceFacts for NoNamespaces {
    fn get(&self, _name: &str) -> Option<Namespace> {
        None
    }
}

pub struct Context<'a> {
    pub templates: &'a TemplateSet,
    pub namespaces: &'a dyn NamespaceFacts,
    pub capabilities: &'a Capabilities,
    pub policy: &'a Policy,
}

/// How a review was answered, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Patched,
    Allowed,
    Denied,
    Invalid,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Patched => "patched",
            Kind::Allowed => "allowed",
            Kind::Denied => "denied",
            Kind::Invalid => "invalid",
        }
    }
}

/// A review that cannot be answered as an AdmissionReview at all (no uid).
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
    /// What an Event about a skipped or denied injection should point at;
    /// set only when there is one to report and the request is not a dry run.
    pub regarding: Option<k8s_openapi::api::core::v1::ObjectReference>,
}

/// Answers one AdmissionReview body for `/mutate`.
pub fn review(body: &[u8], ctx: &Context<'_>) -> Result<Answer, ReviewError> {
    answer(body, |request, object, answer| {
        respond(request, object, answer, ctx)
    })
}

/// Answers one AdmissionReview body for `/validate`: a SidecarTemplate is
/// checked with the same validation as `tandem check`, so `kubectl apply`
/// rejects what Tandem would reject, with the same message.
pub fn validate_template(body: &[u8]) -> Result<Answer, ReviewError> {
    answer(body, |request, object, answer| {
        let kind = request
            .pointer("/kind/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind != crate::template::KIND || answer.operation == "DELETE" {
            answer.note = format!("{kind} {} not checked", answer.operation);
            return Reply::allowed();
        }
        let Some(object) = object else {
            return invalid(answer, "request.object is missing");
        };
        let scope = crate::template::Scope::Namespace(answer.namespace.clone());
        match crate::template::template_from_object(object, &answer.namespace, scope) {
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

fn answer(
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
        .and_then(Value::as_str)
        .map(|g| format!("{g}*"));
    let mut answer = Answer {
        body: Vec::new(),
        kind: Kind::Allowed,
        uid: uid.to_string(),
        namespace: text("namespace").to_string(),
        name: Some(text("name"))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or(generate_name)
            .unwrap_or_default(),
        operation: text("operation").to_string(),
        dry_run: request
            .get("dryRun")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        note: String::new(),
        decision: None,
        regarding: None,
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
    answer.body = serde_json::to_vec(&out).unwrap_or_default();
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
struct Reply {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// The JSON patch, base64-encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
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
    fn allowed() -> Reply {
        Reply {
            allowed: true,
            ..Reply::default()
        }
    }

    fn refused(code: u16, reason: &'static str, message: &str) -> Reply {
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
}

fn respond(
    request: &Value,
    object: Option<&Value>,
    answer: &mut Answer,
    ctx: &Context<'_>,
) -> Reply {
    let kind = request.get("kind");
    let is_pod = kind.and_then(|k| k.get("kind")).and_then(Value::as_str) == Some("Pod")
        && kind
            .and_then(|k| k.get("group"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
    let sub_resource = request
        .get("subResource")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !is_pod || answer.operation != "CREATE" || !sub_resource.is_empty() {
        answer.note = if !is_pod {
            "not a Pod".into()
        } else if !sub_resource.is_empty() {
            format!("sub-resource {sub_resource}")
        } else {
            format!("operation {}", answer.operation)
        };
        return Reply::allowed();
    }
    let Some(pod) = object else {
        return invalid(answer, "request.object is missing");
    };
    let namespace = ctx
        .namespaces
        .get(&answer.namespace)
        .unwrap_or_else(|| Namespace {
            name: answer.namespace.clone(),
            ..Namespace::default()
        });
    let decided = engine::decide(&Input {
        pod,
        namespace: &namespace,
        templates: ctx.templates,
        capabilities: ctx.capabilities,
        policy: ctx.policy,
    });
    let decision = match decided {
        Ok(d) => d,
        Err(EngineError::MalformedPod(m)) => {
            return invalid(answer, &format!("malformed pod: {m}"));
        }
    };
    let mut reply = match &decision.outcome {
        Outcome::Denied { message } => {
            answer.kind = Kind::Denied;
            Reply::refused(403, "Forbidden", message)
        }
        Outcome::Patched => {
            answer.kind = Kind::Patched;
            let patch = serde_json::to_vec(&decision.patch).unwrap_or_default();
            Reply {
                patch_type: Some("JSONPatch"),
                patch: Some(base64::engine::general_purpose::STANDARD.encode(patch)),
                ..Reply::allowed()
            }
        }
        Outcome::Unchanged { .. } => Reply::allowed(),
    };
    reply.warnings = bounded_warnings(&decision.warnings);
    answer.note = decision.summary();
    reply.audit_annotations = Some(AuditAnnotations {
        decision: answer.note.clone(),
    });
    let worth_an_event = matches!(decision.outcome, Outcome::Denied { .. })
        || decision
            .templates
            .iter()
            .any(|t| matches!(t.verdict, Verdict::Skipped { .. } | Verdict::Missing));
    // Dry-run requests have no side effects, Events included.
    if worth_an_event && !answer.dry_run {
        answer.regarding = crate::cluster::events::regarding(pod, &answer.namespace);
    }
    answer.decision = Some(decision);
    reply
}

fn invalid(answer: &mut Answer, message: &str) -> Reply {
    answer.kind = Kind::Invalid;
    answer.note = message.to_string();
    Reply::refused(400, "BadRequest", message)
}

/// Keeps warnings within the API server's total limit, saying so when some
/// had to go.
fn bounded_warnings(warnings: &[String]) -> Vec<String> {
    let mut total = 0;
    let mut out = Vec::new();
    for w in warnings {
        if total + w.len() > MAX_WARNINGS_BYTES - 64 {
            out.push("tandem: more warnings omitted; run tandem explain for all of them".into());
            break;
        }
        total += w.len();
        out.push(w.clone());
    }
    out
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
    use super::*;
    use serde_json::json;

    /// The captured CREATE review, asking for `templates` and, with `env`,
    /// giving its app container that env var.
    fn captured_review(templates: &str, env: Option<&str>) -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/admission-v1.36/create.json"
        );
        let mut review: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let pod = &mut review["request"]["object"];
        pod["metadata"]["annotations"] = json!({ engine::INJECT_ANNOTATION: templates });
        if let Some(name) = env {
            pod["spec"]["containers"][0]["env"] = json!([{ "name": name, "value": "x" }]);
        }
        review
    }

    /// Answers `review` with the example templates: the answer and its body.
    fn answer_with_examples(review: &Value) -> (Answer, Value) {
        let set = TemplateSet::new(crate::template::examples().unwrap()).unwrap();
        let ctx = Context {
            templates: &set,
            namespaces: &NoNamespaces,
            capabilities: &Capabilities::default(),
            policy: &Policy::default(),
        };
        let answer = super::review(&serde_json::to_vec(review).unwrap(), &ctx).unwrap();
        let out: Value = serde_json::from_slice(&answer.body).unwrap();
        (answer, out)
    }

    #[test]
    fn a_patched_answer_carries_a_patch_that_applies_and_the_summary() {
        let mut review = captured_review("log-shipper", None);
        let (answer, out) = answer_with_examples(&review);
        assert_eq!(answer.kind, Kind::Patched);
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        let r = &out["response"];
        assert_eq!(r["uid"], "47dbdee9-39a4-474c-861a-99b052dabfdb");
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        assert!(r.get("status").is_none(), "{r}");
        assert_eq!(r["auditAnnotations"]["decision"], answer.note.as_str());
        assert!(answer.note.starts_with("patched "), "{}", answer.note);

        let patch = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let pod = &mut review["request"]["object"];
        json_patch::patch(pod, &patch).unwrap();
        let names: Vec<&str> = ["containers", "initContainers"]
            .iter()
            .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(
            names.contains(&"app") && names.contains(&"log-shipper"),
            "{names:?}"
        );

        let (again, out) = answer_with_examples(&review);
        assert_eq!(again.kind, Kind::Allowed, "{}", again.note);
        assert!(out["response"].get("patch").is_none(), "{out}");
    }

    #[test]
    fn a_denied_answer_is_403_forbidden_with_the_reason_and_no_patch() {
        let (answer, out) =
            answer_with_examples(&captured_review("db-ambassador", Some("DATABASE_URL")));
        assert_eq!(answer.kind, Kind::Denied);
        let r = &out["response"];
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        assert_eq!(r["status"]["reason"], "Forbidden");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("tandem: ") && message.contains("db-ambassador"),
            "{message}"
        );
        assert!(
            r.get("patch").is_none() && r.get("patchType").is_none(),
            "{r}"
        );
        assert_eq!(r["auditAnnotations"]["decision"], answer.note.as_str());
    }

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
