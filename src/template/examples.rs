//! The example templates built into the binary, so `tandem inject` shows
//! something on a fresh machine (and benches and fuzzers share one copy).

use super::{LoadError, Template, parse_documents};

const FILES: &[(&str, &str)] = &[
    (
        "examples/templates/config-init.yaml",
        include_str!("../../examples/templates/config-init.yaml"),
    ),
    (
        "examples/templates/db-ambassador.yaml",
        include_str!("../../examples/templates/db-ambassador.yaml"),
    ),
    (
        "examples/templates/log-adapter.yaml",
        include_str!("../../examples/templates/log-adapter.yaml"),
    ),
    (
        "examples/templates/log-shipper.yaml",
        include_str!("../../examples/templates/log-shipper.yaml"),
    ),
    (
        "examples/templates/metrics-exporter.yaml",
        include_str!("../../examples/templates/metrics-exporter.yaml"),
    ),
];

/// Loads the built-in examples.
pub fn examples() -> Result<Vec<Template>, Vec<LoadError>> {
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in FILES {
        match parse_documents(path, text) {
            Ok(mut t) => all.append(&mut t),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(errors)
    }
}
