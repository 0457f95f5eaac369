//! Template loading on arbitrary UTF-8: `parse_documents` (YAML, multi-document,
//! `kind: List`) and `TemplateSet::new`, then the lints of `tandem check` on
//! what loaded. No input may panic; errors must format.
//!
//! Every template that loads is then injected into a plain pod that requests
//! all of them by name, and the decision is checked like the engine target's
//! (`tandem_fuzz::decide_twice`): a valid template must give a patch that
//! applies, only adds, and is not repeated by a second admission.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tandem::engine;
use tandem::template::{self, TemplateSet, parse_documents};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let templates = match parse_documents("fuzz.yaml", text) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                let _ = e.to_string();
            }
            return;
        }
    };
    let names: Vec<String> = templates.iter().map(|t| t.name.clone()).collect();
    let set = match TemplateSet::new(templates) {
        Ok(set) => set,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let all = || set.all().map(|t| t.as_ref());
    for l in template::lint(all()).into_iter().chain(engine::collisions(all())) {
        let _ = l.to_string();
    }
    if names.is_empty() {
        return;
    }
    for pod in pods(&names.join(",")) {
        for setting in tandem_fuzz::settings(&pod) {
            tandem_fuzz::decide_twice(&pod, &set, &setting);
        }
    }
});

/// A bare pod and a Job-like pod with an init container, a volume and env, both
/// requesting `names`.
fn pods(names: &str) -> [Value; 2] {
    [
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "annotations": {"tandem.dev/inject": names}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
        }),
        json!({
            "metadata": {"generateName": "job-", "namespace": "shop",
                         "labels": {"tandem.dev/metrics": "true"},
                         "annotations": {"tandem.dev/inject": names}},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "migrate", "image": "migrate:1",
                                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
                "containers": [
                    {"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}],
                     "env": [{"name": "A", "value": "1"}],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                     "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
                    {"name": "helper", "image": "helper:1"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        }),
    ]
}
