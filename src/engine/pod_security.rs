//! The Pod Security Standards (baseline and restricted), as the built-in Pod
//! Security admission checks them, on the pod as the API server will see it
//! after defaulting (which sets none of these fields): a container's unset
//! field inherits the pod's where the standard says so, and is otherwise
//! judged unset.
//!
//! Two questions are asked. Does the user's pod already break the level? Then
//! the API server decides, as it would without Tandem. If not, do the
//! containers and volumes a template adds break it? Then that template is
//! left out, rather than the whole pod rejected over a container its author
//! never wrote.

use std::fmt;

use crate::facts::{Doc, Level, Standard, Version};
use crate::template::Template;

/// One field the level forbids as set (or unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where, e.g. `agent: securityContext.allowPrivilegeEscalation` (a
    /// container's name first), `volume cache: hostPath`, `spec.hostNetwork`.
    pub field: String,
    /// What the standard requires there.
    pub rule: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

/// Capabilities baseline lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// SELinux types baseline allows (`container_engine_t` since 1.31).
fn selinux_type_allowed(t: &str, version: Version) -> bool {
    matches!(t, "container_t" | "container_init_t" | "container_kvm_t")
        || (t == "container_engine_t" && version.at_least(31))
}

/// Sysctls baseline allows, each with the release that added it.
const SAFE_SYSCTLS: [(&str, u32); 10] = [
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
];

/// Volume sources restricted allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The pod-level settings containers inherit.
#[derive(Clone, Copy, Default)]
pub(super) struct Inherited<'a> {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i64>,
    seccomp: Option<&'a str>,
}

impl<'a> Inherited<'a> {
    pub(super) fn of(spec: &'a Doc<'a>) -> Inherited<'a> {
        let sc = spec.get("securityContext");
        let get = |k: &str| sc.and_then(|s| s.get(k));
        Inherited {
            run_as_non_root: get("runAsNonRoot").and_then(Doc::as_bool),
            run_as_user: get("runAsUser").and_then(Doc::as_i64),
            seccomp: get("seccompProfile")
                .and_then(|p| p.get("type"))
                .and_then(Doc::as_str),
        }
    }
}

struct Checker<'v> {
    standard: Standard,
    out: &'v mut Vec<Violation>,
}

impl Checker<'_> {
    fn restricted(&self) -> bool {
        self.standard.level == Level::Restricted
    }

    fn flag(&mut self, field: String, rule: &'static str) {
        self.out.push(Violation { field, rule });
    }

    /// Checks shared by a pod's and a container's security context.
    fn common(&mut self, sc: Option<&Doc<'_>>, at: &str) {
        let Some(sc) = sc else { return };
        if sc
            .pointer("/windowsOptions/hostProcess")
            .and_then(Doc::as_bool)
            == Some(true)
        {
            self.flag(
                format!("{at}securityContext.windowsOptions.hostProcess"),
                "must not be true",
            );
        }
        if let Some(se) = sc.get("seLinuxOptions") {
            if let Some(t) = se.get("type").and_then(Doc::as_str)
                && !t.is_empty()
                && !selinux_type_allowed(t, self.standard.version)
            {
                self.flag(
                    format!("{at}securityContext.seLinuxOptions.type"),
                    "must be container_t, container_init_t, container_kvm_t or unset",
                );
            }
            for k in ["user", "role"] {
                if se
                    .get(k)
                    .and_then(Doc::as_str)
                    .is_some_and(|v| !v.is_empty())
                {
                    self.flag(
                        format!("{at}securityContext.seLinuxOptions.{k}"),
                        "must be unset",
                    );
                }
            }
        }
        if sc.pointer("/seccompProfile/type").and_then(Doc::as_str) == Some("Unconfined") {
            self.flag(
                format!("{at}securityContext.seccompProfile.type"),
                "must not be Unconfined",
            );
        }
        if sc.pointer("/appArmorProfile/type").and_then(Doc::as_str) == Some("Unconfined") {
            self.flag(
                format!("{at}securityContext.appArmorProfile.type"),
                "must not be Unconfined",
            );
        }
    }

    /// A container (names are unique across containers and init
    /// containers, so the name says which).
    fn container(&mut self, c: &Doc<'_>, pod: Inherited<'_>) {
        let name = c.get("name").and_then(Doc::as_str).unwrap_or("?");
        let at = format!("{name}: ");
        let sc = c.get("securityContext").filter(|s| s.is_object());
        let get = |k: &str| sc.and_then(|s| s.get(k));
        self.common(sc, &at);
        if get("privileged").and_then(Doc::as_bool) == Some(true) {
            self.flag(
                format!("{at}securityContext.privileged"),
                "must not be true",
            );
        }
        if get("procMount")
            .and_then(Doc::as_str)
            .is_some_and(|p| p != "Default")
        {
            self.flag(
                format!("{at}securityContext.procMount"),
                "must be Default or unset",
            );
        }
        let caps = get("capabilities");
        let added: Vec<&str> = caps
            .and_then(|c| c.get("add"))
            .and_then(Doc::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(Doc::as_str)
            .collect();
        let allowed = |cap: &str| {
            if self.restricted() && self.standard.version.at_least(22) {
                cap == "NET_BIND_SERVICE"
            } else {
                BASELINE_CAPABILITIES.contains(&cap)
            }
        };
        if added.iter().any(|cap| !allowed(cap)) {
            let rule = if self.restricted() {
                "may add only NET_BIND_SERVICE"
            } else {
                "may add only the baseline set (AUDIT_WRITE, CHOWN, KILL, NET_BIND_SERVICE, ...)"
            };
            self.flag(format!("{at}securityContext.capabilities.add"), rule);
        }
        for p in c.get("ports").and_then(Doc::as_array).unwrap_or_default() {
            if p.get("hostPort")
                .and_then(Doc::as_i64)
                .is_some_and(|h| h != 0)
            {
                self.flag(format!("{at}ports.hostPort"), "must be unset or 0");
                break;
            }
        }
        if !self.restricted() {
            return;
        }
        if get("allowPrivilegeEscalation").and_then(Doc::as_bool) != Some(false) {
            self.flag(
                format!("{at}securityContext.allowPrivilegeEscalation"),
                "must be false",
            );
        }
        let non_root = get("runAsNonRoot")
            .and_then(Doc::as_bool)
            .or(pod.run_as_non_root);
        if non_root != Some(true) {
            self.flag(
                format!("{at}securityContext.runAsNonRoot"),
                "must be true (here or on the pod)",
            );
        }
        let user = get("runAsUser").and_then(Doc::as_i64).or(pod.run_as_user);
        if self.standard.version.at_least(23) && user == Some(0) {
            self.flag(format!("{at}securityContext.runAsUser"), "must not be 0");
        }
        let seccomp = get("seccompProfile")
            .and_then(|p| p.get("type"))
            .and_then(Doc::as_str)
            .or(pod.seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            self.flag(
                format!("{at}securityContext.seccompProfile.type"),
                "must be RuntimeDefault or Localhost (here or on the pod)",
            );
        }
        if self.standard.version.at_least(22) {
            let dropped = caps
                .and_then(|c| c.get("drop"))
                .and_then(Doc::as_array)
                .unwrap_or_default()
                .iter()
                .any(|d| d.as_str() == Some("ALL"));
            if !dropped {
                self.flag(
                    format!("{at}securityContext.capabilities.drop"),
                    "must include ALL",
                );
            }
        }
    }

    fn volume(&mut self, v: &Doc<'_>) {
        let name = v.get("name").and_then(Doc::as_str).unwrap_or("?");
        let at = format!("volume {name}: ");
        if v.get("hostPath").is_some_and(|h| !h.is_null()) {
            self.flag(format!("{at}hostPath"), "must be unset");
            return;
        }
        if !self.restricted() {
            return;
        }
        let source = v
            .as_object()
            .unwrap_or_default()
            .iter()
            .find(|(k, val)| k != "name" && !val.is_null())
            .map(|(k, _)| k.as_ref());
        if let Some(source) = source
            && !RESTRICTED_VOLUMES.contains(&source)
        {
            self.flag(
                format!("{at}{source}"),
                "is not a volume type restricted allows",
            );
        }
    }

    /// The pod's own fields: host namespaces, its security context, sysctls
    /// and AppArmor annotations.
    fn pod(&mut self, pod: &Doc<'_>) {
        let spec = pod.get("spec");
        for k in ["hostNetwork", "hostPID", "hostIPC"] {
            if spec.and_then(|s| s.get(k)).and_then(Doc::as_bool) == Some(true) {
                self.flag(format!("spec.{k}"), "must not be true");
            }
        }
        let sc = spec
            .and_then(|s| s.get("securityContext"))
            .filter(|s| s.is_object());
        self.common(sc, "spec.");
        for s in sc
            .and_then(|s| s.get("sysctls"))
            .and_then(Doc::as_array)
            .unwrap_or_default()
        {
            let name = s.get("name").and_then(Doc::as_str).unwrap_or_default();
            let safe = SAFE_SYSCTLS
                .iter()
                .any(|(n, since)| *n == name && self.standard.version.at_least(*since));
            if !safe {
                self.flag(
                    format!("spec.securityContext.sysctls[{name:?}]"),
                    "is not a safe sysctl",
                );
            }
        }
        if self.restricted()
            && self.standard.version.at_least(23)
            && sc.and_then(|s| s.get("runAsUser")).and_then(Doc::as_i64) == Some(0)
        {
            self.flag("spec.securityContext.runAsUser".into(), "must not be 0");
        }
        for (k, v) in pod
            .pointer("/metadata/annotations")
            .and_then(Doc::as_object)
            .unwrap_or_default()
        {
            if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && let Some(v) = v.as_str()
                && v != "runtime/default"
                && !v.starts_with("localhost/")
            {
                self.flag(
                    format!("metadata.annotations[{k:?}]"),
                    "must be runtime/default or localhost/*",
                );
            }
        }
    }
}

/// What of `pod` (a Pod, or a pod template's `{metadata, spec}`) breaks
/// `standard`. Privileged allows everything.
pub fn pod_violations(pod: &Doc<'_>, standard: Standard) -> Vec<Violation> {
    let mut out = Vec::new();
    if standard.level == Level::Privileged {
        return out;
    }
    let empty = Doc::Null;
    let spec = pod.get("spec").unwrap_or(&empty);
    let inherited = Inherited::of(spec);
    let mut check = Checker {
        standard,
        out: &mut out,
    };
    check.pod(pod);
    for list in ["initContainers", "containers"] {
        for c in spec.get(list).and_then(Doc::as_array).unwrap_or_default() {
            check.container(c, inherited);
        }
    }
    for v in spec
        .get("volumes")
        .and_then(Doc::as_array)
        .unwrap_or_default()
    {
        check.volume(v);
    }
    out
}

/// What of everything `t` adds (its containers and volumes) breaks
/// `standard` in a pod that sets nothing for them to inherit: what `tandem
/// check --pod-security` reports, and where a compiled policy steps aside.
pub fn template_violations(t: &Template, standard: Standard) -> Vec<Violation> {
    let r = &t.rendered;
    addition_violations(
        Inherited::default(),
        r.init_containers
            .iter()
            .chain(&r.containers)
            .map(|c| c.doc()),
        r.volumes.iter().map(|v| v.doc()),
        standard,
    )
}

/// What of a template's additions (containers and volumes) breaks
/// `standard`, with what the pod lets them inherit.
pub(super) fn addition_violations<'a>(
    inherited: Inherited<'_>,
    containers: impl IntoIterator<Item = &'a Doc<'a>>,
    volumes: impl IntoIterator<Item = &'a Doc<'a>>,
    standard: Standard,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if standard.level == Level::Privileged {
        return out;
    }
    let mut check = Checker {
        standard,
        out: &mut out,
    };
    for c in containers {
        check.container(c, inherited);
    }
    for v in volumes {
        check.volume(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(level: Level) -> Standard {
        Standard {
            level,
            version: Version::Latest,
        }
    }

    /// A pod restricted accepts, with one container `c`.
    fn compliant() -> serde_json::Value {
        json!({
            "metadata": {"name": "p"},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "image": "i", "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            }
        })
    }

    fn broken_by(change: impl Fn(&mut serde_json::Value)) -> (Vec<Violation>, Vec<Violation>) {
        let mut pod = compliant();
        change(&mut pod);
        let doc = Doc::from(&pod);
        (
            pod_violations(&doc, at(Level::Baseline)),
            pod_violations(&doc, at(Level::Restricted)),
        )
    }

    #[test]
    fn a_compliant_pod_has_no_violations_and_privileged_allows_anything() {
        let pod = compliant();
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert_eq!(pod_violations(&Doc::from(&pod), at(level)), vec![]);
        }
        let mut wild = pod.clone();
        wild["spec"]["hostNetwork"] = json!(true);
        wild["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true);
        assert!(pod_violations(&Doc::from(&wild), at(Level::Privileged)).is_empty());
    }

    #[test]
    fn every_baseline_rule_is_broken_at_baseline_and_restricted() {
        type Change = fn(&mut serde_json::Value);
        let cases: [(&str, Change); 13] = [
            ("spec.hostNetwork", |p| {
                p["spec"]["hostNetwork"] = json!(true)
            }),
            ("spec.hostPID", |p| p["spec"]["hostPID"] = json!(true)),
            ("spec.hostIPC", |p| p["spec"]["hostIPC"] = json!(true)),
            ("securityContext.privileged", |p| {
                p["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true)
            }),
            ("capabilities.add", |p| {
                p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
                    json!(["SYS_ADMIN"])
            }),
            ("ports.hostPort", |p| {
                p["spec"]["containers"][0]["ports"] =
                    json!([{"containerPort": 80, "hostPort": 8080}])
            }),
            ("hostPath", |p| {
                p["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/var/run"}}])
            }),
            ("seccompProfile.type", |p| {
                p["spec"]["containers"][0]["securityContext"]["seccompProfile"] =
                    json!({"type": "Unconfined"})
            }),
            ("appArmorProfile.type", |p| {
                p["spec"]["containers"][0]["securityContext"]["appArmorProfile"] =
                    json!({"type": "Unconfined"})
            }),
            ("seLinuxOptions.type", |p| {
                p["spec"]["containers"][0]["securityContext"]["seLinuxOptions"] =
                    json!({"type": "spc_t"})
            }),
            ("procMount", |p| {
                p["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked")
            }),
            ("windowsOptions.hostProcess", |p| {
                p["spec"]["containers"][0]["securityContext"]["windowsOptions"] =
                    json!({"hostProcess": true})
            }),
            ("sysctls", |p| {
                p["spec"]["securityContext"]["sysctls"] =
                    json!([{"name": "kernel.msgmax", "value": "1"}])
            }),
        ];
        for (field, change) in cases {
            let (baseline, restricted) = broken_by(change);
            assert!(
                baseline.iter().any(|v| v.field.contains(field)),
                "{field} at baseline: {baseline:?}"
            );
            assert!(
                restricted.iter().any(|v| v.field.contains(field)),
                "{field} at restricted: {restricted:?}"
            );
        }
    }

    #[test]
    fn every_restricted_rule_is_broken_at_restricted_only() {
        type Change = fn(&mut serde_json::Value);
        let cases: [(&str, Change); 7] = [
            ("allowPrivilegeEscalation", |p| {
                p["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allowPrivilegeEscalation");
            }),
            ("runAsNonRoot", |p| {
                p["spec"]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("runAsNonRoot");
            }),
            ("runAsUser", |p| {
                p["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0)
            }),
            ("seccompProfile.type", |p| {
                p["spec"]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("seccompProfile");
            }),
            ("capabilities.drop", |p| {
                p["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] =
                    json!(["NET_RAW"])
            }),
            ("capabilities.add", |p| {
                p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
                    json!(["CHOWN"])
            }),
            ("hostPath", |p| {
                // Not restricted's volume types (but allowed by baseline).
                p["spec"]["volumes"] = json!([{"name": "g", "gitRepo": {"repository": "r"}}])
            }),
        ];
        for (field, change) in cases {
            let (baseline, restricted) = broken_by(change);
            assert!(baseline.is_empty(), "{field} breaks baseline: {baseline:?}");
            let field = if field == "hostPath" {
                "gitRepo"
            } else {
                field
            };
            assert!(
                restricted.iter().any(|v| v.field.contains(field)),
                "{field} at restricted: {restricted:?}"
            );
        }
    }

    #[test]
    fn containers_inherit_the_pods_settings_and_versions_matter() {
        // The container sets nothing the pod sets for it.
        let pod = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "Localhost"}}});
        let pod = Doc::from(&pod);
        let c = json!({"name": "agent", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}});
        let c = Doc::from(&c);
        let found = addition_violations(Inherited::of(&pod), [&c], [], at(Level::Restricted));
        assert_eq!(found, vec![]);
        // Without the pod's settings the same container breaks restricted twice.
        let found = addition_violations(Inherited::default(), [&c], [], at(Level::Restricted));
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "agent: securityContext.runAsNonRoot",
                "agent: securityContext.seccompProfile.type"
            ]
        );
        // runAsUser 0 counts from v1.23; a sysctl from its release on.
        let root = json!({"name": "r", "securityContext": {"runAsUser": 0, "runAsNonRoot": true,
            "allowPrivilegeEscalation": false, "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]}}});
        let root = Doc::from(&root);
        let v = |minor| Standard {
            level: Level::Restricted,
            version: Version::Minor(minor),
        };
        assert!(addition_violations(Inherited::default(), [&root], [], v(22)).is_empty());
        assert_eq!(
            addition_violations(Inherited::default(), [&root], [], v(23)).len(),
            1
        );
        let sysctl = json!({"spec": {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]}}});
        let sysctl = Doc::from(&sysctl);
        let b = |minor| Standard {
            level: Level::Baseline,
            version: Version::Minor(minor),
        };
        assert_eq!(pod_violations(&sysctl, b(28)).len(), 1);
        assert!(pod_violations(&sysctl, b(29)).is_empty());
    }
}
