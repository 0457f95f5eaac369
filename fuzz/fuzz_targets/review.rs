//! Arbitrary bytes as an AdmissionReview body, through `/mutate`
//! (`admission::review` with the example templates) and `/validate`
//! (`admission::validate_template`).
//!
//! Beyond "no panic", asserts what the API server relies on:
//! - a body that is valid JSON with a non-empty string at `request.uid` is
//!   always answered as an AdmissionReview (Ok), carrying that uid;
//! - every answer is valid JSON: an AdmissionReview of the request's version
//!   with `response.allowed` a bool;
//! - warnings are each under 120 characters and under 4 KiB in total;
//! - a patch is base64 of a JSON patch (`patchType: JSONPatch`) that applies
//!   to `request.object`, only adding (see `tandem_fuzz::apply_checked`).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tandem::admission::{self, Answer, Context, Outcome, ReviewError};
use tandem::facts::{Capabilities, NoNamespaces, Policy};

fuzz_target!(|data: &[u8]| {
    // The request as a plain JSON parser sees it; `None` when not JSON (or
    // nested past serde_json's recursion limit, like Tandem's own parser).
    let strict: Option<Value> = serde_json::from_slice(data).ok();
    // Tandem skips `metadata.managedFields` without decoding it, so it also
    // answers bodies whose only invalid UTF-8 is in there: for checking such
    // an answer, read the body with invalid bytes replaced.
    let request = strict.clone().or_else(|| {
        serde_json::from_str::<Value>(&String::from_utf8_lossy(data)).ok()
    });
    // A strictly valid body with a uid must be answered (Ok)...
    let required = uid_of(strict.as_ref());
    // ...and any answer must carry the uid the body had.
    let uid = uid_of(request.as_ref());

    let capabilities = Capabilities::default();
    let policy = Policy::default();
    let ctx = Context {
        templates: tandem_fuzz::example_templates(),
        namespaces: &NoNamespaces,
        capabilities: &capabilities,
        policy: &policy,
    };
    check(
        "review",
        admission::review(data, &ctx),
        request.as_ref(),
        required,
        uid,
    );
    check(
        "validate_template",
        admission::validate_template(data),
        request.as_ref(),
        required,
        uid,
    );
});

/// `request.uid` when `request` is an object and the uid a non-empty string.
fn uid_of(body: Option<&Value>) -> Option<&str> {
    body?
        .get("request")
        .filter(|r| r.is_object())?
        .get("uid")?
        .as_str()
        .filter(|u| !u.is_empty())
}

fn check(
    what: &str,
    result: Result<Answer, ReviewError>,
    request: Option<&Value>,
    required: Option<&str>,
    uid: Option<&str>,
) {
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            assert!(
                required.is_none(),
                "{what}: a JSON body with request.uid {required:?} was not answered: {e}"
            );
            return;
        }
    };
    assert_ne!(
        answer.outcome,
        Outcome::Error,
        "{what}: Tandem failed to encode its own answer: {}",
        answer.note
    );
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "{what}: answer body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&answer.body)
        )
    });
    assert_eq!(body["kind"], "AdmissionReview", "{what}: {body}");
    let want_version = match request.and_then(|r| r.get("apiVersion")) {
        Some(Value::String(v)) if v == "admission.k8s.io/v1beta1" => "admission.k8s.io/v1beta1",
        _ => "admission.k8s.io/v1",
    };
    if request.is_some() {
        assert_eq!(body["apiVersion"], want_version, "{what}: {body}");
    }
    let response = &body["response"];
    assert!(response.is_object(), "{what}: no response object: {body}");
    if let Some(uid) = uid {
        assert_eq!(response["uid"], uid, "{what}: uid not echoed: {body}");
        assert_eq!(answer.uid, uid, "{what}: Answer.uid");
    }
    let Some(allowed) = response["allowed"].as_bool() else {
        panic!("{what}: response.allowed is not a bool: {body}");
    };

    if let Some(warnings) = response.get("warnings") {
        let warnings = warnings.as_array().expect("warnings is an array");
        let mut total = 0;
        for w in warnings {
            let w = w.as_str().expect("a warning is a string");
            assert!(w.chars().count() < 120, "{what}: warning too long: {w:?}");
            total += w.len();
        }
        assert!(total < 4096, "{what}: warnings total {total} bytes");
    }

    let Some(patch) = response.get("patch") else {
        return;
    };
    assert!(allowed, "{what}: a patch on a denied request: {body}");
    assert_eq!(response["patchType"], "JSONPatch", "{what}: {body}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().expect("patch is a string"))
        .unwrap_or_else(|e| panic!("{what}: patch is not base64: {e}"));
    let ops: Vec<json_patch::PatchOperation> = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: patch is not a JSON patch ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert!(!ops.is_empty(), "{what}: empty patch sent");
    // `None` only when serde_json cannot read the body at all, e.g. nesting
    // past its recursion limit inside `managedFields`, which Tandem skips
    // without a limit.
    let Some(request) = request else {
        return;
    };
    let object = request
        .pointer("/request/object")
        .unwrap_or_else(|| panic!("{what}: patched, but the request has no object: {body}"));
    tandem_fuzz::apply_checked(object, &ops);
}
