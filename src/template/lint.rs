//! Lints for `tandem check`: templates that load fine but will hurt someone.
//! Each looks at one template; two templates that collide are found by the
//! engine's own conflict checks (`engine::collisions`).

use k8s_openapi::api::core::v1::Container;

use super::{Lifecycle, Pattern, Template};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub template: String,
    pub source: String,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: template \"{}\": {}: {}",
            self.source, self.template, self.field, self.message
        )
    }
}

/// Names that say nothing of what a helper does.
const VAGUE_NAMES: &[&str] = &[
    "sidecar",
    "container",
    "helper",
    "proxy",
    "main",
    "init",
    "app",
    "agent",
    "test",
    "tmp",
];

/// The lints of each template on its own.
pub fn lint<'a>(templates: impl IntoIterator<Item = &'a Template>) -> Vec<Lint> {
    let mut out = Vec::new();
    for t in templates {
        let mut push = |field: String, message: &str| {
            out.push(Lint {
                template: t.name.clone(),
                source: t.source.clone(),
                field,
                message: message.to_string(),
            })
        };
        let spec = &t.spec;
        let lists = [
            ("spec.initContainers", &spec.init_containers),
            ("spec.containers", &spec.containers),
        ];
        for (list, containers) in lists {
            for (i, c) in containers.iter().enumerate() {
                container(&format!("{list}[{i}]"), c, &mut push);
            }
        }
        let native_possible = spec.lifecycle != Lifecycle::Classic;
        for (i, c) in spec.containers.iter().enumerate() {
            let field = format!("spec.containers[{i}]");
            if native_possible && c.readiness_probe.is_some() && c.startup_probe.is_none() {
                push(
                    field,
                    "readinessProbe of a native sidecar gates nothing: add a startupProbe so the app waits for it",
                );
            } else if native_possible
                && spec.pattern == Pattern::Ambassador
                && c.startup_probe.is_none()
            {
                push(
                    field,
                    "ambassador without startupProbe: the app may start before the proxy listens",
                );
            }
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            if let Some(e) = &v.empty_dir
                && e.medium.as_deref() == Some("Memory")
                && e.size_limit.is_none()
            {
                push(
                    format!("spec.volumes[{i}].emptyDir"),
                    "medium Memory without sizeLimit: its bytes count against the writer's memory limit, unbounded",
                );
            }
        }
    }
    out
}

fn container(field: &str, c: &Container, push: &mut impl FnMut(String, &str)) {
    let resources = c.resources.as_ref();
    if resources
        .and_then(|r| r.requests.as_ref())
        .is_none_or(|r| r.is_empty())
    {
        push(
            format!("{field}.resources.requests"),
            "not set: the scheduler cannot account for this container",
        );
    }
    if resources
        .and_then(|r| r.limits.as_ref())
        .is_none_or(|r| r.is_empty())
    {
        push(
            format!("{field}.resources.limits"),
            "not set: this container can starve the app",
        );
    }
    let name = c.name.as_str();
    let numbered = name.trim_end_matches(|ch: char| ch.is_ascii_digit() || ch == '-');
    if name.len() < 3 || VAGUE_NAMES.contains(&name) || VAGUE_NAMES.contains(&numbered) {
        push(
            format!("{field}.name"),
            "does not say what the container does (e.g. log-shipper, db-proxy)",
        );
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    if !image.contains('@') && (!last.contains(':') || last.ends_with(":latest")) {
        push(
            format!("{field}.image"),
            "has no pinned tag or digest: pods would change under you",
        );
    }
}
