//! The decision engine on arbitrary pods: the bytes are parsed as JSON (the
//! seeds are the `request.object` of real and benchmark AdmissionReviews) and
//! decided with the example templates under two settings (see
//! `tandem_fuzz::settings`). When the bytes are an AdmissionReview, its
//! `request.object` is decided too.
//!
//! Asserts, for every decision that is not an error (see
//! `tandem_fuzz::decide_twice`): the patch only adds, never overwrites, and
//! applies with `json_patch::patch`; deciding the patched pod again gives an
//! empty patch; outcome and patch agree; warnings are at most 119 characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let pod = value.pointer("/request/object").unwrap_or(&value);
    let templates = tandem_fuzz::example_templates();
    for setting in tandem_fuzz::settings(pod) {
        tandem_fuzz::decide_twice(pod, templates, &setting);
    }
});
