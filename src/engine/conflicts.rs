//! Conflicts are found before any patch is built: container names across
//! containers and initContainers, volume names, ports in the shared network
//! namespace, mountPaths inside each container and env names.

use std::collections::HashMap;

use serde_json::Value;

use super::pod::{PodView, is_native_sidecar, name_of};
use crate::template::Template;

/// One collision, naming both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict(pub String);

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type PortKey = (i64, String);

/// When a container runs, which decides whose ports it can meet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Run-to-completion init containers run one at a time.
    Init,
    /// Native sidecars run from their start to the pod's end.
    Sidecar,
    App,
}

fn overlap(a: Phase, b: Phase) -> bool {
    a == Phase::Sidecar || b == Phase::Sidecar || (a == Phase::App && b == Phase::App)
}

/// What the pod holds so far: the input pod plus every template accepted
/// earlier in the same decision.
pub struct PodIndex {
    names: HashMap<String, String>,
    volumes: HashMap<String, (Value, String)>,
    ports: HashMap<PortKey, Vec<(Phase, String)>>,
    host_ports: HashMap<PortKey, String>,
    pub apps: Vec<AppState>,
}

/// An app container as the engine may change it.
pub struct AppState {
    pub index: usize,
    pub name: String,
    mounts: HashMap<String, Value>,
    env: HashMap<String, Value>,
    env_from: Vec<Value>,
}

/// What one template adds to the pod beyond its own containers.
#[derive(Default)]
pub struct Additions {
    pub volumes: Vec<Value>,
    /// Per app container index: mounts, env, envFrom to append.
    pub app: Vec<(usize, AppAdditions)>,
}

#[derive(Default)]
pub struct AppAdditions {
    pub volume_mounts: Vec<Value>,
    pub env: Vec<Value>,
    pub env_from: Vec<Value>,
}

fn ports_of(c: &Value) -> impl Iterator<Item = (Option<i64>, Option<i64>, String)> + '_ {
    c.get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            (
                p.get("containerPort").and_then(Value::as_i64),
                p.get("hostPort")
                    .and_then(Value::as_i64)
                    .filter(|&h| h != 0),
                proto.to_string(),
            )
        })
}

fn list<'a>(c: &'a Value, field: &str) -> &'a [Value] {
    c.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn mount_path(m: &Value) -> String {
    let p = m
        .get("mountPath")
        .and_then(Value::as_str)
        .unwrap_or_default();
    p.trim_end_matches('/').to_string()
}

impl PodIndex {
    pub fn new(pod: &PodView<'_>) -> PodIndex {
        let mut index = PodIndex {
            names: HashMap::new(),
            volumes: HashMap::new(),
            ports: HashMap::new(),
            host_ports: HashMap::new(),
            apps: Vec::new(),
        };
        for v in pod.volumes.unwrap_or_default() {
            let owner = format!("the pod's volume {:?}", name_of(v));
            index
                .volumes
                .insert(name_of(v).to_string(), (v.clone(), owner));
        }
        for c in pod.init_containers.unwrap_or_default() {
            let owner = format!("init container {:?}", name_of(c));
            let phase = if is_native_sidecar(c) {
                Phase::Sidecar
            } else {
                Phase::Init
            };
            index.add_container(c, &owner, phase);
        }
        for (i, c) in pod.containers.iter().enumerate() {
            let owner = format!("container {:?}", name_of(c));
            index.add_container(c, &owner, Phase::App);
            index.apps.push(AppState {
                index: i,
                name: name_of(c).to_string(),
                mounts: list(c, "volumeMounts")
                    .iter()
                    .map(|m| (mount_path(m), m.clone()))
                    .collect(),
                env: list(c, "env")
                    .iter()
                    .map(|e| (name_of(e).to_string(), e.clone()))
                    .collect(),
                env_from: list(c, "envFrom").to_vec(),
            });
        }
        index
    }

    fn add_container(&mut self, c: &Value, owner: &str, phase: Phase) {
        self.names.insert(name_of(c).to_string(), owner.to_string());
        for (port, host, proto) in ports_of(c) {
            if let Some(p) = port {
                let owners = self.ports.entry((p, proto.clone())).or_default();
                owners.push((phase, owner.to_string()));
            }
            if let Some(h) = host {
                self.host_ports.insert((h, proto), owner.to_string());
            }
        }
    }

    /// Checks `t` against the pod as it stands, with its long-running
    /// containers placed as native sidecars or not, changing the app containers
    /// at `targets`. Nothing is recorded until `commit`.
    pub fn check(
        &self,
        t: &Template,
        native: bool,
        targets: &[usize],
    ) -> Result<Additions, Vec<Conflict>> {
        let mut conflicts = Vec::new();
        let mut add = Additions::default();
        let tname = &t.name;
        for name in t.container_names() {
            if let Some(owner) = self.names.get(name) {
                conflicts.push(Conflict(format!(
                    "container {name:?} of template {tname} has the name of {owner}"
                )));
            }
        }
        for v in &t.rendered.volumes {
            let name = name_of(v);
            match self.volumes.get(name) {
                // The same definition is a volume shared on purpose (two
                // templates both using `app-logs`): reuse it.
                Some((existing, _)) if existing == v => {}
                Some((_, owner)) => conflicts.push(Conflict(format!(
                    "volume {name:?} of template {tname} differs from {owner}"
                ))),
                None => add.volumes.push(v.clone()),
            }
        }
        let long_running = if native { Phase::Sidecar } else { Phase::App };
        let groups = [
            (&t.rendered.init_containers, Phase::Init),
            (&t.rendered.containers, long_running),
        ];
        for (containers, phase) in groups {
            for c in containers.iter() {
                let ours = format!("template {tname} container {:?}", name_of(c));
                for (port, host, proto) in ports_of(c) {
                    if let Some(p) = port {
                        let owners = self.ports.get(&(p, proto.clone()));
                        let clash = owners
                            .into_iter()
                            .flatten()
                            .find(|(their_phase, _)| overlap(phase, *their_phase));
                        if let Some((_, theirs)) = clash {
                            conflicts.push(Conflict(format!(
                                "port {p}/{proto} of {ours} is already used by {theirs}"
                            )));
                        }
                    }
                    if let Some(h) = host
                        && let Some(theirs) = self.host_ports.get(&(h, proto.clone()))
                    {
                        conflicts.push(Conflict(format!(
                            "hostPort {h}/{proto} of {ours} is already used by {theirs}"
                        )));
                    }
                }
            }
        }
        for &i in targets {
            let app = &self.apps[i];
            let mut extra = AppAdditions::default();
            for m in &t.rendered.app_volume_mounts {
                let path = mount_path(m);
                match app.mounts.get(&path) {
                    Some(existing) if existing == m => {}
                    Some(existing) => conflicts.push(Conflict(format!(
                        "mountPath {path} of template {tname} is taken by volume {:?} in container {:?}",
                        name_of(existing),
                        app.name
                    ))),
                    None => extra.volume_mounts.push(m.clone()),
                }
            }
            for e in &t.rendered.app_env {
                let name = name_of(e);
                match app.env.get(name) {
                    Some(existing) if existing == e => {}
                    Some(_) => conflicts.push(Conflict(format!(
                        "env {name} of template {tname} is already set differently in container {:?}",
                        app.name
                    ))),
                    None => extra.env.push(e.clone()),
                }
            }
            for e in &t.rendered.app_env_from {
                if !app.env_from.contains(e) {
                    extra.env_from.push(e.clone());
                }
            }
            if !(extra.volume_mounts.is_empty()
                && extra.env.is_empty()
                && extra.env_from.is_empty())
            {
                add.app.push((app.index, extra));
            }
        }
        if conflicts.is_empty() {
            Ok(add)
        } else {
            Err(conflicts)
        }
    }

    /// Records an accepted template so later templates are checked against it.
    pub fn commit(&mut self, t: &Template, native: bool, add: &Additions) {
        for c in &t.rendered.init_containers {
            let owner = format!("template {} container {:?}", t.name, name_of(c));
            self.add_container(c, &owner, Phase::Init);
        }
        for c in &t.rendered.containers {
            let owner = format!("template {} container {:?}", t.name, name_of(c));
            let phase = if native { Phase::Sidecar } else { Phase::App };
            self.add_container(c, &owner, phase);
        }
        for v in &add.volumes {
            let owner = format!("template {}'s volume {:?}", t.name, name_of(v));
            self.volumes
                .insert(name_of(v).to_string(), (v.clone(), owner));
        }
        for (i, extra) in &add.app {
            let Some(app) = self.apps.iter_mut().find(|a| a.index == *i) else {
                continue;
            };
            for m in &extra.volume_mounts {
                app.mounts.insert(mount_path(m), m.clone());
            }
            for e in &extra.env {
                app.env.insert(name_of(e).to_string(), e.clone());
            }
            app.env_from.extend(extra.env_from.iter().cloned());
        }
    }
}
