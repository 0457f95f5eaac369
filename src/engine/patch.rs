//! Add-only JSON patches on the raw pod: parents are created when absent, keys
//! are escaped as JSON pointers, and nothing of the user's is re-serialised.
//! Whether a parent exists is read from the `PodView`, which checked the
//! pod's shapes once.

use std::collections::BTreeMap;
use std::sync::Arc;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::{Map, Value};

use super::conflicts::Additions;
use super::pod::PodView;
use crate::facts::write_json_string;
use crate::template::{Object, Position, Template};

/// A decision's JSON patch: `add` operations only. The template objects in
/// it are shared with the template set and written out as encoded at load.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    ops: Vec<Add>,
}

#[derive(Clone, Debug)]
struct Add {
    /// A JSON pointer, its tokens escaped.
    path: String,
    value: Item,
}

#[derive(Clone, Debug)]
enum Item {
    /// One template object.
    Object(Arc<Object>),
    /// An array created whole from template objects.
    Objects(Vec<Arc<Object>>),
    /// One annotation's value.
    Text(String),
    /// A string map (annotations or labels) added where the pod has none,
    /// sorted by key.
    Strings(Vec<(String, String)>),
    /// A new `metadata` object holding the maps, where the pod has none;
    /// an empty map is left out.
    Metadata {
        annotations: Vec<(String, String)>,
        labels: Vec<(String, String)>,
    },
}

fn string_map(entries: &[(String, String)]) -> Map<String, Value> {
    entries
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// Writes `entries` as a JSON object.
fn write_strings(out: &mut Vec<u8>, entries: &[(String, String)]) {
    out.push(b'{');
    for (j, (k, v)) in entries.iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_json_string(out, k);
        out.push(b':');
        write_json_string(out, v);
    }
    out.push(b'}');
}

fn strings_len(entries: &[(String, String)]) -> usize {
    entries.iter().map(|(k, v)| k.len() + v.len() + 8).sum()
}

impl Item {
    fn to_value(&self) -> Value {
        match self {
            Item::Object(o) => o.value().clone(),
            Item::Objects(os) => Value::Array(os.iter().map(|o| o.value().clone()).collect()),
            Item::Text(s) => Value::String(s.clone()),
            Item::Strings(entries) => Value::Object(string_map(entries)),
            Item::Metadata {
                annotations,
                labels,
            } => {
                let mut metadata = Map::new();
                for (key, entries) in [("annotations", annotations), ("labels", labels)] {
                    if !entries.is_empty() {
                        metadata.insert(key.into(), Value::Object(string_map(entries)));
                    }
                }
                Value::Object(metadata)
            }
        }
    }
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The operations as `json_patch` values, to apply or inspect; the
    /// webhook serializes the patch itself instead.
    pub fn operations(&self) -> Vec<PatchOperation> {
        self.ops
            .iter()
            .map(|op| {
                PatchOperation::Add(AddOperation {
                    path: PointerBuf::parse(op.path.as_str())
                        .expect("patch paths are built from escaped tokens"),
                    value: op.value.to_value(),
                })
            })
            .collect()
    }

    /// The patch as JSON, byte for byte what `json_patch` writes for
    /// [`operations`](Patch::operations), written straight into one buffer:
    /// template objects are copied as encoded at load.
    pub fn to_json(&self) -> Vec<u8> {
        let json_len = |o: &Arc<Object>| o.json().get().len() + 1;
        let size: usize = self
            .ops
            .iter()
            .map(|op| {
                op.path.len()
                    + 40
                    + match &op.value {
                        Item::Object(o) => json_len(o),
                        Item::Objects(os) => os.iter().map(json_len).sum(),
                        Item::Text(s) => s.len() + 16,
                        Item::Strings(entries) => strings_len(entries),
                        Item::Metadata {
                            annotations,
                            labels,
                        } => strings_len(annotations) + strings_len(labels) + 32,
                    }
            })
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"op\":\"add\",\"path\":");
            write_json_string(&mut out, &op.path);
            out.extend_from_slice(b",\"value\":");
            match &op.value {
                Item::Object(o) => out.extend_from_slice(o.json().get().as_bytes()),
                Item::Objects(os) => {
                    out.push(b'[');
                    for (j, o) in os.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(o.json().get().as_bytes());
                    }
                    out.push(b']');
                }
                Item::Text(s) => write_json_string(&mut out, s),
                Item::Strings(entries) => write_strings(&mut out, entries),
                Item::Metadata {
                    annotations,
                    labels,
                } => {
                    // Keys in the order a JSON object is written.
                    out.push(b'{');
                    let mut first = true;
                    for (key, entries) in [("annotations", annotations), ("labels", labels)] {
                        if entries.is_empty() {
                            continue;
                        }
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        write_json_string(&mut out, key);
                        out.push(b':');
                        write_strings(&mut out, entries);
                    }
                    out.push(b'}');
                }
            }
            out.push(b'}');
        }
        out.push(b']');
        out
    }

    fn add(&mut self, path: String, value: Item) {
        self.ops.push(Add { path, value });
    }
}

/// Everything a decision adds, gathered before the operations are built so
/// that several templates adding to the same absent array create it once.
#[derive(Default)]
pub(super) struct Plan {
    /// Init containers to insert before the user's, in order.
    pub init_front: Vec<Arc<Object>>,
    /// Init containers to append after the user's.
    pub init_back: Vec<Arc<Object>>,
    pub containers: Vec<Arc<Object>>,
    pub volumes: Vec<Arc<Object>>,
    pub app: BTreeMap<usize, AppExtra>,
    /// Annotations to set (only those whose value changes).
    pub annotations: Vec<(String, String)>,
    /// Labels to set (only those whose value changes).
    pub labels: Vec<(String, String)>,
}

/// What one app container gets.
#[derive(Default)]
pub(super) struct AppExtra {
    pub volume_mounts: Vec<Arc<Object>>,
    pub env: Vec<Arc<Object>>,
    pub env_from: Vec<Arc<Object>>,
}

impl Plan {
    /// Adds an accepted template: its containers (native sidecars get
    /// `restartPolicy: Always` and go with its init containers at
    /// `position`), and what the conflict check let through.
    /// With `preserve`, the containers with their requests set to their
    /// limits (`qos: preserve` in a Guaranteed pod).
    pub(super) fn add(
        &mut self,
        t: &Template,
        native: bool,
        additions: Additions<'_>,
        preserve: bool,
    ) {
        let r = &t.rendered;
        let (init_containers, native_containers, containers) =
            match r.preserved.as_ref().filter(|_| preserve) {
                Some(p) => (&p.init_containers, &p.native_containers, &p.containers),
                None => (&r.init_containers, &r.native_containers, &r.containers),
            };
        let mut init = init_containers.clone();
        if native {
            init.extend(native_containers.iter().cloned());
        } else {
            self.containers.extend(containers.iter().cloned());
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

/// A JSON pointer to `tokens`, each escaped (`~` as `~0`, `/` as `~1`).
fn ptr<'t>(tokens: impl IntoIterator<Item = &'t str>) -> String {
    let mut out = String::with_capacity(48);
    for t in tokens {
        out.push('/');
        let mut plain = 0;
        for (i, b) in t.bytes().enumerate() {
            let escaped = match b {
                b'~' => "~0",
                b'/' => "~1",
                _ => continue,
            };
            out.push_str(&t[plain..i]);
            out.push_str(escaped);
            plain = i + 1;
        }
        out.push_str(&t[plain..]);
    }
    out
}

/// Appends `items` to the array at `base`, creating it when `exists` is false.
fn append(patch: &mut Patch, base: &[&str], exists: bool, items: Vec<Arc<Object>>) {
    if items.is_empty() {
        return;
    }
    if exists {
        for item in items {
            let p = ptr(base.iter().copied().chain(["-"]));
            patch.add(p, Item::Object(item));
        }
    } else {
        patch.add(ptr(base.iter().copied()), Item::Objects(items));
    }
}

/// Builds the operations for `plan` against `pod`.
pub(super) fn build(pod: &PodView<'_>, plan: Plan) -> Patch {
    let mut ops = Patch::default();

    if pod.init_containers.is_some() {
        for (i, c) in plan.init_front.into_iter().enumerate() {
            let index = i.to_string();
            ops.add(
                ptr(["spec", "initContainers", index.as_str()]),
                Item::Object(c),
            );
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

    let maps = [
        ("annotations", pod.annotations.is_some(), plan.annotations),
        ("labels", pod.labels.is_some(), plan.labels),
    ];
    if pod.has_metadata {
        for (field, exists, mut entries) in maps {
            if entries.is_empty() {
                continue;
            }
            if exists {
                for (k, v) in entries {
                    ops.add(ptr(["metadata", field, k.as_str()]), Item::Text(v));
                }
            } else {
                // Sorted as a JSON object is written; the keys are distinct.
                entries.sort();
                ops.add(ptr(["metadata", field]), Item::Strings(entries));
            }
        }
    } else {
        let [(_, _, mut annotations), (_, _, mut labels)] = maps;
        if !annotations.is_empty() || !labels.is_empty() {
            annotations.sort();
            labels.sort();
            ops.add(
                ptr(["metadata"]),
                Item::Metadata {
                    annotations,
                    labels,
                },
            );
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::facts::Doc;

    /// A pod with an empty annotations map, the patch that sets
    /// `annotations` on it, and the pod with that patch applied.
    fn annotate(annotations: &[(&str, &str)]) -> (Patch, Value) {
        let pod = json!({ "metadata": { "annotations": {} }, "spec": { "containers": [] } });
        let doc = Doc::from(&pod);
        let plan = Plan {
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Plan::default()
        };
        let patch = build(&PodView::new(&doc).unwrap(), plan);
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch.operations()).unwrap();
        (patch, out)
    }

    #[test]
    fn keys_are_escaped_as_json_pointers() {
        let (patch, out) = annotate(&[("a~b/c", "v")]);
        let paths: Vec<String> = patch
            .operations()
            .iter()
            .map(|op| op.path().to_string())
            .collect();
        assert_eq!(paths, ["/metadata/annotations/a~0b~1c"]);
        assert_eq!(out["metadata"]["annotations"]["a~b/c"], "v");
    }

    #[test]
    fn the_json_is_what_json_patch_writes_for_the_operations() {
        let odd_key = "quote\"back\\slash\ttab~/é";
        let odd_value = "{\"a\":\"\u{1}\"}";
        let (patch, out) = annotate(&[("plain", "v"), (odd_key, odd_value)]);
        assert_eq!(
            patch.to_json(),
            serde_json::to_vec(&patch.operations()).unwrap()
        );
        assert_eq!(out["metadata"]["annotations"][odd_key], odd_value);
        assert_eq!(out["metadata"]["annotations"]["plain"], "v");
    }

    /// The patch for `plan` on `pod`, checked against `json_patch`'s
    /// writing, and the pod with it applied.
    fn apply(pod: Value, plan: Plan) -> Value {
        let doc = Doc::from(&pod);
        let patch = build(&PodView::new(&doc).unwrap(), plan);
        assert_eq!(
            patch.to_json(),
            serde_json::to_vec(&patch.operations()).unwrap()
        );
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch.operations()).unwrap();
        out
    }

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_and_annotations_go_where_the_pod_has_them_or_not() {
        let plan = || Plan {
            annotations: pairs(&[("b", "2"), ("a", "1")]),
            labels: pairs(&[("tandem.dev/injected", "true")]),
            ..Plan::default()
        };
        let spec = json!({ "containers": [] });
        let out = apply(json!({ "spec": spec }), plan());
        assert_eq!(
            out["metadata"],
            json!({ "annotations": { "a": "1", "b": "2" }, "labels": { "tandem.dev/injected": "true" } })
        );
        let out = apply(json!({ "metadata": { "name": "p" }, "spec": spec }), plan());
        assert_eq!(
            out["metadata"]["labels"],
            json!({ "tandem.dev/injected": "true" })
        );
        assert_eq!(out["metadata"]["name"], "p");
        let pod = json!({ "metadata": { "labels": { "app": "x", "tandem.dev/injected": "no" } }, "spec": spec });
        let out = apply(pod, plan());
        assert_eq!(
            out["metadata"]["labels"],
            json!({ "app": "x", "tandem.dev/injected": "true" })
        );
        let only_labels = Plan {
            labels: pairs(&[("l", "v")]),
            ..Plan::default()
        };
        let out = apply(json!({ "spec": spec }), only_labels);
        assert_eq!(out["metadata"], json!({ "labels": { "l": "v" } }));
    }
}
