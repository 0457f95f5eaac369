//! `/mutate`: a Pod CREATE through the engine, its decision mapped to an
//! answer: patched, allowed or denied, with warnings and the audit record.
//! Other kinds, operations and sub-resources pass through unchanged.

use super::codec::{Answer, Incoming, ObjectReads, Reply, Response, ReviewError, answer};
use super::notice::Notice;
use crate::engine::{self, EngineError, Input};
use crate::facts::{Capabilities, Doc, Fields, Namespace, NamespaceFacts, Policy};
use crate::template::TemplateSet;

/// The API server rejects a response whose warnings exceed this in total.
const MAX_WARNINGS_BYTES: usize = 4000;

/// What a decision depends on besides the request.
pub struct Context<'a> {
    pub templates: &'a TemplateSet,
    pub namespaces: &'a dyn NamespaceFacts,
    pub capabilities: &'a Capabilities,
    pub policy: &'a Policy,
}

/// What this layer reads of a pod besides the engine: its name for the
/// answer, and its controller for the notice's Event.
const POD_READS: Fields = Fields::Only(&[(
    "metadata",
    Fields::Only(&[
        ("name", Fields::All),
        ("generateName", Fields::All),
        ("ownerReferences", Fields::All),
    ]),
)]);

/// Answers one AdmissionReview body for `/mutate`.
pub fn review(body: &[u8], ctx: &Context<'_>) -> Result<Answer, ReviewError> {
    let reads = ObjectReads::Either(engine::POD_READS, POD_READS);
    answer(body, reads, |incoming| respond(incoming, ctx))
}

fn respond(incoming: &Incoming<'_>, ctx: &Context<'_>) -> Response {
    if let Some(why) = pass_through(incoming.request, &incoming.operation) {
        return Response::new(Reply::allowed(), why);
    }
    let Some(pod) = incoming.object else {
        return Response::invalid("request.object is missing");
    };
    let namespace = ctx
        .namespaces
        .get(&incoming.namespace)
        .unwrap_or_else(|| Namespace {
            name: incoming.namespace.clone(),
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
            return Response::invalid(&format!("malformed pod: {m}"));
        }
        Err(e @ EngineError::Encode { .. }) => return Response::internal(&e.to_string()),
    };
    let mut reply = match &decision.outcome {
        engine::Outcome::Denied { message } => Reply::refused(403, "Forbidden", message),
        engine::Outcome::Patched => Reply::patched(decision.patch.to_json()),
        engine::Outcome::Unchanged { .. } => Reply::allowed(),
    };
    reply.warnings = bounded_warnings(&decision.warnings);
    let note = decision.summary();
    reply.audit(note.clone());
    // Dry-run requests have no side effects, Events included.
    let notice = if incoming.dry_run {
        None
    } else {
        Notice::for_decision(&decision, pod, &incoming.namespace, &incoming.name)
    };
    Response {
        reply,
        note,
        decision: Some(decision),
        notice,
    }
}

/// Why a request is allowed unchanged without a decision: not a Pod, not a
/// CREATE, or a sub-resource. `None` for a pod being created.
fn pass_through(request: &Doc<'_>, operation: &str) -> Option<String> {
    let kind = request.get("kind");
    let is_pod = kind.and_then(|k| k.get("kind")).and_then(Doc::as_str) == Some("Pod")
        && kind
            .and_then(|k| k.get("group"))
            .and_then(Doc::as_str)
            .unwrap_or("")
            .is_empty();
    let sub_resource = request
        .get("subResource")
        .and_then(Doc::as_str)
        .unwrap_or("");
    if !is_pod {
        Some("not a Pod".into())
    } else if !sub_resource.is_empty() {
        Some(format!("sub-resource {sub_resource}"))
    } else if operation != "CREATE" {
        Some(format!("operation {operation}"))
    } else {
        None
    }
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::admission::Outcome;
    use serde_json::{Value, json};

    /// The captured CREATE review, asking for `templates` and, with `env`,
    /// giving its app container that env var.
    fn captured_review(templates: &str, env: Option<&str>) -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/admission-v1.36/create.json"
        );
        let mut review: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let pod = &mut review["request"]["object"];
        pod["metadata"]["annotations"] = json!({ crate::facts::INJECT_ANNOTATION: templates });
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
            namespaces: &crate::facts::NoNamespaces,
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
        assert_eq!(answer.outcome, Outcome::Patched);
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
        assert_eq!(again.outcome, Outcome::Allowed, "{}", again.note);
        assert!(out["response"].get("patch").is_none(), "{out}");
    }

    #[test]
    fn a_denied_answer_is_403_forbidden_with_the_reason_and_no_patch() {
        let (answer, out) =
            answer_with_examples(&captured_review("db-ambassador", Some("DATABASE_URL")));
        assert_eq!(answer.outcome, Outcome::Denied);
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
}
