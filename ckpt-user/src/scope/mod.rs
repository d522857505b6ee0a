//! Which tasks are dumped together (one process, a tree, a cgroup, the whole host), and the facts
//! about a file that depend on that set: is its unix peer, pidfd target or pty master inside it?
//! [`cgroups`] and [`container_id`] find containers and their processes.

pub mod cgroups;
pub mod container_id;
pub mod file_locks;
pub mod fsnotify;
pub mod map_files;
pub mod procfs;
pub mod workload;

use std::collections::{BTreeSet, HashMap};

use crate::classify::names::AF_PACKET;
use crate::classify::{Context, Place, TaskFacts};
use crate::facts::{DevNum, FileFact, FileType};
pub use procfs::{ProcError, ProcInfo};

const PTMX: (u32, u32) = (5, 2);
pub(crate) const AF_UNIX: u16 = 1;

/// Who holds what across the snapshot, built once per scan. foldhash: a host scan looks a
/// unix socket's peer up here for each of tens of thousands of sockets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holders {
    sockets: HashMap<u64, Vec<u32>, foldhash::fast::RandomState>,
    pty_masters: HashMap<u32, Vec<u32>, foldhash::fast::RandomState>,
}

impl Holders {
    pub fn index(files: &[FileFact]) -> Self {
        let mut h = Holders::default();
        for f in files {
            h.add(f);
        }
        h
    }

    /// Whether other files are judged by who holds `f`: a unix socket (its peer) or a pty
    /// master (its slaves).
    pub fn indexes(f: &FileFact) -> bool {
        f.fd.is_some()
            && match f.file_type {
                // Packet sockets too: a mapped packet ring needs its socket's fd in the dump.
                FileType::Sock => f
                    .socket
                    .as_ref()
                    .is_some_and(|s| s.family == AF_UNIX || s.family == AF_PACKET),
                FileType::Chr => {
                    f.rdev.map(|d| (d.major, d.minor)) == Some(PTMX) && f.tty_index.is_some()
                }
                _ => false,
            }
    }

    fn slot(&mut self, f: &FileFact) -> Option<&mut Vec<u32>> {
        if !Self::indexes(f) {
            return None;
        }
        match f.file_type {
            FileType::Sock => Some(self.sockets.entry(f.ino).or_default()),
            _ => Some(self.pty_masters.entry(f.tty_index?).or_default()),
        }
    }

    /// Records that `f.pid` holds `f` (unix sockets and pty masters; anything else is ignored).
    pub fn add(&mut self, f: &FileFact) {
        if let Some(pids) = self.slot(f) {
            pids.push(f.pid);
        }
    }

    /// The processes holding unix (or packet) socket `ino`, once per fd.
    pub fn socket_holders(&self, ino: u64) -> &[u32] {
        self.sockets.get(&ino).map_or(&[], Vec::as_slice)
    }

    /// Forgets one holding of `f` by `f.pid`.
    pub fn remove(&mut self, f: &FileFact) {
        if let Some(pids) = self.slot(f)
            && let Some(i) = pids.iter().position(|&p| p == f.pid)
        {
            pids.swap_remove(i);
        }
    }
}

/// Who holds what, as the files of one process are judged in one dump: the host's [`Holders`],
/// and the unix sockets of that process. Most unix socket pairs have both ends in one process: a
/// peer among its own sockets is inside the dump if the dump takes the process, found without a
/// lookup in the host's map, which beside 40,000 sockets misses the cache each time.
#[derive(Debug)]
pub struct Holding<'a> {
    holders: &'a Holders,
    pid: u32,
    /// Whether the dump takes process `pid`.
    member: bool,
    /// Sorted; none when no process is told.
    sockets: Vec<u64>,
}

impl<'a> Holding<'a> {
    /// The host's holders alone.
    pub fn host(holders: &'a Holders) -> Self {
        Self {
            holders,
            pid: 0,
            member: false,
            sockets: Vec::new(),
        }
    }

    /// The host's holders, and the sockets among `files`, the facts of process `pid`, for
    /// judging them in the dump `set` (and no other).
    pub fn process(holders: &'a Holders, set: &DumpSet, pid: u32, files: &[&FileFact]) -> Self {
        let mut sockets: Vec<u64> = files
            .iter()
            .filter(|f| f.pid == pid && f.file_type == FileType::Sock && Holders::indexes(f))
            .map(|f| f.ino)
            .collect();
        sockets.sort_unstable();
        Self {
            holders,
            pid,
            member: set.members.contains(&pid),
            sockets,
        }
    }

    /// The process told (0: none).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the dump takes the process told.
    pub fn member(&self) -> bool {
        self.member
    }

    /// Whether `f`, a file of the process told, has the same [`DumpSet::context`] in every
    /// dump that takes the process and whose root has the same namespaces: it relates to no
    /// other task, or is a unix socket whose peer is closed, not yet accepted or held by the
    /// process itself (inside, if the dump takes the process).
    pub fn judged_alike(&self, f: &FileFact) -> bool {
        DumpSet::related_by_peer_alone(f)
            && f.socket
                .as_ref()
                .and_then(|s| s.peer.as_ref())
                .is_none_or(|p| p.closed || p.ino == 0 || self.holds_inside(f.pid, p.ino))
    }

    /// Where unix socket `ino`, the peer of a socket of process `pid`, is held, for the dump
    /// `set`.
    fn socket(&self, set: &DumpSet, pid: u32, ino: u64) -> Place {
        if self.holds_inside(pid, ino) {
            return Place::Inside;
        }
        set.place(self.holders.sockets.get(&ino))
    }

    /// Whether `ino` is a socket of `pid`, the process told, which the dump takes.
    fn holds_inside(&self, pid: u32, ino: u64) -> bool {
        self.member && pid == self.pid && self.sockets.binary_search(&ino).is_ok()
    }
}

/// Calls `each` with every fact among `which` (indices into `files`) that `wants` picks, and
/// its fd's `/proc/PID/fdinfo/FD` text. A fact whose fdinfo cannot be read (the process
/// exited, the fd was closed) is left as the kernel side reported it.
pub fn each_fdinfo(
    files: &mut [FileFact],
    which: &[usize],
    wants: fn(&FileFact) -> bool,
    mut each: impl FnMut(&mut FileFact, &str),
) {
    for &i in which {
        let f = &mut files[i];
        let Some(fd) = f.fd.filter(|_| wants(f)) else {
            continue;
        };
        if let Ok(info) = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", f.pid)) {
            each(f, &info);
        }
    }
}

/// One checkpoint: the tasks it dumps, and the processes whose files are judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpSet {
    pub root: u32,
    /// The processes judged and reported.
    pub pids: BTreeSet<u32>,
    /// Every task the checkpointer dumps with the root: `criu dump -t ROOT` always takes the
    /// whole subtree, so a peer held by a descendant is inside even when only the root is judged.
    pub members: BTreeSet<u32>,
}

/// A pid → children map from a pid → parent map.
pub fn children_of(parents: &HashMap<u32, u32>) -> HashMap<u32, Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    children
}

/// `root` and every descendant.
pub fn subtree(root: u32, parents: &HashMap<u32, u32>) -> BTreeSet<u32> {
    subtree_of(root, &children_of(parents))
}

fn subtree_of(root: u32, children: &HashMap<u32, Vec<u32>>) -> BTreeSet<u32> {
    let mut pids = BTreeSet::from([root]);
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if pids.insert(c) {
                stack.push(c);
            }
        }
    }
    pids
}

/// The device of the kernel's internal shmem mount, which holds every memfd, SysV segment and
/// shared anonymous mapping: a memfd of ckpt-watch's own sits on it. CRIU tells such files from
/// files on a tmpfs a task mounted by this device alone (criu/kerndat.c `kdat.shmem_dev`,
/// criu/memfd.c `is_memfd`); their names (`memfd:x`, `SYSV00000000`) are anyone's to choose.
fn internal_shm_dev() -> Option<DevNum> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: a NUL-terminated name and valid flags; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"ckpt-watch-shmem".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let dev = std::os::unix::fs::MetadataExt::dev(&file.metadata().ok()?);
    Some(DevNum {
        major: libc::major(dev),
        minor: libc::minor(dev),
    })
}

/// A pty slave's (`/dev/pts/N`) index.
fn pty_slave_index(f: &FileFact) -> Option<u32> {
    match (f.rdev, f.tty_index) {
        (Some(d), Some(i)) if d.major == 136 => Some(i),
        _ => None,
    }
}

impl DumpSet {
    /// The root alone, dumped alone.
    pub fn single(pid: u32) -> Self {
        let only = BTreeSet::from([pid]);
        Self {
            root: pid,
            pids: only.clone(),
            members: only,
        }
    }

    /// The root's own files, judged as the dump of its subtree that CRIU would make.
    pub fn process(root: u32, parents: &HashMap<u32, u32>) -> Self {
        Self {
            root,
            pids: BTreeSet::from([root]),
            members: subtree(root, parents),
        }
    }

    /// Like [`DumpSet::process`], from a maintained pid → children map.
    pub fn process_in(root: u32, children: &HashMap<u32, Vec<u32>>) -> Self {
        Self {
            root,
            pids: BTreeSet::from([root]),
            members: subtree_of(root, children),
        }
    }

    /// The root and every descendant, all judged.
    pub fn tree(root: u32, parents: &HashMap<u32, u32>) -> Self {
        let members = subtree(root, parents);
        Self {
            root,
            pids: members.clone(),
            members,
        }
    }

    /// Like [`DumpSet::tree`], from a maintained pid → children map.
    pub fn tree_in(root: u32, children: &HashMap<u32, Vec<u32>>) -> Self {
        let members = subtree_of(root, children);
        Self {
            root,
            pids: members.clone(),
            members,
        }
    }

    fn place(&self, holders: Option<&Vec<u32>>) -> Place {
        match holders {
            Some(h) if h.iter().any(|p| self.members.contains(p)) => Place::Inside,
            _ => Place::Outside,
        }
    }

    /// For a pty slave (`/dev/pts/N`): its index, and whether a task of the set holds its
    /// master.
    pub fn tty_master(&self, f: &FileFact, holders: &Holders) -> Option<(u32, Place)> {
        pty_slave_index(f).map(|i| (i, self.place(holders.pty_masters.get(&i))))
    }

    /// Whether `f` relates to no other task (no socket peer, pidfd target, pty master, mapped
    /// socket's fd or namespace), so that its [`Self::context`] is the same in every dump whose
    /// root has the same namespaces.
    pub fn unrelated(f: &FileFact) -> bool {
        f.socket.as_ref().is_none_or(|s| s.peer.is_none()) && Self::related_by_peer_alone(f)
    }

    /// Whether `f` relates to no other task but, if a socket, through its peer.
    fn related_by_peer_alone(f: &FileFact) -> bool {
        f.pidfd_target.is_none()
            && pty_slave_index(f).is_none()
            && !(f.mapping.is_some() && f.file_type == FileType::Sock)
            && f.fs_type != "nsfs"
    }

    /// The context every file of a dump shares: whether its root has namespaces of its own.
    pub fn root_context(root: &ProcInfo, own: &Own) -> Context {
        Context {
            own_netns: root.netns.is_some() && root.netns != own.netns,
            own_ipcns: root.ipcns.is_some() && root.ipcns != own.ipcns,
            ..Context::default()
        }
    }

    /// The context of `f` in any dump whose root has `root`'s namespaces: the root's, and
    /// whether `f` is on the kernel's internal shmem mount. A file that relates to no other task
    /// ([`Self::unrelated`]) has no other.
    pub fn unrelated_context(f: &FileFact, root: &ProcInfo, own: &Own) -> Context {
        Context {
            internal_shm: own.shm_dev.map(|d| d == f.dev),
            ..Self::root_context(root, own)
        }
    }

    /// The set-dependent facts of one file of a task in this set (but for `external_ptys`,
    /// which counts across the set's files: [`Self::tty_master`] of each).
    pub fn context(
        &self,
        f: &FileFact,
        holding: &Holding,
        root: &ProcInfo,
        own: &Own,
        ns_of_set: &dyn Fn() -> BTreeSet<u64>,
    ) -> Context {
        let of_root = Self::unrelated_context(f, root, own);
        if Self::unrelated(f) {
            return of_root;
        }
        let peer = f.socket.as_ref().and_then(|s| s.peer.as_ref()).map(|p| {
            if p.closed {
                Place::None
            } else if p.ino == 0 {
                // Not yet accepted: CRIU finds the listener among the netns' listening sockets'
                // in-flight connections (criu/sk-unix.c lookup_unix_listen_icons()) and dumps
                // the client pointed at it, whoever holds the listener (fdzoo
                // unix_stream_inflight_in_tree and _ext both dump with CRIU 4.2.1).
                Place::None
            } else {
                holding.socket(self, f.pid, p.ino)
            }
        });
        let tty_master = self.tty_master(f, holding.holders).map(|(_, place)| place);
        Context {
            peer,
            pidfd_target: f.pidfd_target.map(|t| {
                if self.members.contains(&t) {
                    Place::Inside
                } else {
                    Place::Outside
                }
            }),
            tty_master,
            external_ptys: 0,
            // criu/sk-packet.c dump_socket_map(): the ring's socket must be one of the dump's fds.
            socket_fd: (f.mapping.is_some() && f.file_type == FileType::Sock)
                .then(|| self.place(holding.holders.sockets.get(&f.ino))),
            ns_member: (f.fs_type == "nsfs").then(|| ns_of_set().contains(&f.ino)),
            ..of_root
        }
    }

    /// The task checks of one task of the dump. CRIU checks every task for a tracer (it must
    /// seize each one) but only the root for leading its session (criu/pstree.c), so other
    /// tasks pass that check.
    /// `root` is the dump's root task: CRIU dumps one pid namespace, the root's
    /// (criu/namespaces.c: `Can't dump nested pid namespace`).
    /// What the task rules judge of `task` by its /proc facts (its locks are its files').
    pub fn task_facts(&self, task: &ProcInfo, root: &ProcInfo) -> TaskFacts {
        TaskFacts {
            session_leader: task.pid != self.root || task.session_leader(),
            traced: task.tracer_pid != 0,
            nested_pidns: task.pidns.is_some() && root.pidns.is_some() && task.pidns != root.pidns,
            locked_fds: Vec::new(),
        }
    }
}

/// ckpt-watch's own namespaces: a checkpointer run beside it dumps another namespace only
/// when the task's differs. And the device of the kernel's internal shmem mount, as a
/// checkpointer finds it from its own side.
#[derive(Clone, Debug, Default)]
pub struct Own {
    pub netns: Option<u64>,
    pub ipcns: Option<u64>,
    pub shm_dev: Option<DevNum>,
}

impl Own {
    pub fn current() -> Self {
        Self {
            netns: procfs::own_ns_inode("net"),
            ipcns: procfs::own_ns_inode("ipc"),
            shm_dev: internal_shm_dev(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::facts::{DevNum, SocketFact, UnixPeer};

    /// Forks a child that names itself `name` (NUL-terminated, as `PR_SET_NAME` takes it) and
    /// pauses; the caller kills and reaps it.
    pub(crate) fn fork_named(name: &std::ffi::CStr) -> libc::pid_t {
        // SAFETY: the child only makes async-signal-safe calls, then is killed.
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe {
                libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                loop {
                    libc::pause();
                }
            }
        }
        child
    }

    pub(crate) fn file(pid: u32, ft: FileType, ino: u64) -> FileFact {
        FileFact {
            pid,
            fd: Some(3),
            mapping: None,
            f_op: 0,
            file_type: ft,
            mode: 0,
            rdev: None,
            dev: DevNum { major: 0, minor: 0 },
            ino,
            size: 0,
            allocated: 0,
            nlink: 1,
            fs_type: crate::facts::Text::default(),
            fs_magic: 0,
            name: crate::facts::Text::default(),
            f_flags: 0,
            unlinked: false,
            mount_visible: None,
            mnt_id: None,
            locked: None,
            locks_unwalked: false,
            socket: None,
            pidfd_target: None,
            pidfd_dead: None,
            tty_index: None,
            bpf_map_type: None,
            inode_known: true,
            watches: None,
        }
    }

    /// A process that leads its own session, as a dump's root does.
    fn leader(pid: u32) -> ProcInfo {
        ProcInfo {
            pid,
            sid: pid,
            ..Default::default()
        }
    }

    pub(crate) fn unix_with_peer(pid: u32, ino: u64, peer: u64) -> FileFact {
        let mut f = file(pid, FileType::Sock, ino);
        f.socket = Some(Box::new(SocketFact {
            family: 1,
            sk_type: 1,
            protocol: 0,
            state: 1,
            backlog: None,
            peer: Some(UnixPeer {
                ino: peer,
                closed: false,
                named: false,
            }),
            peer_known: true,
            filter: None,
            udp_corked: None,
            wqueue: None,
            rqueue: None,
            unwatched: false,
        }));
        f
    }

    #[test]
    fn tree_collects_descendants_only() {
        let parents = HashMap::from([(2, 1), (3, 2), (4, 3), (5, 1), (6, 5)]);
        let set = DumpSet::tree(2, &parents);
        assert_eq!(set.pids, BTreeSet::from([2, 3, 4]));
        let one = DumpSet::process(2, &parents);
        assert_eq!((one.pids, one.members), (BTreeSet::from([2]), set.members));
    }

    #[test]
    fn unix_peer_inside_and_outside() {
        let files = vec![unix_with_peer(10, 100, 101), unix_with_peer(11, 101, 100)];
        let holders = Holders::index(&files);
        let holding = Holding::host(&holders);
        let root = leader(10);
        let none = || BTreeSet::new();
        let alone = DumpSet::single(10);
        let ctx = alone.context(&files[0], &holding, &root, &Own::default(), &none);
        assert_eq!(ctx.peer, Some(Place::Outside));
        let both = DumpSet::tree(10, &HashMap::from([(11, 10)]));
        let ctx = both.context(&files[0], &holding, &root, &Own::default(), &none);
        assert_eq!(ctx.peer, Some(Place::Inside));
    }

    /// A pair whose ends one process holds is inside by what that process holds, and only in a
    /// dump that takes the process: in another dump, or for another process's file, the context
    /// is what the host's map of holders says.
    #[test]
    fn a_pair_within_one_process_is_inside_by_its_own_sockets() {
        let pair = vec![unix_with_peer(10, 100, 101), unix_with_peer(10, 101, 100)];
        let stranger = unix_with_peer(12, 200, 101);
        let root = leader(10);
        let none = || BTreeSet::new();
        let mut all = pair.clone();
        all.push(stranger.clone());
        let refs: Vec<&FileFact> = all.iter().collect();
        let (holders, nobody) = (Holders::index(&all), Holders::default());
        let peer = |set: &DumpSet, f: &FileFact, holding: &Holding| {
            set.context(f, holding, &root, &Own::default(), &none).peer
        };
        let (ten, twelve) = (DumpSet::single(10), DumpSet::single(12));
        // Found without the map, which here knows nobody.
        let own_only = |set: &DumpSet| Holding::process(&nobody, set, 10, &refs);
        assert_eq!(peer(&ten, &pair[0], &own_only(&ten)), Some(Place::Inside));
        // A dump that does not take process 10 finds nothing in what 10 holds.
        assert_eq!(
            peer(&twelve, &pair[0], &own_only(&twelve)),
            Some(Place::Outside)
        );
        // Process 12's peer is process 10's socket: 12's dump does not take 10.
        let of_ten = |set: &DumpSet| Holding::process(&holders, set, 10, &refs);
        assert_eq!(
            peer(&twelve, &stranger, &of_ten(&twelve)),
            Some(Place::Outside)
        );
        for f in &all {
            for set in [&ten, &twelve] {
                assert_eq!(
                    peer(set, f, &of_ten(set)),
                    peer(set, f, &Holding::host(&holders)),
                    "{f:?}"
                );
            }
        }
    }

    /// A file judged alike has one context in every dump that takes its process (with the
    /// same root namespaces): a pair within one process, a closed or unaccepted peer, no peer.
    /// A peer in another process is not, nor a process's own pair in a dump without it.
    #[test]
    fn what_is_judged_alike_has_one_context_in_every_dump_that_takes_it() {
        let mut closed = unix_with_peer(10, 102, 7);
        closed
            .socket
            .as_mut()
            .unwrap()
            .peer
            .as_mut()
            .unwrap()
            .closed = true;
        let files = vec![
            unix_with_peer(10, 100, 101),
            unix_with_peer(10, 101, 100),
            closed,
            unix_with_peer(10, 103, 0),
            unix_with_peer(10, 104, 200),
            file(10, FileType::Reg, 105),
            unix_with_peer(12, 200, 104),
        ];
        let refs: Vec<&FileFact> = files.iter().collect();
        let holders = Holders::index(&files);
        let root = leader(10);
        let none = || BTreeSet::new();
        let alone = DumpSet::single(10);
        let both = DumpSet::tree(10, &HashMap::from([(12, 10)]));
        let twelve = DumpSet::single(12);
        let holding = |set: &DumpSet| Holding::process(&holders, set, 10, &refs);
        let alike = |set: &DumpSet| -> Vec<u64> {
            let holding = holding(set);
            (files.iter().filter(|f| f.pid == 10))
                .filter(|f| holding.judged_alike(f))
                .map(|f| f.ino)
                .collect()
        };
        assert_eq!(alike(&alone), [100, 101, 102, 103, 105]);
        assert_eq!(alike(&both), [100, 101, 102, 103, 105]);
        // Not a member: its own pair is outside this dump, by what the map says.
        assert_eq!(alike(&twelve), [102, 103, 105]);
        let context = |set: &DumpSet, f: &FileFact| {
            set.context(f, &holding(set), &root, &Own::default(), &none)
        };
        for f in files
            .iter()
            .filter(|f| f.pid == 10 && holding(&alone).judged_alike(f))
        {
            assert_eq!(context(&alone, f), context(&both, f), "{f:?}");
        }
        // The file left out is indeed judged differently: its peer's holder is in one dump only.
        assert_ne!(context(&alone, &files[4]), context(&both, &files[4]));
    }

    #[test]
    fn pty_slave_master_and_pidfd_targets() {
        let mut master = file(20, FileType::Chr, 1);
        master.rdev = Some(DevNum { major: 5, minor: 2 });
        master.tty_index = Some(3);
        let mut slave = file(21, FileType::Chr, 2);
        slave.rdev = Some(DevNum {
            major: 136,
            minor: 3,
        });
        slave.tty_index = Some(3);
        let mut pidfd = file(21, FileType::None, 3);
        pidfd.pidfd_target = Some(20);
        let holders = Holders::index(&[master, slave.clone()]);
        let holding = Holding::host(&holders);
        let root = ProcInfo {
            pid: 21,
            ..Default::default()
        };
        let none = || BTreeSet::new();
        let set = DumpSet::single(21);
        let ctx = set.context(&slave, &holding, &root, &Own::default(), &none);
        assert_eq!(ctx.tty_master, Some(Place::Outside));
        assert_eq!(
            set.context(&pidfd, &holding, &root, &Own::default(), &none)
                .pidfd_target,
            Some(Place::Outside)
        );
        let both = DumpSet::tree(20, &HashMap::from([(21, 20)]));
        assert_eq!(
            both.context(&slave, &holding, &root, &Own::default(), &none)
                .tty_master,
            Some(Place::Inside)
        );
        assert_eq!(
            both.context(&pidfd, &holding, &root, &Own::default(), &none)
                .pidfd_target,
            Some(Place::Inside)
        );
    }

    #[test]
    fn own_namespaces_compare_with_ours() {
        let own = Own {
            netns: Some(1),
            ipcns: Some(2),
            shm_dev: Some(DevNum { major: 0, minor: 1 }),
        };
        let root = ProcInfo {
            pid: 1,
            netns: Some(9),
            ipcns: Some(2),
            ..Default::default()
        };
        let mut f = file(1, FileType::Reg, 5);
        let context = |f: &FileFact, own: &Own| {
            let nobody = Holders::default();
            DumpSet::single(1).context(f, &Holding::host(&nobody), &root, own, &BTreeSet::new)
        };
        let ctx = context(&f, &own);
        assert!(ctx.own_netns && !ctx.own_ipcns);
        assert_eq!(ctx.internal_shm, Some(false));
        f.dev = DevNum { major: 0, minor: 1 };
        assert_eq!(context(&f, &own).internal_shm, Some(true));
        assert_eq!(context(&f, &Own::default()).internal_shm, None);
    }

    /// The internal shmem device, found from a memfd, is the one a shared anonymous mapping
    /// shows in /proc/self/maps: how CRIU finds it (criu/kerndat.c).
    #[test]
    fn the_internal_shmem_device_is_that_of_shared_anonymous_memory() {
        let shm = Own::current().shm_dev.expect("memfd_create works here");
        // SAFETY: a fresh anonymous mapping, unmapped below; nothing else refers to it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        // SAFETY: the mapping made above, of that length.
        unsafe { libc::munmap(addr, 4096) };
        let start = format!("{:x}-", addr as usize);
        let line = maps.lines().find(|l| l.starts_with(&start)).unwrap();
        let dev = line.split_whitespace().nth(3).unwrap();
        assert_eq!(
            dev,
            format!("{:02x}:{:02x}", shm.major, shm.minor),
            "{line}"
        );
    }

    #[test]
    fn only_the_root_must_lead_its_session() {
        let set = DumpSet::tree(1, &HashMap::from([(2, 1)]));
        let child = ProcInfo {
            pid: 2,
            sid: 1,
            tracer_pid: 9,
            ..Default::default()
        };
        let root = ProcInfo {
            pid: 1,
            sid: 0,
            ..Default::default()
        };
        let facts = set.task_facts(&child, &root);
        assert!(facts.session_leader && facts.traced && !facts.nested_pidns);
        assert!(!set.task_facts(&root, &root).session_leader);
        let nested = ProcInfo {
            pidns: Some(7),
            ..child.clone()
        };
        let root = ProcInfo {
            pidns: Some(6),
            ..root
        };
        assert!(set.task_facts(&nested, &root).nested_pidns);
    }
}
