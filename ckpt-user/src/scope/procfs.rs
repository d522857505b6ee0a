//! Per-process facts from /proc that the iterators do not carry: names, parents, sessions,
//! tracers, namespaces.

use std::io::Read as _;
use std::path::PathBuf;

use ckpt_common::{ProcFacts, proc_known};
use serde::{Deserialize, Serialize};

use crate::facts::{DevNum, Mapping};

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
    #[error(
        "pid {pid} is a kernel thread ({comm}): no checkpointer dumps kernel threads; give the pid of a user-space process"
    )]
    KernelThread { pid: u32, comm: String },
    #[error(
        "pid {tid} is a thread of process {tgid}, not a process: a checkpoint dumps whole processes; use --pid {tgid}"
    )]
    Thread { tid: u32, tgid: u32 },
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
    /// Its pid namespace inode (`/proc/PID/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidns: Option<u64>,
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
        if key == "Name" {
            p.comm = unescape_name(value.strip_prefix('\t').unwrap_or(value));
            continue;
        }
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

/// A process's name as it set it, from `status`'s `Name:`: fs/proc/array.c
/// `proc_task_name()` escapes a newline as `\n` and a backslash as `\\` (ESCAPE_SPACE |
/// ESCAPE_SPECIAL, narrowed to those two), and nothing else. What the kernel's `iter/task`
/// reports is the name itself; both read the same this way.
fn unescape_name(escaped: &str) -> String {
    let mut name = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            name.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => name.push('\n'),
            Some('\\') => name.push('\\'),
            // Never written by the kernel: kept as it stands.
            Some(other) => {
                name.push('\\');
                name.push(other);
            }
            None => name.push('\\'),
        }
    }
    name
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

/// The inode a `/proc/PID/ns/KIND` link names (`net:[4026531833]` → 4026531833).
fn ns_link_inode(link: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(link).ok()?;
    s.split_once('[')?.1.strip_suffix(']')?.parse().ok()
}

/// The inode of this process's namespace of `kind` (`/proc/self/ns/KIND`).
pub fn own_ns_inode(kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/ns/{kind}")).ok()?;
    ns_link_inode(link.as_os_str().as_encoded_bytes())
}

/// The inodes of `pid`'s namespaces of these kinds, all of one process: read through one
/// opened `/proc/PID`, so a pid reused between two reads cannot mix two processes. None for a
/// kind this kernel lacks, and for every kind of a process gone.
pub fn ns_inodes<const N: usize>(pid: u32, kinds: [&str; N]) -> [Option<u64>; N] {
    match ProcDir::open(pid) {
        Ok(dir) => kinds.map(|k| dir.ns_inode(k)),
        Err(_) => [None; N],
    }
}

fn io_error(pid: u32, file: &'static str, e: std::io::Error) -> ProcError {
    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
        ProcError::NoSuchProcess(pid)
    } else {
        ProcError::Io {
            pid,
            file,
            source: e,
        }
    }
}

/// Room a /proc text is read into at once. A /proc file tells no size, and reading it into
/// an empty buffer grows that from 32 bytes, a read(2) per doubling: six for a hybrid host's
/// ten cgroup lines and eight for a `status`, where two do (the text, then its end).
const TEXT_ROOM: usize = 4096;

/// `/proc/PID`, opened once: every file read through it is of the process opened, never of
/// one that took its pid after it exited (those reads fail as for a process gone), and each
/// read looks up one name, not the whole path.
struct ProcDir {
    pid: u32,
    dir: std::os::fd::OwnedFd,
}

impl ProcDir {
    fn open(pid: u32) -> Result<Self, ProcError> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(format!("/proc/{pid}"), flags, Mode::empty())
            .map_err(|e| io_error(pid, "", e.into()))?;
        Ok(Self { pid, dir })
    }

    /// A file of the process as text. Process names and cgroup paths are bytes that the
    /// process chooses (`prctl(PR_SET_NAME)`, `mkdir` in a delegated cgroup): invalid UTF-8 is
    /// replaced, never a reason to lose the process.
    fn read_text(&self, file: &'static str) -> Result<String, ProcError> {
        use rustix::fs::{Mode, OFlags};
        use std::io::Read;
        let fd = rustix::fs::openat(
            &self.dir,
            file,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(self.pid, file, e.into()))?;
        let mut bytes = Vec::with_capacity(TEXT_ROOM);
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(self.pid, file, e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn ns_inode(&self, kind: &str) -> Option<u64> {
        let link = rustix::fs::readlinkat(&self.dir, format!("ns/{kind}"), Vec::new()).ok()?;
        ns_link_inode(link.as_bytes())
    }
}

/// Reads one process. A pid that vanished is `NoSuchProcess`.
pub fn read_proc(pid: u32) -> Result<ProcInfo, ProcError> {
    let dir = ProcDir::open(pid)?;
    let mut info = parse_status(pid, &dir.read_text("status")?);
    // A process that exits between the two reads keeps no cgroup: it has nothing to dump.
    info.cgroups = dir
        .read_text("cgroup")
        .map(|t| parse_cgroups(&t))
        .unwrap_or_default();
    info.netns = dir.ns_inode("net");
    info.ipcns = dir.ns_inode("ipc");
    info.pidns = dir.ns_inode("pid");
    Ok(info)
}

/// A process as the kernel's `iter/task` told it (the facts of `status` and the `ns` links),
/// without its cgroups.
pub fn from_kernel(p: &ProcFacts) -> ProcInfo {
    let ns = |bit, inum: u32| (p.known & bit != 0).then_some(u64::from(inum));
    let comm = p.comm.split(|&b| b == 0).next().unwrap_or_default();
    ProcInfo {
        pid: p.pid,
        ppid: p.ppid,
        comm: String::from_utf8_lossy(comm).into_owned(),
        sid: p.sid,
        pgid: p.pgid,
        tracer_pid: p.tracer_pid,
        netns: ns(proc_known::NETNS, p.netns),
        ipcns: ns(proc_known::IPCNS, p.ipcns),
        pidns: ns(proc_known::PIDNS, p.pidns),
        uid: p.uid,
        gid: p.gid,
        cgroups: Vec::new(),
    }
}

/// The processes the kernel told, each with its cgroups from `/proc/PID/cgroup` (none for one
/// that has exited since: it has nothing left to dump).
pub fn with_cgroups(facts: &[ProcFacts]) -> std::collections::BTreeMap<u32, ProcInfo> {
    // One buffer for all, for each of a host's thousands of processes.
    let mut text = Vec::with_capacity(TEXT_ROOM);
    facts
        .iter()
        .map(|p| {
            let mut info = from_kernel(p);
            text.clear();
            info.cgroups = std::fs::File::open(proc_path(p.pid, "cgroup"))
                .and_then(|mut f| f.read_to_end(&mut text))
                .map(|_| parse_cgroups(&String::from_utf8_lossy(&text)))
                .unwrap_or_default();
            (p.pid, info)
        })
        .collect()
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

/// `root` and its descendants, found as CRIU collects the tree it dumps: from each thread's
/// `/proc/PID/task/TID/children`. Finding them through every process's parent meant reading
/// all of /proc, ~150 ms of a `--pid` scan beside 2,000 other processes. `None` when the
/// kernel has no children files (CONFIG_PROC_CHILDREN unset).
pub fn descendants(root: u32) -> Option<std::collections::BTreeSet<u32>> {
    if !std::path::Path::new("/proc/thread-self/children").exists() {
        return None;
    }
    let mut pids = std::collections::BTreeSet::from([root]);
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        // A process or thread that exited meanwhile has no children left to find.
        let Ok(tasks) = std::fs::read_dir(proc_path(pid, "task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if pids.insert(child) {
                    stack.push(child);
                }
            }
        }
    }
    Some(pids)
}

/// `root` and its descendants now: from /proc's children lists, else from every process's
/// parent.
pub fn tree_of(root: u32) -> Result<std::collections::BTreeSet<u32>, ProcError> {
    if let Some(tree) = descendants(root) {
        return Ok(tree);
    }
    let parents = all_procs()?.values().map(|p| (p.pid, p.ppid)).collect();
    Ok(crate::scope::subtree(root, &parents))
}

/// /proc facts of every process (a process that exits meanwhile is skipped).
pub fn all_procs() -> Result<std::collections::BTreeMap<u32, ProcInfo>, ProcError> {
    Ok(all_pids()?
        .into_iter()
        .filter_map(|pid| read_or_warn(pid).map(|p| (pid, p)))
        .collect())
}

/// One process, or `None` when it has exited; any other failure is logged, never dropped in
/// silence (its files are still judged, without its parent and session).
pub fn read_or_warn(pid: u32) -> Option<ProcInfo> {
    match read_proc(pid) {
        Ok(p) => Some(p),
        Err(ProcError::NoSuchProcess(_)) => None,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// What a pid names, from `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PidKind {
    Process,
    /// A thread of process `tgid` (its /proc directory exists, unlisted).
    Thread {
        tgid: u32,
    },
    KernelThread {
        comm: String,
    },
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The state letter and the flags of a `/proc/PID/stat` text. The comm in parentheses may hold
/// anything, ')' included: the fields follow the last one.
fn state_and_flags(stat: &str) -> Option<(&str, Option<u64>)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    Some((state, fields.nth(5).and_then(|f| f.parse().ok())))
}

/// Classifies a pid from its status and stat texts.
pub fn parse_kind(pid: u32, status: &str, stat: &str) -> PidKind {
    let info = parse_status(pid, status);
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(pid);
    let flags = state_and_flags(stat).and_then(|(_, f)| f).unwrap_or(0);
    if flags & PF_KTHREAD != 0 {
        PidKind::KernelThread { comm: info.comm }
    } else if tgid != pid {
        PidKind::Thread { tgid }
    } else {
        PidKind::Process
    }
}

/// `PF_EXITING` in the flags field of `/proc/PID/stat`: set as a task begins to exit, before
/// its files are closed.
const PF_EXITING: u64 = 0x4;

/// Whether `pid` names no live process now: gone, dead, or exiting (every thread of it).
/// A pid read in any other way (another process took it) is not exited.
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(proc_path(pid, "stat")) {
        Ok(stat) => parse_exited(&stat),
        Err(e) => matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)),
    }
}

/// [`exited`] from a `/proc/PID/stat` text: a zombie or dead task, or `PF_EXITING`.
pub fn parse_exited(stat: &str) -> bool {
    state_and_flags(stat).is_some_and(|(state, flags)| {
        matches!(state, "Z" | "X" | "x") || flags.is_some_and(|f| f & PF_EXITING != 0)
    })
}

/// The mappings of `pid` now that map the file `dev`:`ino` (`/proc/PID/maps`); none once the
/// process is gone.
pub fn mappings_of(pid: u32, dev: DevNum, ino: u64) -> Vec<Mapping> {
    std::fs::read_to_string(proc_path(pid, "maps"))
        .map(|maps| parse_mappings_of(&maps, dev, ino))
        .unwrap_or_default()
}

/// `VM_READ`, `VM_WRITE`, `VM_EXEC` and `VM_SHARED` (include/linux/mm.h), by the letters of a
/// maps line's permissions.
const VM_BY_PERM: [(char, u64); 4] = [('r', 0x1), ('w', 0x2), ('x', 0x4), ('s', 0x8)];

/// [`mappings_of`] from a maps text: `START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]`, the
/// numbers in hex but the inode.
pub fn parse_mappings_of(maps: &str, dev: DevNum, ino: u64) -> Vec<Mapping> {
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (range, perms, offset, device, inode) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            let (major, minor) = device.split_once(':')?;
            let same = inode.parse::<u64>().ok()? == ino
                && hex(major)? == u64::from(dev.major)
                && hex(minor)? == u64::from(dev.minor);
            if !same {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let vm_flags = VM_BY_PERM
                .iter()
                .filter(|(c, _)| perms.contains(*c))
                .fold(0, |flags, (_, bit)| flags | bit);
            Some(Mapping {
                start: hex(start)?,
                end: hex(end)?,
                vm_flags,
                pgoff: hex(offset)? / PAGE_SIZE,
            })
        })
        .collect()
}

/// The page size of x86_64, the only architecture the kernel side reads.
const PAGE_SIZE: u64 = 4096;

/// Checks that `pid` is a live user-space process, the only thing a checkpoint can start from.
pub fn ensure_process(pid: u32) -> Result<(), ProcError> {
    let dir = ProcDir::open(pid)?;
    let kind = parse_kind(pid, &dir.read_text("status")?, &dir.read_text("stat")?);
    match kind {
        PidKind::Process => Ok(()),
        PidKind::Thread { tgid } => Err(ProcError::Thread { tid: pid, tgid }),
        PidKind::KernelThread { comm } => Err(ProcError::KernelThread {
            pid,
            comm: crate::report::printable(&comm),
        }),
    }
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
    ns_inodes(pid, KINDS).into_iter().flatten().collect()
}

/// Open files on the host (`/proc/sys/fs/file-nr`): each counted once however many fds refer
/// to it.
pub fn open_files() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/file-nr")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many tasks (threads) the host has now: `/proc/loadavg`'s `RUNNING/TOTAL`.
pub fn tasks() -> Option<usize> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the lines of that device and inode, with their range, offset and sharing.
    #[test]
    fn mappings_of_one_file_are_read_from_a_maps_text() {
        let maps = "\
55915dfbc000-55915dfbd000 r--p 00000000 fe:00 20536689                   /usr/bin/x
7febb2a0e000-7febb2a0f000 rw-s 00000000 00:10 20536689                   anon_inode:[io_uring]
7febb2a10000-7febb2a12000 r--s 10000000 00:10 20536689                   anon_inode:[io_uring]
7febb2a20000-7febb2a21000 rw-s 00000000 00:10 20536690                   anon_inode:[io_uring]
7ffd1c9e5000-7ffd1ca06000 rw-p 00000000 00:00 0                          [stack]
";
        let anon = DevNum {
            major: 0,
            minor: 0x10,
        };
        let found = parse_mappings_of(maps, anon, 20536689);
        assert_eq!(
            found,
            [
                Mapping {
                    start: 0x7febb2a0e000,
                    end: 0x7febb2a0f000,
                    vm_flags: 0xb,
                    pgoff: 0,
                },
                Mapping {
                    start: 0x7febb2a10000,
                    end: 0x7febb2a12000,
                    vm_flags: 0x9,
                    pgoff: 0x10000,
                },
            ]
        );
        assert!(found.iter().all(Mapping::shared));
        assert!(parse_mappings_of(maps, anon, 1).is_empty());
    }

    /// A file this process maps shared is found by its device and inode in its own maps.
    #[test]
    fn mappings_of_a_file_this_process_maps_are_found() {
        use std::os::unix::fs::MetadataExt;
        let file = tempfile::tempfile().unwrap();
        file.set_len(8192).unwrap();
        let meta = file.metadata().unwrap();
        let dev = DevNum {
            major: libc::major(meta.dev()),
            minor: libc::minor(meta.dev()),
        };
        // SAFETY: a fresh mapping of a file this test owns, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let found = mappings_of(std::process::id(), dev, meta.ino());
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(addr, 8192) };
        let start = addr as u64;
        assert!(
            found
                .iter()
                .any(|m| m.start == start && m.end == start + 8192 && m.shared()),
            "{found:?}"
        );
        assert!(mappings_of(std::process::id(), dev, meta.ino()).is_empty());
    }

    /// Each open of /dev/null is a new open file, counted by the kernel.
    #[test]
    fn open_files_counts_the_hosts_open_files() {
        let held: Vec<std::fs::File> = (0..200)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let count = open_files().expect("/proc/sys/fs/file-nr parses");
        assert!(count >= held.len(), "{count} open files");
    }

    /// Threads are tasks: 50 more of this process's are counted.
    #[test]
    fn tasks_counts_the_hosts_threads() {
        let stop = std::sync::Barrier::new(51);
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| stop.wait());
            }
            let count = tasks().expect("/proc/loadavg parses");
            stop.wait();
            assert!(count > 50, "{count} tasks");
        });
    }

    /// The children files find the tree that every process's parent describes.
    #[test]
    fn descendants_are_the_tree_that_parents_describe() {
        use std::os::unix::process::CommandExt;
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & sh -c 'sleep 60 & wait' & wait"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let root = sh.id();
        // sh, its sleep, and a shell with a sleep of its own.
        let mut found = None;
        for _ in 0..200 {
            let tree = descendants(root).expect("this kernel has children files");
            if tree.len() == 4 {
                found = Some(tree);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let procs = all_procs().expect("/proc");
        let parents = procs.values().map(|p| (p.pid, p.ppid)).collect();
        let by_parents = crate::scope::subtree(root, &parents);
        // SAFETY: kills the process group this test started.
        unsafe { libc::kill(-(root as i32), libc::SIGKILL) };
        let _ = sh.wait();
        assert_eq!(found, Some(by_parents));
    }

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
        assert_eq!(me.netns, own_ns_inode("net"));
    }

    #[test]
    fn kernel_threads_and_threads_are_told_apart() {
        let status = "Name:\tkthreadd\nTgid:\t2\nPid:\t2\nPPid:\t0\n";
        let stat = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        assert_eq!(
            parse_kind(2, status, stat),
            PidKind::KernelThread {
                comm: "kthreadd".into()
            }
        );
        let status = "Name:\tworker\nTgid:\t40\nPid:\t41\n";
        // A comm holding ") S 1 2" cannot shift the fields.
        let stat = "41 (a) S 1 2) S 1 40 40 0 -1 4194368 0";
        assert_eq!(parse_kind(41, status, stat), PidKind::Thread { tgid: 40 });
        assert_eq!(
            parse_kind(40, "Tgid:\t40\n", "40 (x) S 1 40 40 0 -1 4194560"),
            PidKind::Process
        );
        assert!(ensure_process(std::process::id()).is_ok());
        assert!(matches!(
            ensure_process(2),
            Err(ProcError::KernelThread { pid: 2, .. })
        ));
    }

    #[test]
    fn exited_processes_are_told_from_live_ones() {
        // A comm holding ") Z" cannot shift the fields; 4194564 = PF_EXITING | ...
        assert!(!parse_exited("40 (a) Z 1) S 1 40 40 0 -1 4194560 0"));
        assert!(parse_exited("40 (a) S 1 40 40 0 -1 4194564 0"));
        assert!(parse_exited("40 (a) Z 1 40 40 0 -1 4194560 0"));
        assert!(!parse_exited("40 (a"), "unreadable: not taken as exited");
        assert!(!exited(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let zombie = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::read_to_string(proc_path(child.id(), "stat"))
                .is_ok_and(|s| state_and_flags(&s).is_some_and(|(state, _)| state == "Z"))
        });
        assert!(zombie, "`true` never exited");
        assert!(exited(child.id()), "a zombie");
        child.wait().unwrap();
        assert!(exited(child.id()), "reaped");
    }

    /// Names come back as the process set them.
    #[test]
    fn names_are_unescaped_as_the_kernel_escaped_them() {
        for (escaped, name) in [
            ("plain", "plain"),
            ("a\\nb", "a\nb"),
            ("a\\\\nb", "a\\nb"),
            ("  spaced ", "  spaced "),
            ("\u{1b}[2J", "\u{1b}[2J"),
            ("end\\", "end\\"),
            ("\\x", "\\x"),
        ] {
            assert_eq!(unescape_name(escaped), name, "{escaped:?}");
        }
        let status = "Name:\t  spaced a\\nb \nPPid:\t7\n";
        assert_eq!(parse_status(1, status).comm, "  spaced a\nb ");
    }

    #[test]
    fn a_name_that_is_not_utf8_keeps_the_process() {
        let child = crate::scope::tests::fork_named(c"\xff\xfe-ckpt");
        let pid = child as u32;
        let mut info = None;
        for _ in 0..200 {
            info = read_proc(pid).ok().filter(|p| p.comm.ends_with("-ckpt"));
            if info.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        let info = info.expect("the renamed child is read");
        assert_eq!(info.comm, "\u{fffd}\u{fffd}-ckpt");
        assert_eq!(info.ppid, std::process::id());
    }

    #[test]
    fn missing_pid_is_a_clear_error() {
        let err = read_proc(u32::MAX - 1).unwrap_err();
        assert!(matches!(err, ProcError::NoSuchProcess(_)), "{err}");
        assert!(err.to_string().contains("no process with pid"));
    }

    /// Once its process is reaped, an opened /proc directory reads as a process gone: what
    /// follows can never be of a process that took the pid since.
    #[test]
    fn an_opened_proc_dir_reads_only_its_own_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let dir = ProcDir::open(child.id()).unwrap();
        let pid_line = format!("\nPid:\t{}\n", child.id());
        assert!(dir.read_text("status").unwrap().contains(&pid_line));
        assert_eq!(dir.ns_inode("net"), own_ns_inode("net"));
        let kinds = ["net", "mnt"];
        assert_eq!(ns_inodes(child.id(), kinds), kinds.map(own_ns_inode));
        assert!(own_ns_inode("net").is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        let err = dir.read_text("status").unwrap_err();
        assert!(matches!(err, ProcError::NoSuchProcess(_)), "{err}");
        assert_eq!(dir.ns_inode("net"), None);
    }
}
