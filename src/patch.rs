//! Add-only JSON patches on the raw pod: parents are created when absent, keys
//! are escaped as JSON pointers, and nothing of the user's is re-serialised.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::{Map, Value};

/// Everything a decision adds, gathered before the operations are built so
/// that several templates adding to the same absent array create it once.
#[derive(Default)]
pub struct Plan {
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
pub struct AppExtra {
    pub volume_mounts: Vec<Value>,
    pub env: Vec<Value>,
    pub env_from: Vec<Value>,
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

/// Builds the operations for `plan` against `pod` (the raw pod object).
pub fn build(pod: &Value, plan: Plan) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let spec = pod.get("spec");
    let has = |field: &str| spec.and_then(|s| s.get(field)).is_some_and(Value::is_array);

    if has("initContainers") {
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
        has("containers"),
        plan.containers,
    );
    append(&mut ops, &["spec", "volumes"], has("volumes"), plan.volumes);

    let containers = spec.and_then(|s| s.get("containers"));
    for (i, extra) in plan.app {
        let index = i.to_string();
        let container = containers.and_then(|c| c.get(i));
        for (field, items) in [
            ("volumeMounts", extra.volume_mounts),
            ("env", extra.env),
            ("envFrom", extra.env_from),
        ] {
            let exists = container
                .and_then(|c| c.get(field))
                .is_some_and(Value::is_array);
            append(
                &mut ops,
                &["spec", "containers", index.as_str(), field],
                exists,
                items,
            );
        }
    }

    if !plan.annotations.is_empty() {
        let metadata = pod.get("metadata");
        let annotations = metadata
            .and_then(|m| m.get("annotations"))
            .filter(|a| a.is_object());
        if annotations.is_some() {
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
            if metadata.is_some_and(Value::is_object) {
                ops.push(add(ptr(["metadata", "annotations"]), Value::Object(map)));
            } else {
                let meta = serde_json::json!({ "annotations": map });
                ops.push(add(ptr(["metadata"]), meta));
            }
        }
    }
    ops
}
