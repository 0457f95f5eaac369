//! The `SidecarTemplate` type: one Rust type serves the file loader and the CRD,
//! so a template means the same thing wherever it comes from.

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::parameters::Parameter;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "tandem.dev/v1alpha1";
pub const KIND: &str = "SidecarTemplate";

/// What a template adds to a pod.
///
/// The CEL rules below reject the structural mistakes at `kubectl apply`
/// without a webhook; everything else (unknown container fields, quantities,
/// mounts of missing volumes, duplicate names) needs Tandem's own validation,
/// served on `/validate` with the same messages as `tandem check`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "tandem.dev",
    version = "v1alpha1",
    kind = "SidecarTemplate",
    namespaced,
    status = "SidecarTemplateStatus",
    shortname = "stpl",
    category = "tandem",
    printcolumn = r#"{"name":"Pattern","type":"string","jsonPath":".spec.pattern"}"#,
    printcolumn = r#"{"name":"Lifecycle","type":"string","jsonPath":".spec.lifecycle"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.valid"}"#,
    printcolumn = r#"{"name":"Injected","type":"integer","jsonPath":".status.injectedPods"}"#,
    printcolumn = r#"{"name":"Up-To-Date","type":"integer","jsonPath":".status.upToDatePods"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.pattern != 'init' || !has(self.containers) || size(self.containers) == 0")
        .message("pattern init runs to completion: use initContainers only"),
    validation = Rule::new("self.pattern != 'init' || (has(self.initContainers) && size(self.initContainers) > 0)")
        .message("pattern init needs at least one initContainer"),
    validation = Rule::new("self.pattern == 'init' || (has(self.containers) && size(self.containers) > 0)")
        .message("patterns sidecar, ambassador and adapter need at least one container"),
    validation = Rule::new("!has(self.containers) || self.containers.all(c, !has(c.restartPolicy))")
        .message("containers[].restartPolicy is set by Tandem: choose spec.lifecycle instead"),
    validation = Rule::new("!has(self.initContainers) || self.initContainers.all(c, !has(c.restartPolicy))")
        .message("initContainers[].restartPolicy is set by Tandem: choose spec.lifecycle instead"),
    validation = Rule::new("!has(self.parameters) || self.parameters.all(p, p.type == 'string' || (!has(p.pattern) && !has(p.values)))")
        .message("parameters[]: pattern and values are for string parameters"),
    validation = Rule::new("!has(self.parameters) || self.parameters.all(p, p.type in ['quantity', 'integer'] || (!has(p.min) && !has(p.max)))")
        .message("parameters[]: min and max are for quantity and integer parameters"),
    validation = Rule::new("!has(self.parameters) || self.parameters.all(p, size(p.targets) > 0)")
        .message("parameters[]: each needs at least one target field")
)]
pub struct SidecarTemplateSpec {
    /// The role of the helper; it sets defaults and shows in output.
    pub pattern: Pattern,
    /// Containers that run beside the app for the pod's lifetime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// Containers that run to completion before the app, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// Volumes to add to the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// What to add to the pod's own app containers.
    #[serde(default, skip_serializing_if = "AppSpec::is_empty")]
    pub app: AppSpec,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub position: Position,
    /// Pods whose labels match get the template automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Namespaces whose labels match get the template automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// What injection may do to a Guaranteed pod's QoS class.
    #[serde(default, skip_serializing_if = "QosPolicy::is_warn")]
    pub qos: QosPolicy,
    /// Fields a pod (annotation `<template>.tandem.dev/<name>`) or its
    /// namespace (the same annotation) may set, typed and bounded.
    /// At most 32, unique by name (the CEL rules' cost stays bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub parameters: Vec<Parameter>,
}

/// Additions to the pod's own containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// Names or globs (`*`, `?`) of the app containers to change; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
}

impl AppSpec {
    pub fn is_empty(&self) -> bool {
        self.volume_mounts.is_empty() && self.env.is_empty() && self.env_from.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Pattern {
    #[default]
    Sidecar,
    Ambassador,
    Adapter,
    Init,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Lifecycle {
    /// `initContainers` with `restartPolicy: Always` (Kubernetes 1.29+).
    Native,
    /// Appended to `containers`.
    Classic,
    /// Native when the cluster supports it.
    #[default]
    Auto,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Position {
    /// Before the user's init containers, so they can already use the helper.
    #[default]
    BeforeUserInit,
    AfterUserInit,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide and report, never mutate.
    DryRun,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnConflict {
    /// Skip this template and admit the pod with a warning.
    #[default]
    Skip,
    /// Deny the pod, naming both sides of the collision.
    Fail,
}

/// What injection may do to a pod whose QoS class is Guaranteed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum QosPolicy {
    /// Inject as written, and warn when the pod stops being Guaranteed.
    #[default]
    Warn,
    /// In a Guaranteed pod, set each injected container's requests to its
    /// limits, so the pod stays Guaranteed (every container needs CPU and
    /// memory limits).
    Preserve,
}

impl QosPolicy {
    fn is_warn(&self) -> bool {
        *self == QosPolicy::Warn
    }
}

/// Written by `tandem serve` on SidecarTemplate objects it reads from the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarTemplateStatus {
    /// Whether Tandem accepted the template.
    pub valid: bool,
    /// Why not, when it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The content hash recorded in injected pods' `tandem.dev/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Running pods that carry this template (counted by `tandem serve` in
    /// cluster mode); absent while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_pods: Option<i64>,
    /// Of those, the pods that carry it as it is now (the same hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to_date_pods: Option<i64>,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Sidecar => "sidecar",
            Pattern::Ambassador => "ambassador",
            Pattern::Adapter => "adapter",
            Pattern::Init => "init",
        }
    }
}
