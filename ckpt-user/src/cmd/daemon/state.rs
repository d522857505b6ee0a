//! The daemon's picture of the host, kept true by events and reconciled with full snapshots.
//! Pure: events go in; the changes the kernel maps need come out at once, and alerts come out
//! of [`State::settle`], which judges the workloads the events touched, per workload (the
//! dump its root implies, DESIGN.md §7) and only once a change has held. A saved stream of
//! events can be replayed through it without a kernel.

mod peers;
mod settle;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use ckpt_common::{FileFacts, N_OPS_MEMBERS, TaskEvent, flags, task_event};

use crate::aggregate::{DumpReport, Rules, World};
use crate::checkpointer::given::Given;
use crate::classify::{self, Assume, Classifier, KindRules, Profile, Verdict, names};
use crate::facts::{FileFact, FileType, Mapping};
use crate::resolve::OpsTables;
use crate::scope::container_id::{self, ContainerName, Runtime};
use crate::scope::workload::{self, Key, Kind, Names};
use crate::scope::{DumpSet, Holders, Holding, Own, ProcInfo, children_of};
use crate::snapshot::Snapshot;
use peers::Peers;
pub use settle::{Change, Decider, RateLimit, WorkloadRef};
use settle::{Observed, Tracked};

/// `(tgid << 32) | fd`, the key of the kernel's TRACKED map.
pub fn fd_key(pid: u32, fd: u32) -> u64 {
    ((pid as u64) << 32) | fd as u64
}

/// What the kernel maps must learn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelUpdate {
    /// Report the close of this fd.
    Track(u64),
    Untrack(u64),
    /// Drop files of this ops table (with this file type and, maybe, device number) in the
    /// kernel.
    AlwaysOk(u64, ckpt_common::OkFops),
    /// Drop sockets of this kind in the kernel.
    AlwaysOkSocket(ckpt_common::OkSock),
    /// Drop TCP sockets of this kind while in these states (a mask of `1 << state`); the
    /// kernel reports each when it leaves them.
    OkSocketStates(ckpt_common::OkSock, u32),
    /// Forget every always-ok entry (the profile changed).
    ForgetAlwaysOk,
}

/// What one event or reconcile produced for the kernel maps.
#[derive(Debug, Default)]
pub struct Outcome {
    pub kernel: Vec<KernelUpdate>,
}

/// What one settle produced: alerts to write, and those over the rate limit.
#[derive(Debug, Default)]
pub struct Settled {
    pub alerts: Vec<Change>,
    pub suppressed: Vec<Change>,
}

/// When alerts are raised.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long a workload's new verdict must hold.
    pub settle: Duration,
    pub max_alerts_per_minute: u32,
}

/// One workload as the daemon sees it now (`/workloads`, metrics).
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkloadStatus {
    #[serde(flatten)]
    pub workload: WorkloadRef,
    pub members: usize,
    /// The verdict that held for the settle time (None: not yet).
    pub verdict: Option<Verdict>,
    /// The latest judgement, settled or not.
    pub current: Verdict,
}

/// The options in force for a workload: by the runtime of its container, else the default
/// engine's.
#[derive(Clone, Debug, Default)]
pub struct GivenBy {
    pub default: Given,
    pub runtimes: Vec<(Runtime, Given)>,
}

impl GivenBy {
    pub fn of(&self, runtime: Option<Runtime>) -> &Given {
        runtime
            .and_then(|r| self.runtimes.iter().find(|(x, _)| *x == r))
            .map_or(&self.default, |(_, g)| g)
    }
}

/// How far up the tree a change is looked for in dumps around it.
const MAX_DEPTH: usize = 256;

/// The kernel's TCP states, `TCP_ESTABLISHED` (1) to `TCP_NEW_SYN_RECV` (12).
const TCP_STATES: std::ops::RangeInclusive<u16> = 1..=12;

/// Socket families a process can map: AF_PACKET's rings and AF_XDP's umem. A TCP socket can be
/// mapped too (zero-copy receive), but so can one ok in its state, never kept: its mapping is
/// known from rescans only, as every mapping of a file ok as an fd.
const MAPPABLE_SOCKETS: [u16; 2] = [names::AF_PACKET, names::AF_XDP];

/// What one always-ok analysis stands for: an ops table and file type, and a socket's kind.
type AnalysisKey = (u64, FileType, Option<(u16, u16, u16)>);

/// What an analysis offers the kernel for a kind of file.
#[derive(Clone, Debug, PartialEq)]
enum Proof {
    Nothing,
    /// The table's files (of this type, and device) are always ok.
    Table(u64, ckpt_common::OkFops),
    /// Sockets of the kind are ok whatever their state.
    Socket(ckpt_common::OkSock),
    /// TCP sockets of the kind are ok in these states (`1 << state`).
    States(ckpt_common::OkSock, u32),
}

/// The kernel's key for a socket's kind.
fn ok_sock(s: &crate::facts::SocketFact) -> ckpt_common::OkSock {
    ckpt_common::OkSock {
        family: s.family,
        sk_type: s.sk_type,
        protocol: s.protocol,
        _pad: 0,
    }
}

/// One analysis: the file it was made on, and what it offered.
struct Analysis {
    sample: Box<FileFact>,
    proof: Proof,
}

pub struct State {
    /// Files worth keeping: those not `ok`, and those other files' relations are judged by
    /// (unix sockets, pty masters). Boxed: a tree node of unboxed facts (11 slots of 184
    /// bytes) is mostly empty for a process keeping a few fds, and every unix socket is kept.
    files: HashMap<u32, BTreeMap<u32, Box<FileFact>>>,
    mappings: HashMap<u32, Vec<FileFact>>,
    procs: HashMap<u32, ProcInfo>,
    /// Forked processes known so far by the facts their parent had at the fork, which a fork
    /// copies (session, cgroups, namespaces, credentials). Each is read from /proc before
    /// anything of its own is judged: at its first install, its exec, or the next settle,
    /// whichever comes first. Most children of a fork exec or exit before a settle, so a
    /// fork+exec costs one read of /proc, and a fork that exits at once none.
    unread: HashSet<u32>,
    children: HashMap<u32, Vec<u32>>,
    holders: Holders,
    /// The workload of each process, and each workload's processes.
    keys: HashMap<u32, Key>,
    members: HashMap<Key, BTreeSet<u32>>,
    /// Workloads an event may have changed since they were last judged.
    dirty: HashSet<Key>,
    /// Processes whose workloads, and their ancestors', are all in `dirty` already: an fd
    /// storm touches one process thousands of times between two settles, and the walk up its
    /// tree hashes a key per ancestor. Emptied with `dirty`, and whenever a process's parent
    /// or workload changes.
    touched: HashSet<u32>,
    workloads: HashMap<Key, Tracked>,
    /// Workloads whose latest verdict has not settled.
    pending: BTreeSet<Key>,
    /// Container names (from the engines' state files), once per container.
    container_names: HashMap<String, String>,
    /// Per container: its own options when its runc config file is not runc.conf. Read once
    /// per container between rescans.
    container_given: HashMap<String, Option<Given>>,
    settings: Settings,
    limit: RateLimit,
    /// Kept fds whose closes the kernel reports.
    tracked: HashSet<u64>,
    /// fds the kernel reported and so tracks, but not kept: their closes come back and are
    /// ignored. Untracking them at once could hit the next fd of the same number, which the
    /// kernel may already have reported; they are untracked when their process exits.
    reported: BTreeSet<u64>,
    pub ops_members: HashMap<u64, [u64; N_OPS_MEMBERS]>,
    ops: OpsTables,
    /// The rules each kind of installed file could match: judged with `ops` and the profile,
    /// emptied when either changes.
    kind_rules: KindRules,
    /// Ops tables (and socket kinds) already analysed for [`classify::always_ok`].
    analysed: HashMap<AnalysisKey, Analysis>,
    /// The TCP states each kind of socket was last offered to the kernel as ok in.
    ok_states: BTreeMap<ckpt_common::OkSock, u32>,
    own: Own,
    peers: Peers,
    /// When the last rescan began, on the events' clock (CLOCK_MONOTONIC ns): an event from
    /// before it may already be in the rescan's snapshot, or be overtaken by it.
    rescanned_at: u64,
}

impl World for State {
    fn files_of(&self, pid: u32) -> Vec<&FileFact> {
        let fds = self.files.get(&pid).into_iter().flat_map(|m| m.values());
        fds.map(|f| &**f)
            .chain(self.mappings.get(&pid).into_iter().flatten())
            .collect()
    }

    fn proc_info(&self, pid: u32) -> Option<&ProcInfo> {
        self.procs.get(&pid)
    }

    fn holders(&self) -> &Holders {
        &self.holders
    }
}

/// Everything judging needs besides the state.
pub struct Judging<'a> {
    pub profile: &'a Profile,
    pub given: &'a GivenBy,
    /// The options of a container whose runc config file is not runc.conf (`Judge::annotated`).
    pub annotated: &'a dyn Fn(&ContainerName) -> Option<Given>,
    /// What /proc says of a process now; None once it is gone.
    pub read_proc: &'a dyn Fn(u32) -> Option<ProcInfo>,
    /// Whether /proc shows the process gone, dead, or exiting now: not another one on its pid.
    pub exited: &'a dyn Fn(u32) -> bool,
    /// The mappings of a process now that map a file's device and inode; None when they were
    /// not looked for.
    pub mapped: &'a dyn Fn(u32, &FileFact) -> Option<Vec<Mapping>>,
}

/// The container a workload's processes run in, from the first that names one.
fn container_of<'a>(procs: impl Iterator<Item = &'a ProcInfo>) -> Option<ContainerName> {
    procs
        .flat_map(|p| &p.cgroups)
        .find_map(|c| container_id::from_path(c))
        .map(|(c, _)| c)
}

impl State {
    pub fn new(settings: Settings) -> Self {
        Self {
            files: HashMap::new(),
            mappings: HashMap::new(),
            procs: HashMap::new(),
            unread: HashSet::new(),
            children: HashMap::new(),
            holders: Holders::default(),
            keys: HashMap::new(),
            members: HashMap::new(),
            dirty: HashSet::new(),
            touched: HashSet::new(),
            workloads: HashMap::new(),
            pending: BTreeSet::new(),
            container_names: HashMap::new(),
            container_given: HashMap::new(),
            settings,
            limit: RateLimit::new(settings.max_alerts_per_minute),
            tracked: HashSet::new(),
            reported: BTreeSet::new(),
            ops_members: HashMap::new(),
            ops: OpsTables::default(),
            kind_rules: KindRules::default(),
            analysed: HashMap::new(),
            ok_states: BTreeMap::new(),
            own: Own::default(),
            peers: Peers::default(),
            rescanned_at: 0,
        }
    }

    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    /// Processes by the settled verdict of their workload.
    pub fn processes_by_verdict(&self) -> BTreeMap<Verdict, usize> {
        let mut m = BTreeMap::new();
        for (key, w) in &self.workloads {
            if let Some(v) = w.settled {
                *m.entry(v).or_default() += self.members.get(key).map_or(0, BTreeSet::len);
            }
        }
        m
    }

    /// Every workload, in key order.
    pub fn workloads(&self) -> Vec<WorkloadStatus> {
        let mut all: Vec<(&Key, &Tracked)> = self.workloads.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
            .map(|(key, w)| WorkloadStatus {
                workload: w.last.workload.clone(),
                members: self.members.get(key).map_or(0, BTreeSet::len),
                verdict: w.settled,
                current: w.last.verdict,
            })
            .collect()
    }

    /// Records what /proc says of a process, moving it between workloads if its session or
    /// cgroup changed; the workloads it leaves and joins are judged again.
    fn set_proc(&mut self, info: ProcInfo) {
        let pid = info.pid;
        self.touched.clear();
        let key = workload::key_of(&info);
        if self.keys.get(&pid) != key.as_ref() {
            self.touch(pid);
            self.leave(pid);
            if let Some(key) = key {
                self.members.entry(key.clone()).or_default().insert(pid);
                self.keys.insert(pid, key);
            }
        }
        self.procs.insert(pid, info);
        self.touch(pid);
    }

    /// Replaces what is known of a process (a fork's copy included) with what /proc says now;
    /// a process gone keeps what it had until its exit is seen.
    fn read(&mut self, j: &Judging, pid: u32) {
        self.unread.remove(&pid);
        if let Some(info) = (j.read_proc)(pid) {
            self.set_proc(info);
        }
    }

    fn leave(&mut self, pid: u32) {
        self.touched.clear();
        if let Some(old) = self.keys.remove(&pid)
            && let Some(m) = self.members.get_mut(&old)
        {
            m.remove(&pid);
            if m.is_empty() {
                self.members.remove(&old);
            }
        }
    }

    /// Marks for judging every workload whose dump may hold `pid`: its own, and those of its
    /// ancestors (a dump is its root's whole subtree).
    fn touch(&mut self, pid: u32) {
        if !self.touched.insert(pid) {
            return;
        }
        let mut p = pid;
        for _ in 0..MAX_DEPTH {
            if let Some(key) = self.keys.get(&p) {
                self.dirty.insert(key.clone());
            }
            match self.procs.get(&p).map(|i| i.ppid) {
                Some(pp) if pp != p && pp != 0 => p = pp,
                _ => break,
            }
        }
    }

    fn parent_of(&self, pid: u32) -> Option<u32> {
        self.procs.get(&pid).map(|p| p.ppid)
    }

    /// The dump the workload's root implies, from the live tree.
    fn dump_of(&self, key: &Key) -> Option<DumpSet> {
        let pids = self.members.get(key)?;
        workload::dump_in(key, pids, &|p| self.parent_of(p), &self.children)
    }

    /// Whether `pid`'s own workload judges it in its own dump.
    fn judged_at_home(&self, pid: u32) -> bool {
        self.keys
            .get(&pid)
            .and_then(|k| self.dump_of(k))
            .is_some_and(|d| d.members.contains(&pid))
    }

    fn rules<'a, 'p>(&'a self, classifier: &'a Classifier<'p>, given: &'a Given) -> Rules<'a, 'p> {
        Rules {
            classifier,
            given,
            own: self.own.clone(),
            describe: &crate::aggregate::describe_facts,
            keep_ok: false,
            kept: None,
        }
    }

    /// Judges one workload as the dump its root implies; None when it has no process left.
    fn observe(&mut self, j: &Judging, names: &Names, key: &Key) -> Option<Observed> {
        let dump = self.dump_of(key)?;
        let members = self.members.get(key)?;
        let container = match key.kind {
            Kind::Container => container_of(members.iter().filter_map(|p| self.procs.get(p))),
            _ => None,
        };
        if let Some(c) = &container
            && !self.container_given.contains_key(&c.id)
        {
            self.container_given.insert(c.id.clone(), (j.annotated)(c));
        }
        let given = match &container {
            Some(c) => self.container_given[&c.id]
                .as_ref()
                .unwrap_or_else(|| j.given.of(Some(c.runtime))),
            None => j.given.of(None),
        };
        let classifier = Classifier::new(j.profile, &self.ops);
        let report = self.rules(&classifier, given).dump(self, &dump);
        let name = match (key.kind, &container) {
            (Kind::Container, Some(c)) => self
                .container_names
                .entry(c.id.clone())
                .or_insert_with(|| names.container(c))
                .clone(),
            (Kind::Unit, _) => workload::unit_of(&key.id)
                .map(|(_, n)| n)
                .unwrap_or_default(),
            _ => self
                .procs
                .get(&dump.root)
                .map(|p| p.comm.clone())
                .unwrap_or_default(),
        };
        let decider = self.decider(key, &report);
        let nested = decider
            .as_ref()
            .is_some_and(|d| self.keys.get(&d.pid) != Some(key) && self.judged_at_home(d.pid));
        Some(Observed {
            workload: WorkloadRef {
                kind: key.kind,
                id: key.id.clone(),
                name,
                root: dump.root,
            },
            verdict: report.verdict,
            decider,
            nested,
            options: report.options,
        })
    }

    /// The member and file (or check) that decide a dump's verdict: a member of the workload
    /// itself before one of a workload nested in it, the root first, then by pid; its fds
    /// before its mappings before checks of the task.
    fn decider(&self, key: &Key, report: &DumpReport) -> Option<Decider> {
        if report.verdict == Verdict::Ok {
            return None;
        }
        let worst = report
            .processes
            .iter()
            .filter(|p| p.verdict == report.verdict)
            .min_by_key(|p| {
                (
                    self.keys.get(&p.pid) != Some(key),
                    p.pid != report.root,
                    p.pid,
                )
            })?;
        let file = worst
            .files
            .iter()
            .chain(&worst.mappings)
            .find(|f| f.verdict == worst.verdict);
        let (fd, kind, what, reason) = match file {
            Some(f) => (f.fd, f.kind.clone(), f.what.clone(), f.reason.clone()),
            None => {
                let t = worst.task.iter().find(|t| t.verdict == worst.verdict)?;
                (None, t.kind.clone(), String::new(), t.reason.clone())
            }
        };
        Some(Decider {
            pid: worst.pid,
            comm: worst.comm.clone(),
            fd,
            kind,
            what,
            reason,
        })
    }

    /// Judges the workloads events touched, then alerts on those whose new verdict has held
    /// for the settle time, within the rate limit. `now` is any monotonic clock.
    pub fn settle(&mut self, j: &Judging, names: &Names, now: Duration) -> Settled {
        // Read first: a process that left its parent's session or cgroup moves, and both
        // workloads are judged.
        for pid in std::mem::take(&mut self.unread) {
            self.read(j, pid);
        }
        let dirty: Vec<Key> = std::mem::take(&mut self.dirty).into_iter().collect();
        self.touched.clear();
        for key in dirty {
            match self.observe(j, names, &key) {
                Some(o) => {
                    let waits = match self.workloads.get_mut(&key) {
                        Some(w) => w.observe(o, now),
                        None => {
                            self.workloads.insert(key.clone(), Tracked::new(o, now));
                            true
                        }
                    };
                    if waits {
                        self.pending.insert(key);
                    } else {
                        self.pending.remove(&key);
                    }
                }
                // A workload gone has nothing left to dump: it raises nothing.
                None => {
                    self.workloads.remove(&key);
                    self.pending.remove(&key);
                }
            }
        }
        let held: Vec<Key> = self
            .pending
            .iter()
            .filter(|k| {
                self.workloads
                    .get(k)
                    .is_some_and(|w| w.held(now, self.settings.settle))
            })
            .cloned()
            .collect();
        let mut out = Settled::default();
        for key in held {
            self.pending.remove(&key);
            let Some(change) = self.workloads.get_mut(&key).and_then(Tracked::settle) else {
                continue;
            };
            if self.limit.take(now) {
                out.alerts.push(change);
            } else {
                out.suppressed.push(change);
            }
        }
        out
    }

    /// Whether a file must be kept: it is not ok whatever options are in force (they differ by
    /// engine, and only ever turn `needs` into `ok`), other files are judged by it, or its task
    /// is: a lock on a file of any kind needs --file-locks (the task rule `holds-file-locks`).
    fn worth_keeping(&self, j: &Judging, f: &FileFact) -> bool {
        if Holders::indexes(f) || (f.mapping.is_none() && f.locked == Some(true)) {
            return true;
        }
        let unknown = ProcInfo::default();
        let root = self.procs.get(&f.pid).unwrap_or(&unknown);
        // Most installs relate to no other task: no dump set is built for them (two sets
        // allocated and freed per install, ~5 % of a TCP storm's CPU). Only a pidfd's target and
        // a pty's master are looked up among the dumped tasks: the subtree walk is not paid for
        // every other install.
        let ctx = if DumpSet::unrelated(f) {
            DumpSet::unrelated_context(f, root, &self.own)
        } else {
            let set = if f.pidfd_target.is_some() || f.tty_index.is_some() {
                DumpSet::process_in(f.pid, &self.children)
            } else {
                DumpSet::single(f.pid)
            };
            set.context(
                f,
                &Holding::host(&self.holders),
                root,
                &self.own,
                &BTreeSet::new,
            )
        };
        self.kind_rules
            .verdict(j.profile, f, self.ops.get(&f.f_op), &ctx)
            != Verdict::Ok
    }

    /// Offers `f`'s ops table (or, for a socket, its kind) to the kernel's always-ok filter,
    /// once per table and file type (and socket kind).
    fn analyse(&mut self, j: &Judging, f: &FileFact, out: &mut Outcome) {
        let socket = f.socket.as_ref().map(|s| (s.family, s.sk_type, s.protocol));
        let key = (f.f_op, f.file_type, socket);
        if f.fd.is_none() || self.analysed.contains_key(&key) {
            return;
        }
        let proof = self.proof(j, f);
        self.offer(&proof, out);
        let sample = Box::new(f.clone());
        self.analysed.insert(key, Analysis { sample, proof });
    }

    /// What the kernel may drop of `f`'s kind, judged with its ops table as named now.
    fn proof(&self, j: &Judging, f: &FileFact) -> Proof {
        let Some(rdev_bound) =
            classify::always_ok(j.profile, f, self.ops.get(&f.f_op), Assume::Nothing)
        else {
            return self.ok_states(j, f);
        };
        match (f.file_type, &f.socket) {
            // Sockets share one ops table: only their kind can be dropped, never the table.
            (FileType::Sock, Some(s)) => Proof::Socket(ok_sock(s)),
            (FileType::Sock, None) => Proof::Nothing,
            _ => Proof::Table(f.f_op, f.ok_fops(rdev_bound, false)),
        }
    }

    fn offer(&mut self, proof: &Proof, out: &mut Outcome) {
        match *proof {
            Proof::Nothing => {}
            Proof::Table(f_op, ok) => out.kernel.push(KernelUpdate::AlwaysOk(f_op, ok)),
            Proof::Socket(kind) => out.kernel.push(KernelUpdate::AlwaysOkSocket(kind)),
            // Offered only when they differ from the states last offered: the kernel's map
            // changes, and the sockets dropped or watched by the old states must be found
            // again.
            Proof::States(kind, mask) => {
                if self.ok_states.insert(kind, mask).unwrap_or(0) != mask {
                    out.kernel.push(KernelUpdate::OkSocketStates(kind, mask));
                }
            }
        }
    }

    /// Offers the TCP kinds' ok states judged on new sockets ([`FileFact::new_socket`]),
    /// before any socket of theirs is seen: the daemon's first scan then watches the idle
    /// sockets it finds, with no second scan to do it. The first socket of each kind seen
    /// offers them again judged with its ops table, unknown here: the same states, unless a
    /// rule names the table.
    pub fn offer_socket_kinds(&mut self, j: &Judging) -> Outcome {
        let mut out = Outcome::default();
        for family in [names::AF_INET, names::AF_INET6] {
            let f = FileFact::new_socket(family, names::SOCK_STREAM, names::IPPROTO_TCP);
            let proof = self.ok_states(j, &f);
            self.offer(&proof, &mut out);
        }
        out
    }

    /// A TCP socket kind, ok or not by its state: the states a new socket of the kind (as
    /// `socket(2)` leaves it, with `f`'s ops table and process) is judged ok in. The kernel
    /// drops new sockets of the kind in those states and reports them when they leave; what
    /// comes to a socket without a state change (a filter, queued bytes, connections in flight)
    /// is the rescan's, as for every file judged ok when installed.
    fn ok_states(&self, j: &Judging, f: &FileFact) -> Proof {
        let Some(s) = f.socket.as_ref().filter(|s| {
            matches!(s.family, names::AF_INET | names::AF_INET6)
                && s.sk_type == names::SOCK_STREAM
                && s.protocol == names::IPPROTO_TCP
        }) else {
            return Proof::Nothing;
        };
        let new = FileFact {
            pid: f.pid,
            f_op: f.f_op,
            ..FileFact::new_socket(s.family, s.sk_type, s.protocol)
        };
        let mask = TCP_STATES
            .filter(|&state| {
                let mut sample = new.clone();
                if let Some(sock) = sample.socket.as_mut() {
                    sock.state = state;
                }
                !self.worth_keeping(j, &sample)
            })
            .fold(0u32, |m, state| m | 1 << state);
        Proof::States(ok_sock(s), mask)
    }

    /// Judges a new fd of `f.pid` and keeps it if it matters. `kernel_tracks`: the kernel
    /// reported the fd and tracks it already; an inherited fd is tracked here. True when the
    /// process's kept files changed.
    fn insert_fd(
        &mut self,
        j: &Judging,
        f: FileFact,
        kernel_tracks: bool,
        out: &mut Outcome,
    ) -> bool {
        let (pid, fd) = (f.pid, f.fd.expect("an fd"));
        let key = fd_key(pid, fd);
        let replaced = self.forget_fd(pid, fd).is_some();
        self.analyse(j, &f, out);
        if self.worth_keeping(j, &f) {
            let mut f = f;
            let peer = self.peers.kept(&mut f);
            self.holders.add(&f);
            self.reported.remove(&key);
            if self.tracked.insert(key) && !kernel_tracks {
                out.kernel.push(KernelUpdate::Track(key));
            }
            let ino = f.ino;
            self.files.entry(pid).or_default().insert(fd, Box::new(f));
            if let Some(peer) = peer {
                self.peer_held(peer, ino);
            }
            return true;
        }
        if kernel_tracks {
            self.tracked.remove(&key);
            self.reported.insert(key);
        } else if self.tracked.remove(&key) {
            out.kernel.push(KernelUpdate::Untrack(key));
        }
        replaced
    }

    /// Stops the kernel tracking `pid`'s reported fds in `fds` (its fd numbers).
    fn untrack_reported(
        &mut self,
        pid: u32,
        fds: std::ops::RangeInclusive<u32>,
        out: &mut Outcome,
    ) {
        let range = fd_key(pid, *fds.start())..=fd_key(pid, *fds.end());
        let keys: Vec<u64> = self.reported.range(range).copied().collect();
        for key in keys {
            self.reported.remove(&key);
            out.kernel.push(KernelUpdate::Untrack(key));
        }
    }

    /// Drops a kept fd from the state, keeping its kernel tracking; the file it held, if any.
    fn forget_fd(&mut self, pid: u32, fd: u32) -> Option<Box<FileFact>> {
        let old = self.files.get_mut(&pid).and_then(|m| m.remove(&fd));
        if let Some(old) = &old {
            self.holders.remove(old);
            if self.holders.socket_holders(old.ino).is_empty() {
                self.peers.gone(old);
            }
        }
        old
    }

    /// A kept file whose fd `closed` was closed stays judged as the mappings of it the process
    /// still has: a mapping outlives its fd (an io_uring's rings, a perf buffer), and CRIU
    /// dumps every mapping. Other mappings are known from rescans, and from the kernel for
    /// sockets, which it reports as they are mapped.
    fn keep_mapped(&mut self, j: &Judging, closed: &FileFact) {
        let mappable = closed
            .socket
            .as_ref()
            .is_none_or(|s| MAPPABLE_SOCKETS.contains(&s.family));
        if mappable {
            self.add_mappings(j, closed);
        }
    }

    /// Keeps the mappings of `file` its process has now, those not ok.
    fn add_mappings(&mut self, j: &Judging, file: &FileFact) {
        let pid = file.pid;
        let maps = (j.mapped)(pid, file).unwrap_or_else(|| vec![Mapping::unknown()]);
        for m in maps {
            let f = file.as_mapping(m);
            let known = self
                .mappings
                .get(&pid)
                .is_some_and(|maps| maps.iter().any(|k| k.mapping == f.mapping));
            if !known && self.worth_keeping(j, &f) {
                self.mappings.entry(pid).or_default().push(f);
            }
        }
    }

    /// Unix socket `peer` is the peer of kept socket `by`: those of its holders that had it in
    /// flight learn their peer, and all are judged again, for where `by` is held decides
    /// their verdict.
    fn peer_held(&mut self, peer: u64, by: u64) {
        let pids = self.holders.socket_holders(peer).to_vec();
        for pid in pids {
            if let Some(files) = self.files.get_mut(&pid) {
                for f in files.values_mut().filter(|f| f.ino == peer) {
                    Peers::accepted(f, by);
                }
            }
            self.touch(pid);
        }
    }

    /// Drops a kept fd and its kernel tracking; the file it held, if any.
    fn remove_fd(&mut self, pid: u32, fd: u32, out: &mut Outcome) -> Option<Box<FileFact>> {
        let removed = self.forget_fd(pid, fd);
        if self.tracked.remove(&fd_key(pid, fd)) {
            out.kernel.push(KernelUpdate::Untrack(fd_key(pid, fd)));
        }
        removed
    }

    /// The profile or the options changed: every always-ok judgement is void, every workload
    /// is judged again, the TCP kinds' ok states are offered as the new profile has them.
    pub fn profile_changed(&mut self, j: &Judging) -> Outcome {
        self.kind_rules.clear();
        self.container_given.clear();
        self.dirty.extend(self.members.keys().cloned());
        let forget = self.forget_always_ok();
        let mut out = self.offer_socket_kinds(j);
        out.kernel.insert(0, forget);
        out
    }

    /// Voids every always-ok judgement offered to the kernel.
    fn forget_always_ok(&mut self) -> KernelUpdate {
        self.analysed.clear();
        self.ok_states.clear();
        KernelUpdate::ForgetAlwaysOk
    }

    /// Replaces everything with a fresh snapshot, begun at `taken_at` on the events' clock;
    /// every workload is judged again. Container names are read again too (`names` is fresh).
    pub fn reconcile(&mut self, j: &Judging, snap: Snapshot, taken_at: u64) -> Outcome {
        let mut out = Outcome::default();
        self.rescanned_at = taken_at;
        let tracked_before = std::mem::take(&mut self.tracked);
        self.files.clear();
        self.mappings.clear();
        self.holders = Holders::default();
        self.own = snap.own();
        self.dirty.extend(self.members.keys().cloned());
        self.procs.clear();
        self.touched.clear();
        self.unread.clear();
        self.keys.clear();
        self.members.clear();
        self.container_names.clear();
        self.container_given.clear();
        let parents = snap.procs.values().map(|p| (p.pid, p.ppid)).collect();
        self.children = children_of(&parents);
        for info in snap.procs.into_values() {
            if let Some(key) = workload::key_of(&info) {
                self.members
                    .entry(key.clone())
                    .or_default()
                    .insert(info.pid);
                self.dirty.insert(key.clone());
                self.keys.insert(info.pid, key);
            }
            self.procs.insert(info.pid, info);
        }
        self.ops_members.extend(snap.ops);
        // Holders first: whether a unix peer or a pty master is inside depends on every one.
        // Found in a pass of their own, not partitioned out: that would copy every file of the
        // host while the snapshot still holds them, doubling the start's peak.
        for f in snap.files.iter().filter(|f| Holders::indexes(f)) {
            self.holders.add(f);
        }
        // The few kept, in place; the host's other files are freed before the state grows by
        // the kept ones, or both would add up to the start's peak.
        let mut kept = snap.files;
        kept.retain(|f| {
            if f.fd.is_some() {
                self.analyse(j, f, &mut out);
            }
            self.worth_keeping(j, f)
        });
        kept.shrink_to_fit();
        self.peers.clear();
        let mut held = Vec::new();
        for mut f in kept {
            match f.fd {
                Some(fd) => {
                    if let Some(peer) = self.peers.kept(&mut f) {
                        held.push((peer, f.ino));
                    }
                    self.tracked.insert(fd_key(f.pid, fd));
                    self.files.entry(f.pid).or_default().insert(fd, Box::new(f));
                }
                None => self.mappings.entry(f.pid).or_default().push(f),
            }
        }
        // A client read before its server accepted it, the accepted end after.
        for (peer, by) in held {
            self.peer_held(peer, by);
        }
        // Reported fds of processes gone (their exits lost) or now kept.
        let stale: Vec<u64> = self
            .reported
            .iter()
            .copied()
            .filter(|k| !self.procs.contains_key(&((k >> 32) as u32)) || self.tracked.contains(k))
            .collect();
        for key in stale {
            self.reported.remove(&key);
            if !self.tracked.contains(&key) {
                out.kernel.push(KernelUpdate::Untrack(key));
            }
        }
        out.kernel.extend(
            tracked_before
                .difference(&self.tracked)
                .map(|k| KernelUpdate::Untrack(*k)),
        );
        out.kernel.extend(
            self.tracked
                .difference(&tracked_before)
                .map(|k| KernelUpdate::Track(*k)),
        );
        out
    }

    /// A new ops table: remember its members (the caller resolves names before files of it
    /// are judged).
    pub fn ops_seen(&mut self, f_op: u64, members: [u64; N_OPS_MEMBERS]) {
        self.ops_members.insert(f_op, members);
    }

    /// Ops tables named since: files of them are judged by these names from now on. A table
    /// whose files were judged before it was named (kallsyms could not be read at its first
    /// sight, or a rescan found its files while the event naming it waited in the ring) is
    /// analysed again. A proof it gave the kernel that no longer holds can only be taken back
    /// with every other: then each kind is offered again as its files come.
    pub fn learn_ops(&mut self, j: &Judging, tables: OpsTables) -> Outcome {
        let renamed: HashSet<u64> = tables
            .iter()
            .filter(|(f_op, id)| self.ops.get(f_op) != Some(id))
            .map(|(f_op, _)| *f_op)
            .collect();
        self.ops.extend(tables);
        let mut out = Outcome::default();
        if renamed.is_empty() {
            return out;
        }
        self.kind_rules.clear();
        tracing::debug!(tables = renamed.len(), "ops tables named anew");
        let mut changed = Vec::new();
        for (key, analysis) in &self.analysed {
            if renamed.contains(&key.0) {
                let proof = self.proof(j, &analysis.sample);
                if proof != analysis.proof {
                    changed.push((*key, proof));
                }
            }
        }
        let void = changed.iter().any(|(key, _)| {
            matches!(
                self.analysed[key].proof,
                Proof::Table(..) | Proof::Socket(_)
            )
        });
        if void {
            tracing::info!(
                "ops tables proven always ok before they were named: the kernel's proofs are forgotten"
            );
            out.kernel.push(self.forget_always_ok());
            return out;
        }
        for (key, proof) in changed {
            self.offer(&proof, &mut out);
            if let Some(analysis) = self.analysed.get_mut(&key) {
                analysis.proof = proof;
            }
        }
        out
    }

    /// An fd was installed, or mapped ([`flags::MAPPED`]): then its mappings are looked for
    /// too. `alive` tells whether an fd still holds its file.
    pub fn installed(
        &mut self,
        j: &Judging,
        rec: &FileFacts,
        alive: &dyn Fn(u32, &FileFact) -> bool,
    ) -> Outcome {
        let mut out = Outcome::default();
        let f = FileFact::from_file(rec);
        let stale = rec.time < self.rescanned_at;
        // Where it is mapped is read now, so it holds even from before a rescan; but a
        // process the rescan did not find is not brought back.
        if rec.flags & flags::MAPPED != 0 && (!stale || self.procs.contains_key(&f.pid)) {
            self.known_proc(j, f.pid);
            self.add_mappings(j, &f);
            self.touch(f.pid);
        }
        if stale {
            self.installed_before_rescan(j, f, alive, &mut out);
            return out;
        }
        let pid = f.pid;
        self.known_proc(j, pid);
        // An ok file that replaced nothing changes no verdict: most installs end here.
        if self.insert_fd(j, f, true, &mut out) {
            self.touch(pid);
        }
        out
    }

    /// Makes sure `pid`, which an event names, is known: read from /proc if its fork said to;
    /// if its fork was not seen (lost, or before the start), its own session until /proc or a
    /// rescan says otherwise.
    fn known_proc(&mut self, j: &Judging, pid: u32) {
        if self.unread.contains(&pid) {
            self.read(j, pid);
        }
        if !self.procs.contains_key(&pid) {
            self.set_proc(ProcInfo {
                pid,
                sid: pid,
                ..Default::default()
            });
        }
    }

    /// An install from before the last rescan, read after it. The rescan found the fd as it is
    /// now; replayed, the install could put back a file closed since, or replace the one the
    /// rescan found. One file is taken: a file the rescan may have missed, because fd_install's
    /// programs run before the install, so the rescan can pass the task in between. Such a
    /// file is not kept, and its fd still holds it. Taking it can only keep a file more.
    fn installed_before_rescan(
        &mut self,
        j: &Judging,
        f: FileFact,
        alive: &dyn Fn(u32, &FileFact) -> bool,
        out: &mut Outcome,
    ) {
        let (pid, fd) = (f.pid, f.fd.expect("an fd"));
        let key = fd_key(pid, fd);
        let kept = self.files.get(&pid).is_some_and(|m| m.contains_key(&fd));
        if !kept && self.procs.contains_key(&pid) && alive(pid, &f) {
            // Tracked again: the rescan may have untracked the fd since the kernel reported it.
            if self.insert_fd(j, f, false, out) {
                self.touch(pid);
            }
        }
        // The kernel tracks what it reported.
        if !self.tracked.contains(&key) {
            self.reported.insert(key);
        }
    }

    /// A lifecycle event. `alive_fds` tells which tracked fds survived an exec.
    pub fn task(
        &mut self,
        j: &Judging,
        ev: &TaskEvent,
        alive_fds: &dyn Fn(u32, &FileFact) -> bool,
    ) -> Outcome {
        if ev.time < self.rescanned_at {
            return self.task_before_rescan(j, ev);
        }
        let mut out = Outcome::default();
        let pid = ev.tgid;
        match ev.kind {
            task_event::FORK => {
                let child = ev.arg;
                let info = match self.procs.get(&pid) {
                    Some(parent) => {
                        self.unread.insert(child);
                        ProcInfo {
                            pid: child,
                            ppid: pid,
                            ..parent.clone()
                        }
                    }
                    None => (j.read_proc)(child).unwrap_or(ProcInfo {
                        pid: child,
                        ppid: pid,
                        ..Default::default()
                    }),
                };
                self.children.entry(pid).or_default().push(child);
                let inherited: Vec<FileFact> = self
                    .files
                    .get(&pid)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .map(|f| FileFact {
                        pid: child,
                        ..(**f).clone()
                    })
                    .collect();
                for f in inherited {
                    self.insert_fd(j, f, false, &mut out);
                }
                if let Some(maps) = self.mappings.get(&pid).cloned() {
                    let maps = maps
                        .into_iter()
                        .map(|f| FileFact { pid: child, ..f })
                        .collect();
                    self.mappings.insert(child, maps);
                }
                self.set_proc(info);
            }
            task_event::EXEC => {
                self.read(j, pid);
                let gone: Vec<u32> = self
                    .files
                    .get(&pid)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter(|f| !alive_fds(pid, f))
                    .filter_map(|f| f.fd)
                    .collect();
                for fd in gone {
                    self.remove_fd(pid, fd, &mut out);
                }
                // The old image's mappings are gone; the new one's arrive with the next rescan.
                self.mappings.remove(&pid);
                self.touch(pid);
            }
            task_event::EXIT => self.exit(pid, &mut out),
            // The kernel dropped its tracking as it reported the close: untracking here could
            // hit the next fd of that number. A close of an fd not kept changes nothing.
            task_event::CLOSE => {
                let key = fd_key(pid, ev.arg);
                self.tracked.remove(&key);
                self.reported.remove(&key);
                if let Some(closed) = self.forget_fd(pid, ev.arg) {
                    self.keep_mapped(j, &closed);
                    self.touch(pid);
                }
            }
            task_event::REFRESH => self.read(j, pid),
            task_event::CLOSE_RANGE => {
                let fds: Vec<u32> = self
                    .files
                    .get(&pid)
                    .into_iter()
                    .flat_map(|m| m.range(ev.arg..=ev.arg2).map(|(fd, _)| *fd))
                    .collect();
                self.untrack_reported(pid, ev.arg..=ev.arg2.max(ev.arg), &mut out);
                if !fds.is_empty() {
                    for fd in fds {
                        if let Some(closed) = self.remove_fd(pid, fd, &mut out) {
                            self.keep_mapped(j, &closed);
                        }
                    }
                    self.touch(pid);
                }
            }
            _ => {}
        }
        out
    }

    /// Process `pid` exited: its files are closed, its children are no longer in its tree.
    fn exit(&mut self, pid: u32, out: &mut Outcome) {
        self.unread.remove(&pid);
        self.touch(pid);
        let fds: Vec<u32> = self
            .files
            .get(&pid)
            .into_iter()
            .flat_map(|m| m.keys().copied())
            .collect();
        for fd in fds {
            self.remove_fd(pid, fd, out);
        }
        self.untrack_reported(pid, 0..=u32::MAX, out);
        self.files.remove(&pid);
        self.mappings.remove(&pid);
        self.leave(pid);
        // Its children are the init's (or a subreaper's) now: out of its tree.
        self.touched.clear();
        if let Some(ppid) = self.procs.remove(&pid).map(|p| p.ppid)
            && let Some(siblings) = self.children.get_mut(&ppid)
        {
            siblings.retain(|&c| c != pid);
        }
        self.children.remove(&pid);
    }

    /// A lifecycle event from before the last rescan, read after it. The rescan found what it
    /// did: replayed, a fork would copy the parent's files over the child's own, and a close
    /// would drop the file the rescan found on a reused fd number. What is left is the
    /// kernel's tracking, and an exit: the rescan may have found the process still exiting,
    /// its files not yet closed (`sched_process_exit` comes first).
    fn task_before_rescan(&mut self, j: &Judging, ev: &TaskEvent) -> Outcome {
        let mut out = Outcome::default();
        let pid = ev.tgid;
        match ev.kind {
            // Unless its pid names another process by now.
            task_event::EXIT if (j.exited)(pid) => self.exit(pid, &mut out),
            task_event::CLOSE => {
                // The kernel dropped its tracking as it reported the close: a file kept since
                // on that fd number is tracked again.
                let key = fd_key(pid, ev.arg);
                if self.tracked.contains(&key) {
                    out.kernel.push(KernelUpdate::Track(key));
                } else {
                    self.reported.remove(&key);
                }
            }
            task_event::CLOSE_RANGE => {
                self.untrack_reported(pid, ev.arg..=ev.arg2.max(ev.arg), &mut out)
            }
            task_event::REFRESH => self.read(j, pid),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests;
