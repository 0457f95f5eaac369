//! Add-only JSON patches on the raw pod: parents are created when absent, keys
//! are escaped as JSON pointers, and nothing of the user's is re-serialised.
//! Whether a parent exists is read from the `PodView`, which checked the
//! pod's shapes once.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::{Map, Value};

use super::conflicts::Additions;
use super::pod::PodView;
use crate::template::{Position, Template};

/// Everything a decision adds, gathered before the operations are built so
/// that several templates adding to the same absent array create it once.
#[derive(Default)]
pub(super) struct Plan {
    /// Init containers to insert before the user's, in order.
    pub init_front: Vec<Value>,
    /// Init containers to append after the user's.
    pub init_back: Vec<Value>,
    pub containers: Vec<Value>,
    pub volumes: Vec<Value>,
    pub app: BTreeMap<usize, AppExtra>,
    /// Annotations to set (only those whose value changes).
    pub annotations: Vec<(String, String)>,
}

/// What one app container gets.
#[derive(Default)]
pub(super) struct AppExtra {
    pub volume_mounts: Vec<Value>,
    pub env: Vec<Value>,
    pub env_from: Vec<Value>,
}

impl Plan {
    /// Adds an accepted template: its containers (native sidecars get
    /// `restartPolicy: Always` and go with its init containers at
    /// `position`), and what the conflict check let through.
    pub(super) fn add(&mut self, t: &Template, native: bool, additions: Additions<'_>) {
        let mut init: Vec<Value> = t.rendered.init_containers.clone();
        if native {
            init.extend(t.rendered.native_containers.iter().cloned());
        } else {
            self.containers
                .extend(t.rendered.containers.iter().cloned());
        }
        match t.spec.position {
            Position::BeforeUserInit => self.init_front.extend(init),
            Position::AfterUserInit => self.init_back.extend(init),
        }
        self.volumes.extend(additions.volumes.into_iter().cloned());
        for (i, extra) in additions.app {
            let entry = self.app.entry(i).or_default();
            entry
                .volume_mounts
                .extend(extra.volume_mounts.into_iter().cloned());
            entry.env.extend(extra.env.into_iter().cloned());
            entry.env_from.extend(extra.env_from.into_iter().cloned());
        }
    }
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn ptr<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// Appends `items` to the array at `base`, creating it when `exists` is false.
fn append(ops: &mut Vec<PatchOperation>, base: &[&str], exists: bool, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if exists {
        for item in items {
            let mut p = ptr(base.iter().copied());
            p.push_back("-");
            ops.push(add(p, item));
        }
    } else {
        ops.push(add(ptr(base.iter().copied()), Value::Array(items)));
    }
}

/// Builds the operations for `plan` against `pod`.
pub(super) fn build(pod: &PodView<'_>, plan: Plan) -> Vec<PatchOperation> {
    let mut ops = Vec::new();

    if pod.init_containers.is_some() {
        for (i, c) in plan.init_front.into_iter().enumerate() {
            let index = i.to_string();
            ops.push(add(ptr(["spec", "initContainers", index.as_str()]), c));
        }
        append(&mut ops, &["spec", "initContainers"], true, plan.init_back);
    } else {
        let mut all = plan.init_front;
        all.extend(plan.init_back);
        append(&mut ops, &["spec", "initContainers"], false, all);
    }
    append(
        &mut ops,
        &["spec", "containers"],
        pod.has_containers,
        plan.containers,
    );
    append(
        &mut ops,
        &["spec", "volumes"],
        pod.volumes.is_some(),
        plan.volumes,
    );

    for (i, extra) in plan.app {
        let index = i.to_string();
        for (field, items) in [
            ("volumeMounts", extra.volume_mounts),
            ("env", extra.env),
            ("envFrom", extra.env_from),
        ] {
            append(
                &mut ops,
                &["spec", "containers", index.as_str(), field],
                pod.container_has_list(i, field),
                items,
            );
        }
    }

    if !plan.annotations.is_empty() {
        if pod.annotations.is_some() {
            for (k, v) in plan.annotations {
                ops.push(add(
                    ptr(["metadata", "annotations", k.as_str()]),
                    Value::String(v),
                ));
            }
        } else {
            let map: Map<String, Value> = plan
                .annotations
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            if pod.has_metadata {
                ops.push(add(ptr(["metadata", "annotations"]), Value::Object(map)));
            } else {
                let meta = serde_json::json!({ "annotations": map });
                ops.push(add(ptr(["metadata"]), meta));
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_escaped_as_json_pointers() {
        let pod = json!({ "metadata": { "annotations": {} }, "spec": { "containers": [] } });
        let view = PodView::new(&pod).unwrap();
        let plan = Plan {
            annotations: vec![("a~b/c".into(), "v".into())],
            ..Plan::default()
        };
        let patch = build(&view, plan);
        let paths: Vec<String> = patch.iter().map(|op| op.path().to_string()).collect();
        assert_eq!(paths, ["/metadata/annotations/a~0b~1c"]);
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        assert_eq!(out["metadata"]["annotations"]["a~b/c"], "v");
    }
}
