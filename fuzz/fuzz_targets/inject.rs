//! The offline `tandem inject` path on arbitrary UTF-8 manifests:
//! `cli::manifest::parse` (one JSON value, or multi-document YAML), the pods
//! found by `cli::manifest::pods_in` (Pod, workload templates, CronJob, List)
//! decided with the example templates and patched in place, as `inject` does.
//!
//! Asserts: each pod's patch only adds and applies (`tandem_fuzz::check_decision`);
//! the output rendered in the input's format parses back to the same documents
//! (what `tandem inject` prints is what was decided); and injecting that
//! output again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tandem::cli::manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = manifest::parse("fuzz.yaml", text) else {
        return;
    };
    let Some(docs) = inject(&m.docs, true) else {
        return;
    };
    let rendered = manifest::render(m.format, &docs).expect("rendering a parsed manifest never fails");
    let again = manifest::parse("rendered", &rendered).unwrap_or_else(|e| {
        panic!("inject output does not parse back: {e}\n{rendered}")
    });
    assert_eq!(
        again.docs, docs,
        "inject output does not parse back to the same documents:\n{rendered}"
    );
    inject(&again.docs, false);
});

/// Injects into every pod of `docs`; `None` when a document has no pods or
/// a pod is malformed (`tandem inject` reports those as errors). With
/// `first` false, asserts that nothing changes.
fn inject(docs: &[Value], first: bool) -> Option<Vec<Value>> {
    let templates = tandem_fuzz::example_templates();
    let mut out = Vec::new();
    for doc in docs {
        let mut doc = doc.clone();
        let refs = manifest::pods_in(&doc).ok()?;
        for r in refs {
            let pod = doc.pointer(&r.pointer).cloned().unwrap_or(Value::Null);
            let setting = &tandem_fuzz::settings(&pod)[0];
            let decision = tandem_fuzz::decide(&pod, templates, setting).ok()?;
            let patched = tandem_fuzz::check_decision(&pod, &decision);
            assert!(
                first || decision.patch.is_empty(),
                "{}: injecting the output again changes it: {} {:?}",
                r.label,
                decision.summary(),
                decision.patch
            );
            *doc.pointer_mut(&r.pointer).expect("pods_in gave a valid pointer") = patched;
        }
        out.push(doc);
    }
    Some(out)
}
