//! Container ids in cgroup paths, the way each engine writes them: systemd scopes
//! (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`),
//! systemd cgroupsPath leftovers (`…:cri-containerd:<id>`), cgroupfs layouts (`/docker/<id>`,
//! `/kubepods/<qos>/pod<uid>/<id>`), LXC (`lxc.payload.<name>`, `/lxc/<name>`), and the
//! Kubernetes pod UID in either spelling (`pod<uid-with-dashes>`, `…-pod<uid_with_underscores>.slice`).
//! Pure text: no file system here, so every layout is unit-tested.

use std::fmt;

use serde::Serialize;

/// Which engine wrote the cgroup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    #[serde(rename = "cri-o")]
    Crio,
    Podman,
    Lxc,
    /// A bare id under a Kubernetes pod (cgroupfs driver): containerd or CRI-O, the path does
    /// not say which.
    Cri,
}

impl Runtime {
    pub const ALL: [Runtime; 6] = [
        Self::Docker,
        Self::Containerd,
        Self::Crio,
        Self::Podman,
        Self::Lxc,
        Self::Cri,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::Crio => "cri-o",
            Self::Podman => "podman",
            Self::Lxc => "lxc",
            Self::Cri => "cri",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container named by a cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerName {
    pub runtime: Runtime,
    /// 64 lowercase hex digits (an LXC container's name for LXC).
    pub id: String,
    /// The Kubernetes pod UID (with dashes) when the path is under a pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Ids are shown by their first 12 digits, as `docker ps` does.
pub const SHORT_ID: usize = 12;

impl ContainerName {
    pub fn short_id(&self) -> &str {
        if self.runtime == Runtime::Lxc {
            &self.id
        } else {
            &self.id[..SHORT_ID.min(self.id.len())]
        }
    }
}

fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Engines' own helpers live in scopes beside the container's; they are not containers.
const HELPER_PREFIXES: [&str; 2] = ["crio-conmon-", "libpod-conmon-"];

/// `<prefix><id>.scope` and friends, by the scope prefix each engine uses.
const SCOPE_PREFIXES: [(&str, Runtime); 4] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::Crio),
    ("libpod-", Runtime::Podman),
];

/// systemd cgroupsPath `slice:prefix:id` spellings that reach the file system unconverted.
const COLON_FORMS: [(&str, Runtime); 3] = [
    (":cri-containerd:", Runtime::Containerd),
    (":crio:", Runtime::Crio),
    (":docker:", Runtime::Docker),
];

/// The container one path component names, given its parent component.
fn component(name: &str, parent: Option<&str>) -> Option<(Runtime, String)> {
    if HELPER_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    for (prefix, runtime) in SCOPE_PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix).filter(|id| is_full_id(id)) {
            return Some((runtime, id.to_string()));
        }
    }
    for (infix, runtime) in COLON_FORMS {
        if let Some((_, id)) = name.split_once(infix).filter(|(_, id)| is_full_id(id)) {
            return Some((runtime, id.to_string()));
        }
    }
    if let Some(lxc) = name.strip_prefix("lxc.payload.").filter(|n| !n.is_empty()) {
        return Some((Runtime::Lxc, lxc.to_string()));
    }
    match parent {
        Some("docker") if is_full_id(name) => Some((Runtime::Docker, name.to_string())),
        Some(p) if is_full_id(name) && pod_uid(p).is_some() => {
            Some((Runtime::Cri, name.to_string()))
        }
        // LXC's cgroupfs layout before 4.0: /lxc/<name>.
        Some("lxc") if !name.starts_with("lxc.") => Some((Runtime::Lxc, name.to_string())),
        _ => None,
    }
}

/// The pod UID a component names: `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid_>.slice`
/// (also as the slice part of a `slice:prefix:id` name).
pub fn pod_uid(name: &str) -> Option<String> {
    let name = name.split(':').next().unwrap_or(name);
    let raw = match name.strip_suffix(".slice") {
        Some(slice) if slice.starts_with("kubepods") => slice.rsplit_once("-pod")?.1,
        Some(_) => return None,
        None => name.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let groups: Vec<usize> = uid.split('-').map(str::len).collect();
    let hex = uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
    (hex && groups == [8, 4, 4, 4, 12]).then(|| uid.to_ascii_lowercase())
}

/// The innermost container a cgroup path (`/system.slice/docker-<id>.scope/...`) belongs to,
/// with the path of the directory that names it.
pub fn from_path(path: &str) -> Option<(ContainerName, String)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod = parts.iter().find_map(|p| pod_uid(p));
    (0..parts.len()).rev().find_map(|i| {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        component(parts[i], parent).map(|(runtime, id)| {
            let name = ContainerName {
                runtime,
                id,
                pod: pod.clone(),
            };
            (name, format!("/{}", parts[..=i].join("/")))
        })
    })
}

/// The container a directory names by itself (its own name, read with its parent's), for a
/// walk of the cgroup tree that records each container once, at the directory naming it.
pub fn from_dir(path: &str) -> Option<ContainerName> {
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let name = parts.next()?;
    let (runtime, id) = component(name, parts.next())?;
    Some(ContainerName {
        runtime,
        id,
        pod: path.split('/').find_map(pod_uid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2a1b9c0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
    const UID: &str = "0b6e3c2a-1d4f-4a5b-9c8d-7e6f5a4b3c2d";

    fn parse(path: &str) -> (Runtime, String, Option<String>, String) {
        let (n, dir) = from_path(path).unwrap_or_else(|| panic!("no container in {path}"));
        (n.runtime, n.id, n.pod, dir)
    }

    #[test]
    fn docker_systemd_and_cgroupfs() {
        let p = format!("/system.slice/docker-{ID}.scope");
        assert_eq!(parse(&p), (Runtime::Docker, ID.into(), None, p.clone()));
        let p = format!("/docker/{ID}");
        assert_eq!(parse(&p), (Runtime::Docker, ID.into(), None, p.clone()));
    }

    #[test]
    fn containerd_scope_and_colon_form() {
        let uid_ = UID.replace('-', "_");
        let slice = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice"
        );
        let p = format!("{slice}/cri-containerd-{ID}.scope");
        assert_eq!(
            parse(&p),
            (Runtime::Containerd, ID.into(), Some(UID.into()), p.clone())
        );
        let p = format!(
            "/system.slice/containerd.service/kubepods-pod{uid_}.slice:cri-containerd:{ID}"
        );
        assert_eq!(
            parse(&p),
            (Runtime::Containerd, ID.into(), Some(UID.into()), p.clone())
        );
    }

    #[test]
    fn crio_scope_but_not_conmon() {
        let p = format!("/kubepods.slice/crio-{ID}.scope");
        assert_eq!(parse(&p).0, Runtime::Crio);
        assert!(from_path(&format!("/kubepods.slice/crio-conmon-{ID}.scope")).is_none());
    }

    #[test]
    fn podman_scope_with_inner_container_dir() {
        let scope = format!("/machine.slice/libpod-{ID}.scope");
        let (runtime, id, _, dir) = parse(&format!("{scope}/container"));
        assert_eq!((runtime, id, dir), (Runtime::Podman, ID.into(), scope));
        assert!(from_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")).is_none());
    }

    #[test]
    fn kubepods_cgroupfs_with_dashed_pod_uid() {
        let p = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(
            parse(&p),
            (Runtime::Cri, ID.into(), Some(UID.into()), p.clone())
        );
    }

    #[test]
    fn lxc_payload_and_legacy() {
        let (runtime, id, _, _) = parse("/lxc.payload.web1/init.scope");
        assert_eq!((runtime, id.as_str()), (Runtime::Lxc, "web1"));
        assert_eq!(parse("/lxc/web2").1, "web2");
        assert!(from_path("/lxc.monitor.web1").is_none());
    }

    #[test]
    fn not_containers() {
        for p in [
            "/",
            "/system.slice/ssh.service",
            "/user.slice/user-0.slice/session-1.scope",
            "/docker/short",
            "/process_api/547788b885bf5d508f119252a0871c7a",
            &format!("/other/{ID}"),
            &format!("/system.slice/docker-{}.scope", &ID[..63]),
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
        ] {
            assert!(from_path(p).is_none(), "{p}");
        }
    }

    #[test]
    fn directory_names_itself_only() {
        let scope = format!("/system.slice/docker-{ID}.scope");
        assert_eq!(from_dir(&scope).unwrap().id, ID);
        assert!(from_dir(&format!("{scope}/init")).is_none());
        assert_eq!(
            from_dir(&format!("/docker/{ID}")).unwrap().runtime,
            Runtime::Docker
        );
    }

    #[test]
    fn short_ids() {
        let n = from_dir(&format!("/docker/{ID}")).unwrap();
        assert_eq!(n.short_id(), "3f4e2a1b9c0d");
        assert_eq!(from_dir("/lxc.payload.web1").unwrap().short_id(), "web1");
    }

    #[test]
    fn pod_uid_forms() {
        assert_eq!(pod_uid(&format!("pod{UID}")).as_deref(), Some(UID));
        let underscored = format!("kubepods-burstable-pod{}.slice", UID.replace('-', "_"));
        assert_eq!(pod_uid(&underscored).as_deref(), Some(UID));
        assert_eq!(pod_uid("podman"), None);
        assert_eq!(pod_uid("kubepods-burstable.slice"), None);
    }
}
