//! Cgroups as the file system shows them: the mounted hierarchies (v2, and v1 where present),
//! the containers found by walking them, `--container` prefixes and `--cgroup` paths resolved to
//! one directory, and the processes in a directory and below. Walking costs in proportion to the
//! number of cgroups, never to the number of processes on the host.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::container_id::{self, ContainerName};
use crate::snapshot::Filter;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup file system is mounted (looked in /proc/self/mountinfo)")]
    NoHierarchy,
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no cgroup {0}: give a directory of a cgroup hierarchy (e.g. /sys/fs/cgroup/system.slice/x.scope) or a path inside one (/system.slice/x.scope)"
    )]
    NoSuchCgroup(String),
    #[error("cgroup {path} is outside the cgroup hierarchy at {mount}: give a directory inside it")]
    Escapes { path: String, mount: String },
    #[error("cgroup {0} is not a directory: give a cgroup directory")]
    NotADirectory(String),
    #[error("no container with id {0} (ckpt-watch preflight --all-containers lists them)")]
    UnknownContainer(String),
    #[error("container id prefix {prefix} is ambiguous: {matches}")]
    AmbiguousContainer { prefix: String, matches: String },
    #[error("container id {0:?} is not a hex id prefix or an LXC name")]
    BadContainerId(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub version: Version,
    /// The v1 controllers (or `name=systemd`); empty for v2.
    pub controllers: Vec<String>,
}

/// v1 hierarchies in the order a container search prefers: those every engine populates.
const V1_PREFERENCE: [&str; 5] = ["pids", "memory", "cpu", "freezer", "name=systemd"];

/// The cgroup hierarchies in `/proc/self/mountinfo` text: v2 first, then v1 by preference.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let (fs, _source, options) = (r.next()?, r.next()?, r.next().unwrap_or(""));
            let version = match fs {
                "cgroup2" => Version::V2,
                "cgroup" => Version::V1,
                _ => return None,
            };
            let controllers = match version {
                Version::V2 => vec![],
                Version::V1 => options
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec"
                        )
                    })
                    .map(str::to_string)
                    .collect(),
            };
            Some(Hierarchy {
                mount: PathBuf::from(mount.replace("\\040", " ")),
                version,
                controllers,
            })
        })
        .collect();
    let rank = |h: &Hierarchy| match h.version {
        Version::V2 => 0,
        Version::V1 => {
            1 + V1_PREFERENCE
                .iter()
                .position(|p| h.controllers.iter().any(|c| c == p))
                .unwrap_or(V1_PREFERENCE.len())
        }
    };
    found.sort_by_key(rank);
    found
}

pub fn hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
        path: path.into(),
        source,
    })?;
    let found = parse_mountinfo(&text);
    if found.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(found)
}

/// One cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cgroup {
    /// The path inside its hierarchy, `/system.slice/x.scope` (`/` for the root).
    pub path: String,
    pub dir: PathBuf,
    pub version: Version,
    /// The directory's inode number: the cgroup id on v2.
    pub id: u64,
    /// Depth below the hierarchy's root (root = 0).
    pub level: u32,
}

impl Cgroup {
    /// The cgroup at `path` inside `h`, canonicalised: the BPF side filters by the directory's
    /// inode and depth, so `a/../b` must count as the depth of `b`, and a path leaving the
    /// hierarchy must name no cgroup at all.
    fn at(h: &Hierarchy, path: &str) -> Result<Self, CgroupError> {
        let shown = || crate::report::printable(path);
        let rel = path.trim_matches('/');
        let given = if rel.is_empty() {
            h.mount.clone()
        } else {
            h.mount.join(rel)
        };
        let dir = std::fs::canonicalize(&given).map_err(|_| CgroupError::NoSuchCgroup(shown()))?;
        let mount = std::fs::canonicalize(&h.mount).unwrap_or_else(|_| h.mount.clone());
        let inside = dir
            .strip_prefix(&mount)
            .map_err(|_| CgroupError::Escapes {
                path: shown(),
                mount: mount.display().to_string(),
            })?
            .to_path_buf();
        let meta = std::fs::metadata(&dir).map_err(|_| CgroupError::NoSuchCgroup(shown()))?;
        if !meta.is_dir() {
            return Err(CgroupError::NotADirectory(shown()));
        }
        if !dir.join("cgroup.procs").exists() {
            return Err(CgroupError::NoSuchCgroup(shown()));
        }
        Ok(Self {
            path: format!("/{}", inside.display()),
            level: inside.components().count() as u32,
            dir,
            version: h.version.clone(),
            id: meta.ino(),
        })
    }

    /// What the kernel side filters by: the cgroup itself on v2; on v1 the BPF side cannot
    /// tell (it reads the default hierarchy), so the whole host is scanned and then narrowed.
    pub fn filter(&self) -> Filter {
        match self.version {
            Version::V2 => Filter::Cgroup {
                id: self.id,
                level: self.level,
            },
            Version::V1 => Filter::All,
        }
    }

    /// Every process in this cgroup and below (`cgroup.procs` of each directory).
    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            let procs = dir.join("cgroup.procs");
            match std::fs::read_to_string(&procs) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
                // Removed while we walked: it held nobody any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(CgroupError::Io {
                        path: procs.display().to_string(),
                        source,
                    });
                }
            }
            stack.extend(subdirs(&dir));
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// A container: its name and its cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    #[serde(flatten)]
    pub name: ContainerName,
    pub cgroup: Cgroup,
}

/// Every container in the hierarchies, each once (a v2 directory preferred to a v1 one).
/// Directories are walked; processes are not read.
pub fn discover(hierarchies: &[Hierarchy]) -> Vec<Container> {
    let mut found: BTreeMap<String, Container> = BTreeMap::new();
    // The first v1 hierarchy holds the same tree as the others: walking one is enough.
    let walked = hierarchies
        .iter()
        .filter(|h| h.version == Version::V2)
        .chain(hierarchies.iter().find(|h| h.version == Version::V1));
    for h in walked {
        let mut stack = vec![h.mount.clone()];
        while let Some(dir) = stack.pop() {
            let rel = dir.strip_prefix(&h.mount).unwrap_or(Path::new(""));
            let path = format!("/{}", rel.display());
            if let Some(name) = container_id::from_dir(&path)
                && !found.contains_key(&name.id)
                && let Ok(cgroup) = Cgroup::at(h, &path)
            {
                found.insert(name.id.clone(), Container { name, cgroup });
            }
            stack.extend(subdirs(&dir));
        }
    }
    found.into_values().collect()
}

/// The container `query` names: a full id or LXC name (exactly as written), or a unique prefix
/// of one (hex ids in either case).
pub fn find_container<'c>(
    containers: &'c [Container],
    query: &str,
) -> Result<&'c Container, CgroupError> {
    let q = query.trim();
    if q.is_empty() || q.contains('/') {
        return Err(CgroupError::BadContainerId(crate::report::printable(query)));
    }
    if let Some(exact) = containers.iter().find(|c| c.name.id == q) {
        return Ok(exact);
    }
    // Engines' ids are lowercase hex; LXC names are matched as written (`MyBox`).
    let hex = q.to_ascii_lowercase();
    let matches: Vec<&Container> = containers
        .iter()
        .filter(|c| {
            c.name.id.starts_with(q)
                || (c.name.runtime != container_id::Runtime::Lxc && c.name.id.starts_with(&hex))
        })
        .collect();
    match matches.as_slice() {
        [] => Err(CgroupError::UnknownContainer(crate::report::printable(
            query,
        ))),
        [one] => Ok(one),
        many => Err(CgroupError::AmbiguousContainer {
            prefix: crate::report::printable(query),
            matches: many
                .iter()
                .map(|c| {
                    let others = containers.iter().map(|o| o.name.id.as_str());
                    let id = distinguishing(&c.name.id, others);
                    format!("{} ({})", crate::report::printable(id), c.name.runtime)
                })
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The shortest prefix of `id` that no other of `all` starts with, at least as long as the
/// short id `docker ps` shows (so the list of an ambiguous prefix tells the matches apart).
fn distinguishing<'a>(id: &'a str, all: impl Iterator<Item = &'a str>) -> &'a str {
    let common = |o: &str| {
        id.chars()
            .zip(o.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let shared = all.filter(|o| *o != id).map(common).max().unwrap_or(0);
    let chars = (shared + 1).max(container_id::SHORT_ID);
    id.char_indices()
        .nth(chars)
        .map_or(id, |(end, _)| &id[..end])
}

/// The cgroup `path` names: a directory under a hierarchy's mount, or a path inside one (tried
/// in v2 first).
pub fn cgroup_at(hierarchies: &[Hierarchy], path: &str) -> Result<Cgroup, CgroupError> {
    let as_given = Path::new(path);
    for h in hierarchies {
        if let Ok(rel) = as_given.strip_prefix(&h.mount) {
            return Cgroup::at(h, &format!("/{}", rel.display()));
        }
    }
    let mut first_err = None;
    for h in hierarchies {
        match Cgroup::at(h, path) {
            Ok(c) => return Ok(c),
            // Why a path is refused says more than that it is missing.
            Err(CgroupError::NoSuchCgroup(_)) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| CgroupError::NoSuchCgroup(crate::report::printable(path))))
}

/// The container a cgroup path belongs to, if any (for `--cgroup` on a container's directory).
pub fn container_of(cgroup: &Cgroup) -> Option<ContainerName> {
    container_id::from_path(&cgroup.path).map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
43 31 0:40 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
44 31 0:41 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
45 31 0:42 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hierarchies_v2_first_then_preferred_v1() {
        let h = parse_mountinfo(HYBRID);
        let mounts: Vec<&str> = h.iter().map(|h| h.mount.to_str().unwrap()).collect();
        assert_eq!(
            mounts,
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/systemd"
            ]
        );
        assert_eq!(h[0].version, Version::V2);
        assert_eq!(h[3].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[4].controllers, ["xattr", "name=systemd"]);
    }

    #[test]
    fn pure_v2() {
        let h = parse_mountinfo(
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].mount, Path::new("/sys/fs/cgroup"));
    }

    fn container(id: &str) -> Container {
        Container {
            name: ContainerName {
                runtime: container_id::Runtime::Docker,
                id: id.into(),
                pod: None,
            },
            cgroup: Cgroup {
                path: format!("/docker/{id}"),
                dir: PathBuf::new(),
                version: Version::V2,
                id: 1,
                level: 2,
            },
        }
    }

    #[test]
    fn prefixes_exact_unique_ambiguous_unknown() {
        let a = format!("abc{}", "0".repeat(61));
        let b = format!("abd{}", "0".repeat(61));
        let all = [container(&a), container(&b)];
        assert_eq!(find_container(&all, "abc").unwrap().name.id, a);
        assert_eq!(find_container(&all, &b.to_uppercase()).unwrap().name.id, b);
        let err = find_container(&all, "ab").unwrap_err().to_string();
        assert!(
            err.contains("ambiguous") && err.contains("abc000000000"),
            "{err}"
        );
        assert!(matches!(
            find_container(&all, "ff"),
            Err(CgroupError::UnknownContainer(_))
        ));
        assert!(matches!(
            find_container(&all, ""),
            Err(CgroupError::BadContainerId(_))
        ));
    }

    #[test]
    fn lxc_names_keep_their_case_and_ambiguity_lists_what_differs() {
        let mut lxc = container("MyBox");
        lxc.name.runtime = container_id::Runtime::Lxc;
        let a = format!("abcdef0123456789{}", "0".repeat(48));
        let b = format!("abcdef0123456789{}", "1".repeat(48));
        let all = [lxc, container(&a), container(&b)];
        assert_eq!(find_container(&all, "MyBox").unwrap().name.id, "MyBox");
        assert_eq!(find_container(&all, "MyB").unwrap().name.id, "MyBox");
        assert!(find_container(&all, "mybox").is_err());
        let err = find_container(&all, "ABCDEF").unwrap_err().to_string();
        assert!(
            err.ends_with("abcdef01234567890 (docker), abcdef01234567891 (docker)"),
            "{err}"
        );
        assert_eq!(distinguishing("ab", ["ab", "abc"].into_iter()), "ab");
        assert_eq!(distinguishing("é", ["é"].into_iter()), "é");
    }

    #[test]
    fn a_path_is_judged_where_it_leads() {
        let h = hierarchies().unwrap();
        let root = cgroup_at(&h, "/").unwrap();
        let mount = h[0].mount.display().to_string();
        // A cgroup of its own below the root: a fresh host may have none.
        let name = format!("ckpt-watch-test-{}", std::process::id());
        let sub = root.dir.join(&name);
        std::fs::create_dir(&sub).expect("creating a cgroup (as root)");
        let via = cgroup_at(&h, &format!("/{name}/../{name}"));
        std::fs::remove_dir(&sub).expect("removing the test's cgroup");
        let via = via.unwrap();
        assert_eq!(
            (via.path.as_str(), via.level),
            (format!("/{name}").as_str(), 1)
        );
        let err = cgroup_at(&h, "/../../../../../../../../tmp")
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the cgroup hierarchy"), "{err}");
        let err = cgroup_at(&h, &format!("{mount}/../../../../../../../../tmp")).unwrap_err();
        assert!(matches!(err, CgroupError::Escapes { .. }), "{err}");
        let err = cgroup_at(&h, "/cgroup.procs").unwrap_err();
        assert!(matches!(err, CgroupError::NotADirectory(_)), "{err}");
    }

    #[test]
    fn this_hosts_root_cgroup_and_missing_paths() {
        let h = hierarchies().unwrap();
        let root = cgroup_at(&h, "/").unwrap();
        assert_eq!(root.level, 0);
        assert!(!root.pids().unwrap().is_empty());
        let err = cgroup_at(&h, "/no/such/ckpt-watch-cgroup").unwrap_err();
        assert!(err.to_string().contains("no cgroup /no/such"), "{err}");
    }
}
