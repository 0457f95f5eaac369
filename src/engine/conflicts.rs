//! Conflicts are found before any patch is built: container names across
//! containers and initContainers, volume names, ports in the shared network
//! namespace, mountPaths inside each container and env names.
//!
//! The index borrows from the pod and the templates and describes owners
//! lazily: it is built for every admission, and pods with thousands of env
//! vars or a hundred containers must stay cheap.

use std::fmt;
use std::sync::Arc;

use super::pod::{PodView, is_native_sidecar, name_of};
use crate::facts::Doc;
use crate::template::{Object, Template};

/// One collision, naming both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Conflict {
    /// What collides: `port 2020/TCP`, `env DATABASE_URL`.
    pub subject: String,
    /// The template side: `template log-shipper container "fluent-bit"`.
    pub ours: String,
    /// How: `is already used by`.
    pub relation: &'static str,
    /// The pod side: `container "app"`.
    pub theirs: String,
}

impl Conflict {
    fn new(
        subject: String,
        ours: impl fmt::Display,
        relation: &'static str,
        theirs: impl fmt::Display,
    ) -> Self {
        Conflict {
            subject,
            ours: ours.to_string(),
            relation,
            theirs: theirs.to_string(),
        }
    }

    /// Without the template side, for warnings that already name the template
    /// and must stay under 120 characters.
    pub(super) fn short(&self) -> String {
        format!("{} {} {}", self.subject, self.relation, self.theirs)
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} {} {}",
            self.subject, self.ours, self.relation, self.theirs
        )
    }
}

/// Who holds a name, a port or a volume, for messages.
#[derive(Clone, Copy, Debug)]
enum Owner<'a> {
    Container(&'a str),
    InitContainer(&'a str),
    PodVolume(&'a str),
    TemplateContainer(&'a str, &'a str),
    TemplateVolume(&'a str, &'a str),
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Container(n) => write!(f, "container {n:?}"),
            Owner::InitContainer(n) => write!(f, "init container {n:?}"),
            Owner::PodVolume(n) => write!(f, "the pod's volume {n:?}"),
            Owner::TemplateContainer(t, c) => write!(f, "template {t} container {c:?}"),
            Owner::TemplateVolume(t, v) => write!(f, "template {t}'s volume {v:?}"),
        }
    }
}

/// When a container runs, which decides whose ports it can meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

type PortKey<'a> = (i64, &'a str);

/// Entries in the order they were added, a later one shadowing an earlier
/// one with the same key as a map's insert would. Looked up by a scan: a
/// template checks a handful of names and ports against lists as long as
/// the pod, so the cost stays linear in the pod, and a scan is less code
/// and less time than hashing (a hash map was 3% of a small pod's
/// admission, most of it instruction-cache misses).
type Map<K, V> = Vec<(K, V)>;

fn last<'m, K: PartialEq, V>(map: &'m Map<K, V>, key: &K) -> Option<&'m V> {
    map.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// What the pod holds so far: the input pod plus every template accepted
/// earlier in the same decision.
pub(super) struct PodIndex<'a> {
    names: Map<&'a str, Owner<'a>>,
    volumes: Map<&'a str, (&'a Doc<'a>, Owner<'a>)>,
    /// Every container port, so a port is checked against each phase using it.
    ports: Map<PortKey<'a>, (Phase, Owner<'a>)>,
    host_ports: Map<PortKey<'a>, Owner<'a>>,
    pub apps: Vec<AppContainer<'a>>,
}

/// An app container: what it had, plus what earlier templates added.
pub(super) struct AppContainer<'a> {
    pub index: usize,
    pub name: &'a str,
    container: &'a Doc<'a>,
    added_mounts: Vec<&'a Doc<'a>>,
    added_env: Vec<&'a Doc<'a>>,
    added_env_from: Vec<&'a Doc<'a>>,
}

impl<'a> AppContainer<'a> {
    fn all<'s>(
        &'s self,
        field: &str,
        added: &'s [&'a Doc<'a>],
    ) -> impl Iterator<Item = &'a Doc<'a>> + 's {
        list(self.container, field)
            .iter()
            .chain(added.iter().copied())
    }
}

/// What one template adds to the pod beyond its own containers, borrowed from
/// the template.
#[derive(Default)]
pub(super) struct Additions<'a> {
    pub volumes: Vec<&'a Arc<Object>>,
    /// Per app container index: mounts, env, envFrom to append.
    pub app: Vec<(usize, AppAdditions<'a>)>,
}

#[derive(Default)]
pub(super) struct AppAdditions<'a> {
    pub volume_mounts: Vec<&'a Arc<Object>>,
    pub env: Vec<&'a Arc<Object>>,
    pub env_from: Vec<&'a Arc<Object>>,
}

/// (containerPort, hostPort, protocol) of a container's ports.
fn ports_of<'v>(c: &'v Doc<'_>) -> impl Iterator<Item = (Option<i64>, Option<i64>, &'v str)> {
    list(c, "ports").iter().map(|p| {
        (
            p.get("containerPort").and_then(Doc::as_i64),
            p.get("hostPort").and_then(Doc::as_i64).filter(|&h| h != 0),
            p.get("protocol").and_then(Doc::as_str).unwrap_or("TCP"),
        )
    })
}

fn list<'v, 'a>(c: &'v Doc<'a>, field: &str) -> &'v [Doc<'a>] {
    c.get(field).and_then(Doc::as_array).unwrap_or_default()
}

fn mount_path<'v>(m: &'v Doc<'_>) -> &'v str {
    let p = m.get("mountPath").and_then(Doc::as_str).unwrap_or_default();
    p.trim_end_matches('/')
}

impl<'a> PodIndex<'a> {
    pub(super) fn new(pod: &PodView<'a>) -> PodIndex<'a> {
        let mut index = PodIndex {
            names: Map::new(),
            volumes: Map::new(),
            ports: Map::new(),
            host_ports: Map::new(),
            apps: Vec::with_capacity(pod.containers.len()),
        };
        for v in pod.volumes.unwrap_or_default() {
            index
                .volumes
                .push((name_of(v), (v, Owner::PodVolume(name_of(v)))));
        }
        for c in pod.init_containers.unwrap_or_default() {
            let phase = if is_native_sidecar(c) {
                Phase::Sidecar
            } else {
                Phase::Init
            };
            index.add_container(c, Owner::InitContainer(name_of(c)), phase);
        }
        for (i, c) in pod.containers.iter().enumerate() {
            index.add_container(c, Owner::Container(name_of(c)), Phase::App);
            index.apps.push(AppContainer {
                index: i,
                name: name_of(c),
                container: c,
                added_mounts: Vec::new(),
                added_env: Vec::new(),
                added_env_from: Vec::new(),
            });
        }
        index
    }

    fn add_container(&mut self, c: &'a Doc<'a>, owner: Owner<'a>, phase: Phase) {
        self.names.push((name_of(c), owner));
        for (port, host, proto) in ports_of(c) {
            if let Some(p) = port {
                self.ports.push(((p, proto), (phase, owner)));
            }
            if let Some(h) = host {
                self.host_ports.push(((h, proto), owner));
            }
        }
    }

    /// Checks `t` against the pod as it stands, with its long-running
    /// containers placed as native sidecars or not, changing the app containers
    /// at `targets`. Nothing is recorded until `commit`. Conflicts are listed
    /// in a fixed order: names, volumes, ports, then each app container's.
    pub(super) fn check(
        &self,
        t: &'a Template,
        native: bool,
        targets: &[usize],
    ) -> Result<Additions<'a>, Vec<Conflict>> {
        let mut conflicts = Vec::new();
        self.check_names(t, &mut conflicts);
        let volumes = self.check_volumes(t, &mut conflicts);
        self.check_ports(t, native, &mut conflicts);
        let app = targets
            .iter()
            .filter_map(|&i| self.check_app(t, &self.apps[i], &mut conflicts))
            .collect();
        if conflicts.is_empty() {
            Ok(Additions { volumes, app })
        } else {
            Err(conflicts)
        }
    }

    /// Container names are unique across containers and initContainers.
    fn check_names(&self, t: &Template, conflicts: &mut Vec<Conflict>) {
        for name in t.container_names() {
            if let Some(owner) = last(&self.names, &name) {
                conflicts.push(Conflict::new(
                    format!("container name {name:?}"),
                    format_args!("template {}", t.name),
                    "is already used by",
                    owner,
                ));
            }
        }
    }

    /// The template's volumes the pod lacks. The same definition under the
    /// same name is a volume shared on purpose (two templates both using
    /// `app-logs`): reused, not a conflict.
    fn check_volumes(
        &self,
        t: &'a Template,
        conflicts: &mut Vec<Conflict>,
    ) -> Vec<&'a Arc<Object>> {
        let mut add = Vec::new();
        for v in &t.rendered.volumes {
            let name = name_of(v);
            match last(&self.volumes, &name) {
                Some((existing, _)) if *existing == v.doc() => {}
                Some((_, owner)) => conflicts.push(Conflict::new(
                    format!("volume {name:?}"),
                    format_args!("template {}", t.name),
                    "differs from",
                    owner,
                )),
                None => add.push(v),
            }
        }
        add
    }

    /// Ports in the shared network namespace, by when each container runs;
    /// host ports always.
    fn check_ports(&self, t: &'a Template, native: bool, conflicts: &mut Vec<Conflict>) {
        let long_running = if native { Phase::Sidecar } else { Phase::App };
        let groups = [
            (&t.rendered.init_containers, Phase::Init),
            (&t.rendered.containers, long_running),
        ];
        for (containers, phase) in groups {
            for c in containers.iter() {
                let ours = Owner::TemplateContainer(&t.name, name_of(c));
                for (port, host, proto) in ports_of(c) {
                    let used = |(key, (their, _)): &&(PortKey, (Phase, Owner))| {
                        Some(key.0) == port && key.1 == proto && overlap(phase, *their)
                    };
                    if let Some(p) = port
                        && let Some((_, (_, theirs))) = self.ports.iter().find(used)
                    {
                        let subject = format!("port {p}/{proto}");
                        conflicts.push(Conflict::new(subject, ours, "is already used by", theirs));
                    }
                    if let Some(h) = host
                        && let Some(theirs) = last(&self.host_ports, &(h, proto))
                    {
                        let subject = format!("hostPort {h}/{proto}");
                        conflicts.push(Conflict::new(subject, ours, "is already used by", theirs));
                    }
                }
            }
        }
    }

    /// What one app container gets: mounts at paths it does not use yet, env
    /// it does not set differently, envFrom it lacks. Identical entries are
    /// already there and skipped. `None` when it gets nothing.
    fn check_app(
        &self,
        t: &'a Template,
        app: &AppContainer<'a>,
        conflicts: &mut Vec<Conflict>,
    ) -> Option<(usize, AppAdditions<'a>)> {
        let tname = &t.name;
        let mut extra = AppAdditions::default();
        for m in &t.rendered.app_volume_mounts {
            let path = mount_path(m);
            match app
                .all("volumeMounts", &app.added_mounts)
                .find(|e| mount_path(e) == path)
            {
                Some(existing) if existing == m.doc() => {}
                Some(existing) => conflicts.push(Conflict::new(
                    format!("mountPath {path}"),
                    format_args!("template {tname}"),
                    "is already used in",
                    format_args!("container {:?} by volume {:?}", app.name, name_of(existing)),
                )),
                None => extra.volume_mounts.push(m),
            }
        }
        for e in &t.rendered.app_env {
            let name = name_of(e);
            match app.all("env", &app.added_env).find(|x| name_of(x) == name) {
                Some(existing) if existing == e.doc() => {}
                Some(_) => conflicts.push(Conflict::new(
                    format!("env {name}"),
                    format_args!("template {tname}"),
                    "is already set differently in",
                    format_args!("container {:?}", app.name),
                )),
                None => extra.env.push(e),
            }
        }
        for e in &t.rendered.app_env_from {
            if !app
                .all("envFrom", &app.added_env_from)
                .any(|x| x == e.doc())
            {
                extra.env_from.push(e);
            }
        }
        let empty =
            extra.volume_mounts.is_empty() && extra.env.is_empty() && extra.env_from.is_empty();
        (!empty).then_some((app.index, extra))
    }

    /// Records an accepted template so later templates are checked against it.
    pub(super) fn commit(&mut self, t: &'a Template, native: bool, add: &Additions<'a>) {
        for c in &t.rendered.init_containers {
            self.add_container(
                c,
                Owner::TemplateContainer(&t.name, name_of(c)),
                Phase::Init,
            );
        }
        let phase = if native { Phase::Sidecar } else { Phase::App };
        for c in &t.rendered.containers {
            self.add_container(c, Owner::TemplateContainer(&t.name, name_of(c)), phase);
        }
        for v in &add.volumes {
            self.volumes.push((
                name_of(v),
                (v.doc(), Owner::TemplateVolume(&t.name, name_of(v))),
            ));
        }
        for (i, extra) in &add.app {
            let Some(app) = self.apps.iter_mut().find(|a| a.index == *i) else {
                continue;
            };
            app.added_mounts
                .extend(extra.volume_mounts.iter().map(|m| m.doc()));
            app.added_env.extend(extra.env.iter().map(|e| e.doc()));
            app.added_env_from
                .extend(extra.env_from.iter().map(|e| e.doc()));
        }
    }
}
