//! Per-process facts from /proc that the iterators do not carry: names, parents, sessions,
//! tracers, namespaces.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no process with pid {0}: check the pid (ps -p {0})")]
    NoSuchProcess(u32),
    #[error("cannot read /proc/{pid}/{file}: {source}")]
    Io {
        pid: u32,
        file: &'static str,
        source: std::io::Error,
    },
}

/// What a process is, from `/proc/PID/status` (one read per process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub sid: u32,
    pub pgid: u32,
    pub tracer_pid: u32,
    /// Network and IPC namespace inodes, and whether they differ from ckpt-watch's own (which
    /// is where a checkpointer started beside it would run).
    pub netns: Option<u64>,
    pub ipcns: Option<u64>,
    /// Real, effective and saved uid, and gid (the checkpointer's rights over the task
    /// depend on them).
    #[serde(default)]
    pub uid: [u32; 3],
    #[serde(default)]
    pub gid: [u32; 3],
    /// Its cgroup paths from `/proc/PID/cgroup`: the v2 path first, then each v1 path once
    /// (hybrid hosts put containers in v1 controllers, units in `name=systemd`).
    #[serde(default)]
    pub cgroups: Vec<String>,
}

impl ProcInfo {
    pub fn session_leader(&self) -> bool {
        self.sid == self.pid
    }
}

/// The first three ids of a `Uid:`/`Gid:` line (real, effective, saved).
fn ids(value: &str) -> [u32; 3] {
    let mut ids = value.split_whitespace().map(|v| v.parse().unwrap_or(0));
    [(); 3].map(|()| ids.next().unwrap_or(0))
}

/// Parses the fields we use from `/proc/PID/status` text.
pub fn parse_status(pid: u32, text: &str) -> ProcInfo {
    let mut p = ProcInfo {
        pid,
        ..Default::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        // NSsid/NSpgid list one id per nested pid namespace; the first is ours.
        let first = || {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match key {
            "Name" => p.comm = value.to_string(),
            "PPid" => p.ppid = first(),
            "TracerPid" => p.tracer_pid = first(),
            "NSsid" => p.sid = first(),
            "NSpgid" => p.pgid = first(),
            "Uid" => p.uid = ids(value),
            "Gid" => p.gid = ids(value),
            _ => {}
        }
    }
    p
}

/// The distinct paths of a `/proc/PID/cgroup` text, the v2 (`0::`) path first.
pub fn parse_cgroups(text: &str) -> Vec<String> {
    let mut paths: Vec<(bool, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, _controllers, path) = (f.next()?, f.next()?, f.next()?);
            Some((id != "0", path))
        })
        .collect();
    paths.sort_by_key(|(v1, _)| *v1);
    let mut out: Vec<String> = Vec::new();
    for (_, p) in paths {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    out
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// The inode of `/proc/PID/ns/KIND` (`net:[4026531833]` → 4026531833).
pub fn ns_inode(pid: Option<u32>, kind: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => proc_path(p, &format!("ns/{kind}")),
        None => PathBuf::from(format!("/proc/self/ns/{kind}")),
    };
    let link = std::fs::read_link(path).ok()?;
    let s = link.to_str()?;
    s.split_once('[')?.1.trim_end_matches(']').parse().ok()
}

/// Reads one process. A pid that vanished is `NoSuchProcess`.
pub fn read_proc(pid: u32) -> Result<ProcInfo, ProcError> {
    let text = std::fs::read_to_string(proc_path(pid, "status")).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ProcError::NoSuchProcess(pid)
        } else {
            ProcError::Io {
                pid,
                file: "status",
                source,
            }
        }
    })?;
    let mut info = parse_status(pid, &text);
    // A process that exits between the two reads keeps no cgroup: it has nothing to dump.
    info.cgroups = std::fs::read_to_string(proc_path(pid, "cgroup"))
        .map(|t| parse_cgroups(&t))
        .unwrap_or_default();
    info.netns = ns_inode(Some(pid), "net");
    info.ipcns = ns_inode(Some(pid), "ipc");
    Ok(info)
}

/// Every pid in /proc.
pub fn all_pids() -> Result<Vec<u32>, ProcError> {
    let dir = std::fs::read_dir("/proc").map_err(|source| ProcError::Io {
        pid: 0,
        file: "",
        source,
    })?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// /proc facts of every process (a process that exits meanwhile is skipped).
pub fn all_procs() -> Result<std::collections::BTreeMap<u32, ProcInfo>, ProcError> {
    Ok(all_pids()?
        .into_iter()
        .filter_map(|pid| read_proc(pid).ok().map(|p| (pid, p)))
        .collect())
}

/// Every namespace inode of a process (for judging nsfs files).
pub fn all_ns_inodes(pid: u32) -> Vec<u64> {
    const KINDS: [&str; 10] = [
        "net",
        "ipc",
        "mnt",
        "pid",
        "pid_for_children",
        "user",
        "uts",
        "cgroup",
        "time",
        "time_for_children",
    ];
    KINDS
        .iter()
        .filter_map(|k| ns_inode(Some(pid), k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\tfdzoo\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPPid:\t7\n\
                    TracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n\
                    NSpid:\t42\nNSpgid:\t42\t1\nNSsid:\t40\t1\n";
        let p = parse_status(42, text);
        assert_eq!(
            (p.comm.as_str(), p.ppid, p.sid, p.pgid, p.tracer_pid),
            ("fdzoo", 7, 40, 42, 0)
        );
        assert!(!p.session_leader());
        assert_eq!((p.uid, p.gid), ([1000, 1001, 1002], [5, 5, 5]));
    }

    #[test]
    fn cgroup_paths_v2_first_once_each() {
        let hybrid = "12:pids:/docker/abc\n9:name=systemd:/system.slice/x.service\n3:memory:/docker/abc\n0::/system.slice/x.service\n";
        assert_eq!(
            parse_cgroups(hybrid),
            ["/system.slice/x.service", "/docker/abc"]
        );
        assert_eq!(parse_cgroups("0::/\n"), ["/"]);
        assert!(parse_cgroups("garbage").is_empty());
    }

    #[test]
    fn reads_this_process() {
        let me = read_proc(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.comm.is_empty());
        assert_eq!(me.netns, ns_inode(None, "net"));
    }

    #[test]
    fn missing_pid_is_a_clear_error() {
        let err = read_proc(u32::MAX - 1).unwrap_err();
        assert!(matches!(err, ProcError::NoSuchProcess(_)), "{err}");
        assert!(err.to_string().contains("no process with pid"));
    }
}
