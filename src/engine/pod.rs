//! A read-only view of the raw pod JSON. The shapes the patch depends on are
//! checked once here, so the rest of the engine can rely on them and a
//! malformed pod gets a clear error instead of a patch that cannot apply.

use super::EngineError;
use crate::facts::{Doc, Fields, display_name};

/// Every field of a pod the engine reads. The webhook parses only these, so
/// a decision here must read nothing else: the admission tests decide every
/// fixture pod both ways and compare.
pub const POD_READS: Fields = Fields::Only(&[
    (
        "metadata",
        Fields::Only(&[
            ("name", Fields::All),
            ("generateName", Fields::All),
            ("labels", Fields::All),
            ("annotations", Fields::All),
        ]),
    ),
    (
        "spec",
        Fields::Only(&[
            ("containers", CONTAINER_READS),
            ("initContainers", CONTAINER_READS),
            ("volumes", Fields::All),
            ("restartPolicy", Fields::All),
            ("resources", Fields::All),
            ("overhead", Fields::All),
            // Pod Security: what the pod's own fields allow.
            ("securityContext", Fields::All),
            ("hostNetwork", Fields::All),
            ("hostPID", Fields::All),
            ("hostIPC", Fields::All),
        ]),
    ),
]);

/// What the engine reads of a container: names and restart policy for
/// placement, the lists it appends to or checks for collisions, and requests.
const CONTAINER_READS: Fields = Fields::Only(&[
    ("name", Fields::All),
    ("restartPolicy", Fields::All),
    ("ports", Fields::All),
    ("env", Fields::All),
    ("envFrom", Fields::All),
    ("volumeMounts", Fields::All),
    ("resources", Fields::All),
    ("securityContext", Fields::All),
]);

pub(super) struct PodView<'a> {
    /// `spec`, for pod-level `resources` and `overhead`.
    pub spec: &'a Doc<'a>,
    /// `metadata` is an object (not absent or null).
    pub has_metadata: bool,
    /// `metadata.annotations` and `metadata.labels`, objects of strings.
    pub annotations: Option<&'a Doc<'a>>,
    pub labels: Option<&'a Doc<'a>>,
    /// `spec.containers`, empty when absent.
    pub containers: &'a [Doc<'a>],
    /// `spec.containers` is an array (not absent or null).
    pub has_containers: bool,
    /// `None` when the pod has no `initContainers` field at all.
    pub init_containers: Option<&'a [Doc<'a>]>,
    pub volumes: Option<&'a [Doc<'a>]>,
    /// `restartPolicy`, `Always` when unset as the API server defaults it.
    pub restart_policy: &'a str,
    /// `name`, or `generateName…` for pods that controllers create.
    pub display_name: String,
}

fn object<'a>(v: Option<&'a Doc<'a>>, field: &str) -> Result<Option<&'a Doc<'a>>, EngineError> {
    match v {
        None | Some(Doc::Null) => Ok(None),
        Some(o @ Doc::Object(_)) => Ok(Some(o)),
        Some(_) => Err(EngineError::MalformedPod(format!(
            "{field} is not an object"
        ))),
    }
}

/// `field` names the value only when it is wrong: this runs for every
/// container of every pod, so the happy path allocates nothing.
fn array<'a, F: std::fmt::Display>(
    v: Option<&'a Doc<'a>>,
    field: impl FnOnce() -> F,
) -> Result<Option<&'a [Doc<'a>]>, EngineError> {
    match v {
        None | Some(Doc::Null) => Ok(None),
        Some(Doc::Array(a)) => Ok(Some(a)),
        Some(_) => Err(EngineError::MalformedPod(format!(
            "{} is not an array",
            field()
        ))),
    }
}

fn string_map(m: Option<&Doc<'_>>, field: &str) -> Result<(), EngineError> {
    let entries = m.and_then(Doc::as_object).unwrap_or_default();
    match entries.iter().find(|(_, v)| !v.is_string()) {
        Some((k, _)) => Err(EngineError::MalformedPod(format!(
            "{field}[{k:?}] is not a string"
        ))),
        None => Ok(()),
    }
}

fn named_objects(items: &[Doc<'_>], field: &str) -> Result<(), EngineError> {
    for (i, item) in items.iter().enumerate() {
        if !item.get("name").is_some_and(Doc::is_string) {
            return Err(EngineError::MalformedPod(format!(
                "{field}[{i}].name is not a string"
            )));
        }
    }
    Ok(())
}

impl<'a> PodView<'a> {
    /// Every container of the pod, init containers first.
    pub(super) fn all_containers(&self) -> impl Iterator<Item = &'a Doc<'a>> {
        self.init_containers
            .unwrap_or_default()
            .iter()
            .chain(self.containers)
    }

    pub(super) fn new(raw: &'a Doc<'a>) -> Result<PodView<'a>, EngineError> {
        if !raw.is_object() {
            return Err(EngineError::MalformedPod("the pod is not an object".into()));
        }
        let metadata = object(raw.get("metadata"), "metadata")?;
        let annotations = object(
            metadata.and_then(|m| m.get("annotations")),
            "metadata.annotations",
        )?;
        let labels = object(metadata.and_then(|m| m.get("labels")), "metadata.labels")?;
        string_map(annotations, "metadata.annotations")?;
        string_map(labels, "metadata.labels")?;
        let spec = object(raw.get("spec"), "spec")?
            .ok_or_else(|| EngineError::MalformedPod("spec is missing".into()))?;
        let containers = array(spec.get("containers"), || "spec.containers")?;
        let init_containers = array(spec.get("initContainers"), || "spec.initContainers")?;
        let volumes = array(spec.get("volumes"), || "spec.volumes")?;
        named_objects(containers.unwrap_or_default(), "spec.containers")?;
        named_objects(init_containers.unwrap_or_default(), "spec.initContainers")?;
        named_objects(volumes.unwrap_or_default(), "spec.volumes")?;
        for (list, items) in [
            ("spec.containers", containers.unwrap_or_default()),
            ("spec.initContainers", init_containers.unwrap_or_default()),
        ] {
            for (i, c) in items.iter().enumerate() {
                for field in ["env", "envFrom", "volumeMounts", "ports"] {
                    array(c.get(field), || format!("{list}[{i}].{field}"))?;
                }
            }
        }
        let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Doc::as_str);
        Ok(PodView {
            spec,
            has_metadata: metadata.is_some(),
            annotations,
            labels,
            containers: containers.unwrap_or_default(),
            has_containers: containers.is_some(),
            init_containers,
            volumes,
            restart_policy: spec
                .get("restartPolicy")
                .and_then(Doc::as_str)
                .unwrap_or("Always"),
            display_name: display_name(text("name"), text("generateName"))
                .unwrap_or_else(|| "(unnamed pod)".to_string()),
        })
    }

    pub(super) fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations?.get(key)?.as_str()
    }

    pub(super) fn label(&self, key: &str) -> Option<&'a str> {
        self.labels?.get(key)?.as_str()
    }

    /// Whether app container `i` has `field` (`env`, `envFrom`,
    /// `volumeMounts`) as a list: appended to, or created whole. `new` checked
    /// it is a list when present.
    pub(super) fn container_has_list(&self, i: usize, field: &str) -> bool {
        self.containers
            .get(i)
            .and_then(|c| c.get(field))
            .is_some_and(Doc::is_array)
    }
}

/// The `name` of a container or volume object (checked to be a string by `PodView::new`).
pub(super) fn name_of<'a>(v: &'a Doc<'_>) -> &'a str {
    v.get("name").and_then(Doc::as_str).unwrap_or_default()
}

/// Whether an init container is a native sidecar.
pub(super) fn is_native_sidecar(c: &Doc<'_>) -> bool {
    c.get("restartPolicy").and_then(Doc::as_str) == Some("Always")
}
