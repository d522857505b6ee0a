//! Workloads: what people checkpoint (DESIGN.md §7). A container (its engine's cgroup), a
//! systemd unit (its service or scope cgroup), a session (the processes under one session
//! leader, CRIU's natural root outside containers), in that order of precedence. Each has a
//! root, and its verdict is the verdict of the dump that root implies (`criu dump -t ROOT`
//! takes the root's whole subtree); members outside that tree are left out. Kernel threads are
//! no workload: they hold no files and the iterators never report them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::container_id::{self, ContainerName, Runtime};
use super::{DumpSet, ProcInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Container,
    Unit,
    Session,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Unit => "unit",
            Self::Session => "session",
        }
    }
}

/// What makes a workload one: the key processes are grouped by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    /// The full container id, the unit's cgroup path, or the session id.
    pub id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub kind: Kind,
    pub id: String,
    /// The engine's name for a container (or `namespace/pod`), the unit, or the session
    /// leader's command.
    pub name: String,
    pub root: u32,
    /// Processes of the workload that the root's dump leaves behind.
    pub left_out: Vec<u32>,
    #[serde(skip)]
    pub container: Option<ContainerName>,
    #[serde(skip)]
    pub dump: DumpSet,
}

/// The systemd unit a cgroup path lies in: its deepest `.service` or `.scope` component, as
/// the path up to it (unique) and the unit's name.
pub fn unit_of(path: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let i = parts
        .iter()
        .rposition(|p| p.ends_with(".service") || p.ends_with(".scope"))?;
    Some((format!("/{}", parts[..=i].join("/")), parts[i].to_string()))
}

/// The host's init belongs to no workload: a dump of the whole host is nobody's checkpoint
/// (CRIU refuses a tree it runs inside), and judging it would judge every process at once.
const INIT: u32 = 1;

/// The workload a process belongs to; none for the host's init.
pub fn key_of(p: &ProcInfo) -> Option<Key> {
    key_in(p, &cgroup_key(&p.cgroups))
}

/// The workload of process `p`, whose cgroups make it `by_cgroup` ([`cgroup_key`]).
fn key_in(p: &ProcInfo, by_cgroup: &CgroupKey) -> Option<Key> {
    if p.pid == INIT {
        return None;
    }
    Some(by_cgroup.as_ref().map_or_else(
        || Key {
            kind: Kind::Session,
            id: p.sid.to_string(),
        },
        |(key, _)| key.clone(),
    ))
}

/// The container or unit a process's cgroups put it in, with the container's name; `None`
/// for neither (it is its session's).
type CgroupKey = Option<(Key, Option<ContainerName>)>;

fn cgroup_key(cgroups: &[String]) -> CgroupKey {
    if let Some((c, _)) = cgroups.iter().find_map(|c| container_id::from_path(c)) {
        let key = Key {
            kind: Kind::Container,
            id: c.id.clone(),
        };
        return Some((key, Some(c)));
    }
    // A unit by the v2 path, else by v1's name=systemd path (the first that names one).
    let (path, _) = cgroups.iter().find_map(|c| unit_of(c))?;
    let key = Key {
        kind: Kind::Unit,
        id: path,
    };
    Some((key, None))
}

/// The topmost process of `pids` with the most of them below it; ties go to the lowest pid
/// (the container init, the unit's main process).
pub fn choose_root(pids: &BTreeSet<u32>, parents: &HashMap<u32, u32>) -> Option<DumpSet> {
    choose_root_in(
        pids,
        &|p| parents.get(&p).copied(),
        &super::children_of(parents),
    )
}

/// [`choose_root`] over a pid → children map kept elsewhere (the daemon keeps one live), so
/// that each candidate's tree is not a walk of the whole host.
pub fn choose_root_in(
    pids: &BTreeSet<u32>,
    parent_of: &dyn Fn(u32) -> Option<u32>,
    children: &HashMap<u32, Vec<u32>>,
) -> Option<DumpSet> {
    pids.iter()
        .filter(|&&p| parent_of(p).is_none_or(|pp| !pids.contains(&pp)))
        .map(|&top| DumpSet::tree_in(top, children))
        .max_by_key(|set| (set.members.len(), std::cmp::Reverse(set.root)))
}

/// The dump a workload's root implies, from its members: a session's is its leader's tree
/// when the leader is there (the rest of the session is part of the leader's dump, not a
/// failed dump of its own), any other's the tree of [`choose_root_in`].
pub fn dump_in(
    key: &Key,
    pids: &BTreeSet<u32>,
    parent_of: &dyn Fn(u32) -> Option<u32>,
    children: &HashMap<u32, Vec<u32>>,
) -> Option<DumpSet> {
    let leader = key.id.parse::<u32>().ok().filter(|sid| pids.contains(sid));
    match (key.kind, leader) {
        (Kind::Session, Some(l)) => Some(DumpSet::tree_in(l, children)),
        _ => choose_root_in(pids, parent_of, children),
    }
}

/// Every workload of `procs`, by key.
pub fn discover(procs: &BTreeMap<u32, ProcInfo>, names: &Names) -> Vec<Workload> {
    let parents: HashMap<u32, u32> = procs.values().map(|p| (p.pid, p.ppid)).collect();
    let children = super::children_of(&parents);
    let parent_of = |p: u32| parents.get(&p).copied();
    let mut groups: BTreeMap<Key, (BTreeSet<u32>, Option<ContainerName>)> = BTreeMap::new();
    // Processes in pid order mostly come in runs that share their cgroups (a service's
    // workers, a container's): each run's paths are parsed once.
    let mut last: Option<(&[String], CgroupKey)> = None;
    for p in procs.values() {
        let by_cgroup = match last.take() {
            Some((cgroups, known)) if cgroups == p.cgroups.as_slice() => known,
            _ => cgroup_key(&p.cgroups),
        };
        let key = key_in(p, &by_cgroup);
        let container = by_cgroup.as_ref().and_then(|(_, c)| c.clone());
        last = Some((&p.cgroups, by_cgroup));
        let Some(key) = key else { continue };
        let entry = groups.entry(key).or_default();
        entry.0.insert(p.pid);
        if entry.1.is_none() {
            entry.1 = container;
        }
    }
    groups
        .into_iter()
        .filter_map(|(key, (pids, container))| {
            let dump = dump_in(&key, &pids, &parent_of, &children)?;
            let name = match (&key.kind, &container) {
                (Kind::Container, Some(c)) => names.container(c),
                (Kind::Unit, _) => unit_of(&key.id).map(|(_, n)| n).unwrap_or_default(),
                _ => procs
                    .get(&dump.root)
                    .map(|p| p.comm.clone())
                    .unwrap_or_default(),
            };
            Some(Workload {
                kind: key.kind,
                name,
                root: dump.root,
                left_out: pids.difference(&dump.members).copied().collect(),
                id: key.id,
                container,
                dump,
            })
        })
        .collect()
}

/// Container names from the engines' state files, read once: Podman's and CRI-O's
/// containers/storage `containers.json`, Docker's `config.v2.json` per container, and
/// Kubernetes pods from the kubelet's `/var/log/pods/<namespace>_<pod>_<uid>` directories.
/// Nothing here needs a network API; what cannot be read leaves the name empty.
#[derive(Clone, Debug, Default)]
pub struct Names {
    storage: HashMap<String, String>,
    pods: HashMap<String, String>,
    docker_dir: Option<std::path::PathBuf>,
}

#[derive(serde::Deserialize)]
struct StorageEntry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name", default)]
    name: String,
}

/// Engines' state files are small; a bigger one is not theirs (or not trustworthy).
const STATE_LIMIT: u64 = 64 << 20;

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(STATE_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

impl Names {
    /// Reads the state files under `root` (`/` on a live host).
    pub fn read(root: &Path) -> Self {
        let mut names = Names::default();
        for storage in [
            "var/lib/containers/storage/overlay-containers/containers.json",
            "run/containers/storage/overlay-containers/containers.json",
        ] {
            let entries: Vec<StorageEntry> = read_small(&root.join(storage))
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            for e in entries {
                if let Some(n) = e.names.into_iter().next() {
                    names.storage.insert(e.id, n);
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(root.join("var/log/pods")) {
            for e in dir.flatten() {
                let file_name = e.file_name();
                let Some(n) = file_name.to_str() else {
                    continue;
                };
                let mut parts = n.splitn(3, '_');
                if let (Some(ns), Some(pod), Some(uid)) = (parts.next(), parts.next(), parts.next())
                {
                    names.pods.insert(uid.to_string(), format!("{ns}/{pod}"));
                }
            }
        }
        names.docker_dir = Some(root.join("var/lib/docker/containers"));
        names
    }

    /// The engine's name for the container, else its pod's `namespace/pod`, else the LXC
    /// name (its id), else empty.
    pub fn container(&self, c: &ContainerName) -> String {
        if let Some(n) = self.storage.get(&c.id) {
            return n.clone();
        }
        if c.runtime == Runtime::Docker
            && let Some(dir) = &self.docker_dir
            && let Some(cfg) = read_small(&dir.join(&c.id).join("config.v2.json"))
                .and_then(|t| serde_json::from_str::<DockerConfig>(&t).ok())
            && !cfg.name.is_empty()
        {
            return cfg.name.trim_start_matches('/').to_string();
        }
        if let Some(pod) = c.pod.as_ref().and_then(|u| self.pods.get(u)) {
            return pod.clone();
        }
        if c.runtime == Runtime::Lxc {
            return c.id.clone();
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2a1b9c0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";

    fn proc(pid: u32, ppid: u32, sid: u32, cgroup: &str) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            sid,
            comm: format!("p{pid}"),
            cgroups: vec![cgroup.to_string()],
            ..Default::default()
        }
    }

    fn by_id<'w>(ws: &'w [Workload], id: &str) -> &'w Workload {
        ws.iter().find(|w| w.id == id).unwrap()
    }

    #[test]
    fn units_from_paths() {
        assert_eq!(
            unit_of("/system.slice/nginx.service"),
            Some(("/system.slice/nginx.service".into(), "nginx.service".into()))
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope/sub")
                .unwrap()
                .1,
            "x.scope"
        );
        assert_eq!(unit_of("/"), None);
        assert_eq!(unit_of("/kubepods/besteffort"), None);
    }

    #[test]
    fn containers_units_and_sessions() {
        let docker = format!("/system.slice/docker-{ID}.scope");
        let procs: BTreeMap<u32, ProcInfo> = [
            // A container: init 100, its child 101, and 102 started by `exec` (parent outside).
            proc(100, 90, 100, &docker),
            proc(101, 100, 100, &docker),
            proc(102, 95, 102, &docker),
            // A unit: main process and a worker.
            proc(200, 1, 200, "/system.slice/nginx.service"),
            proc(201, 200, 200, "/system.slice/nginx.service"),
            // A login session: the leader, a child, and a daemonised grandchild (parent 1).
            proc(300, 1, 300, "/"),
            proc(301, 300, 300, "/"),
            proc(302, 1, 300, "/"),
            // A session whose leader is gone.
            proc(400, 1, 399, "/"),
            // The host's init is nobody's workload.
            proc(1, 0, 1, "/init.scope"),
        ]
        .into_iter()
        .map(|p| (p.pid, p))
        .collect();
        let ws = discover(&procs, &Names::default());
        assert_eq!(ws.len(), 4, "{ws:?}");
        let c = by_id(&ws, ID);
        assert_eq!(
            (c.kind, c.root, c.left_out.clone()),
            (Kind::Container, 100, vec![102])
        );
        assert_eq!(c.container.as_ref().unwrap().runtime, Runtime::Docker);
        let u = by_id(&ws, "/system.slice/nginx.service");
        assert_eq!(
            (u.kind, u.root, u.name.as_str()),
            (Kind::Unit, 200, "nginx.service")
        );
        assert_eq!(u.dump.members, BTreeSet::from([200, 201]));
        let s = by_id(&ws, "300");
        assert_eq!(
            (s.kind, s.root, s.left_out.clone()),
            (Kind::Session, 300, vec![302])
        );
        assert_eq!(s.name, "p300");
        assert_eq!(by_id(&ws, "399").root, 400);
    }

    #[test]
    fn names_from_engine_state() {
        let tmp = tempfile::Builder::new()
            .prefix("ckpt-names-")
            .tempdir()
            .unwrap();
        let root = tmp.path();
        let storage = root.join("var/lib/containers/storage/overlay-containers");
        std::fs::create_dir_all(&storage).unwrap();
        std::fs::write(
            storage.join("containers.json"),
            format!(r#"[{{"id":"{ID}","names":["web"],"image":"x"}}]"#),
        )
        .unwrap();
        let pod = "0f1e2d3c-4b5a-6978-8899-aabbccddeeff";
        std::fs::create_dir_all(root.join(format!("var/log/pods/prod_api-7d9_{pod}"))).unwrap();
        let other = ID.replace('3', "4");
        let docker = root.join("var/lib/docker/containers").join(&other);
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::write(docker.join("config.v2.json"), r#"{"Name":"/db","Id":"x"}"#).unwrap();
        let names = Names::read(root);
        let name = |runtime, id: &str, pod: Option<&str>| {
            names.container(&ContainerName {
                runtime,
                id: id.into(),
                pod: pod.map(String::from),
            })
        };
        assert_eq!(name(Runtime::Podman, ID, None), "web");
        assert_eq!(name(Runtime::Docker, &other, None), "db");
        assert_eq!(
            name(Runtime::Cri, &ID.replace('3', "5"), Some(pod)),
            "prod/api-7d9"
        );
        assert_eq!(name(Runtime::Lxc, "mybox", None), "mybox");
        assert_eq!(name(Runtime::Containerd, &ID.replace('3', "6"), None), "");
    }
}
