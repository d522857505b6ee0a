//! The daemon's picture of the host, kept true by events and reconciled with full snapshots.
//! Pure: events go in; the changes the kernel maps need and the alerts go out. A saved stream
//! of events can be replayed through it without a kernel.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ckpt_common::{FileFacts, N_OPS_MEMBERS, TaskEvent, task_event};

use crate::aggregate::{ProcessReport, Rules, World};
use crate::checkpointer::given::Given;
use crate::classify::{self, Profile, Verdict};
use crate::facts::{FileFact, FileType};
use crate::resolve::OpsIdentity;
use crate::scope::{DumpSet, Holders, Own, ProcInfo, children_of};
use crate::snapshot::Snapshot;

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
    /// Forget every always-ok entry (the profile changed).
    ForgetAlwaysOk,
}

/// A process whose verdict changed.
#[derive(Clone, Debug)]
pub struct Change {
    pub event: &'static str,
    pub report: ProcessReport,
}

fn change_event(before: Option<Verdict>, now: Verdict) -> Option<&'static str> {
    if before == Some(now) || (before.is_none() && now == Verdict::Ok) {
        return None;
    }
    Some(match now {
        Verdict::Blocks => "became-blocking",
        Verdict::Needs => "needs-options",
        Verdict::Unknown => "unknown",
        Verdict::Ok => "became-ok",
    })
}

/// What one event or reconcile produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub kernel: Vec<KernelUpdate>,
    pub changes: Vec<Change>,
}

/// What one always-ok analysis stands for: an ops table and file type, and a socket's kind.
type AnalysisKey = (u64, FileType, Option<(u16, u16, u16)>);

#[derive(Default)]
pub struct State {
    /// Files worth keeping: those not `ok`, and those other files' relations are judged by
    /// (unix sockets, pty masters).
    files: HashMap<u32, BTreeMap<u32, FileFact>>,
    mappings: HashMap<u32, Vec<FileFact>>,
    procs: HashMap<u32, ProcInfo>,
    children: HashMap<u32, Vec<u32>>,
    holders: Holders,
    verdicts: HashMap<u32, Verdict>,
    /// Kept fds whose closes the kernel reports.
    tracked: HashSet<u64>,
    /// fds the kernel reported and so tracks, but not kept: their closes come back and are
    /// ignored. Untracking them at once could hit the next fd of the same number, which the
    /// kernel may already have reported; they are untracked when their process exits.
    reported: BTreeSet<u64>,
    pub ops_members: HashMap<u64, [u64; N_OPS_MEMBERS]>,
    pub ops: HashMap<u64, OpsIdentity>,
    /// Ops tables (and socket kinds) already analysed for [`classify::always_ok`].
    analysed: HashSet<AnalysisKey>,
    own: Own,
}

impl World for State {
    fn files_of(&self, pid: u32) -> Vec<&FileFact> {
        let fds = self.files.get(&pid).into_iter().flat_map(|m| m.values());
        fds.chain(self.mappings.get(&pid).into_iter().flatten())
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
    pub given: &'a Given,
}

impl State {
    pub fn processes_by_verdict(&self) -> BTreeMap<Verdict, usize> {
        let mut m = BTreeMap::new();
        for v in self.verdicts.values() {
            *m.entry(*v).or_default() += 1;
        }
        m
    }

    pub fn process_count(&self) -> usize {
        self.verdicts.len()
    }

    fn rules<'a>(&'a self, j: &'a Judging<'a>) -> Rules<'a> {
        Rules {
            profile: j.profile,
            ops: &self.ops,
            given: j.given,
            own: self.own.clone(),
            describe: &crate::aggregate::describe_facts,
            keep_ok: false,
        }
    }

    fn judge(&self, j: &Judging, pid: u32) -> ProcessReport {
        let set = DumpSet::process_in(pid, &self.children);
        let mut dump = self.rules(j).dump(self, &set);
        dump.processes.remove(0)
    }

    /// Re-judges `pid` and records the change, if any.
    fn rejudge(&mut self, j: &Judging, pid: u32, out: &mut Outcome) {
        if !self.procs.contains_key(&pid) && !self.files.contains_key(&pid) {
            return;
        }
        let report = self.judge(j, pid);
        let before = self.verdicts.insert(pid, report.verdict);
        if let Some(event) = change_event(before, report.verdict) {
            out.changes.push(Change { event, report });
        }
    }

    /// Whether a file must be kept: it is not ok, or other files are judged by it.
    fn worth_keeping(&self, j: &Judging, f: &FileFact) -> bool {
        if Holders::indexes(f) {
            return true;
        }
        // Only a pidfd's target and a pty's master are looked up among the dumped tasks: the
        // subtree walk is not paid for every other install.
        let set = if f.pidfd_target.is_some() || f.tty_index.is_some() {
            DumpSet::process_in(f.pid, &self.children)
        } else {
            DumpSet::single(f.pid)
        };
        let unknown = ProcInfo::default();
        let root = self.procs.get(&f.pid).unwrap_or(&unknown);
        let ctx = set.context(f, &self.holders, root, &self.own, &BTreeSet::new);
        let judgement = classify::classify(j.profile, f, self.ops.get(&f.f_op), &ctx);
        j.given.apply(judgement).verdict != Verdict::Ok
    }

    /// Offers `f`'s ops table (or, for a socket, its kind) to the kernel's always-ok filter,
    /// once per table and file type (and socket kind).
    fn analyse(&mut self, j: &Judging, f: &FileFact, out: &mut Outcome) {
        let socket = f.socket.as_ref().map(|s| (s.family, s.sk_type, s.protocol));
        if f.fd.is_none() || !self.analysed.insert((f.f_op, f.file_type, socket)) {
            return;
        }
        let Some(rdev_bound) = classify::always_ok(j.profile, f, self.ops.get(&f.f_op)) else {
            return;
        };
        if f.file_type == FileType::Sock {
            // Sockets share one ops table: only their kind can be dropped, never the table.
            if let Some((family, sk_type, protocol)) = socket {
                out.kernel
                    .push(KernelUpdate::AlwaysOkSocket(ckpt_common::OkSock {
                        f_op: f.f_op,
                        family,
                        sk_type,
                        protocol,
                        _pad: 0,
                    }));
            }
            return;
        }
        let rdev = match (rdev_bound, f.rdev) {
            (true, Some(d)) => (d.major << 20) | d.minor,
            _ => ckpt_common::ANY_RDEV,
        };
        let ok = ckpt_common::OkFops {
            file_type: (f.mode & 0o170000) >> 12,
            rdev,
        };
        out.kernel.push(KernelUpdate::AlwaysOk(f.f_op, ok));
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
        let replaced = self.forget_fd(pid, fd);
        self.analyse(j, &f, out);
        if self.worth_keeping(j, &f) {
            self.holders.add(&f);
            self.reported.remove(&key);
            if self.tracked.insert(key) && !kernel_tracks {
                out.kernel.push(KernelUpdate::Track(key));
            }
            self.files.entry(pid).or_default().insert(fd, f);
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

    /// Drops a kept fd from the state, keeping its kernel tracking; true if there was one.
    fn forget_fd(&mut self, pid: u32, fd: u32) -> bool {
        let old = self.files.get_mut(&pid).and_then(|m| m.remove(&fd));
        if let Some(old) = &old {
            self.holders.remove(old);
        }
        old.is_some()
    }

    /// Drops a kept fd and its kernel tracking; true if there was one.
    fn remove_fd(&mut self, pid: u32, fd: u32, out: &mut Outcome) -> bool {
        let removed = self.forget_fd(pid, fd);
        if self.tracked.remove(&fd_key(pid, fd)) {
            out.kernel.push(KernelUpdate::Untrack(fd_key(pid, fd)));
        }
        removed
    }

    /// The profile changed: every always-ok judgement is void.
    pub fn profile_changed(&mut self) -> Outcome {
        self.analysed.clear();
        Outcome {
            kernel: vec![KernelUpdate::ForgetAlwaysOk],
            changes: vec![],
        }
    }

    /// Replaces everything with a fresh snapshot; reports each process whose verdict changed.
    pub fn reconcile(&mut self, j: &Judging, snap: Snapshot) -> Outcome {
        let mut out = Outcome::default();
        let before = std::mem::take(&mut self.verdicts);
        let tracked_before = std::mem::take(&mut self.tracked);
        self.files.clear();
        self.mappings.clear();
        self.holders = Holders::default();
        self.own = snap.own();
        self.procs = snap.procs.into_iter().collect();
        let parents = self.procs.values().map(|p| (p.pid, p.ppid)).collect();
        self.children = children_of(&parents);
        self.ops_members.extend(snap.ops);
        // Holders first: whether a unix peer or a pty master is inside depends on every one.
        let (held, others): (Vec<FileFact>, Vec<FileFact>) =
            snap.files.into_iter().partition(Holders::indexes);
        for f in &held {
            self.holders.add(f);
        }
        for f in held.into_iter().chain(others) {
            match f.fd {
                Some(fd) => {
                    self.analyse(j, &f, &mut out);
                    if self.worth_keeping(j, &f) {
                        self.tracked.insert(fd_key(f.pid, fd));
                        self.files.entry(f.pid).or_default().insert(fd, f);
                    }
                }
                None => {
                    if self.worth_keeping(j, &f) {
                        self.mappings.entry(f.pid).or_default().push(f);
                    }
                }
            }
        }
        let pids: BTreeSet<u32> = self
            .procs
            .keys()
            .chain(self.files.keys())
            .copied()
            .collect();
        for pid in pids {
            let report = self.judge(j, pid);
            self.verdicts.insert(pid, report.verdict);
            if let Some(event) = change_event(before.get(&pid).copied(), report.verdict) {
                out.changes.push(Change { event, report });
            }
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

    /// An fd was installed.
    pub fn installed(&mut self, j: &Judging, rec: &FileFacts) -> Outcome {
        let mut out = Outcome::default();
        let f = FileFact::from_file(rec);
        let pid = f.pid;
        let mut new_process = false;
        self.procs.entry(pid).or_insert_with(|| {
            new_process = true;
            ProcInfo {
                pid,
                sid: pid,
                ..Default::default()
            }
        });
        // An ok file that replaced nothing leaves the verdict as it was: most installs end here.
        if self.insert_fd(j, f, true, &mut out) || new_process {
            self.rejudge(j, pid, &mut out);
        }
        out
    }

    /// A lifecycle event. `proc_info` reads /proc for a process that appeared or exec'd;
    /// `alive_fds` tells which tracked fds survived an exec.
    pub fn task(
        &mut self,
        j: &Judging,
        ev: &TaskEvent,
        proc_info: &dyn Fn(u32) -> Option<ProcInfo>,
        alive_fds: &dyn Fn(u32, &FileFact) -> bool,
    ) -> Outcome {
        let mut out = Outcome::default();
        let pid = ev.tgid;
        match ev.kind {
            task_event::FORK => {
                let child = ev.arg;
                let info = proc_info(child).unwrap_or_else(|| {
                    let parent = self.procs.get(&pid).cloned().unwrap_or_default();
                    ProcInfo {
                        pid: child,
                        ppid: pid,
                        ..parent
                    }
                });
                self.children.entry(pid).or_default().push(child);
                self.procs.insert(child, info);
                let inherited: Vec<FileFact> = self
                    .files
                    .get(&pid)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .map(|f| FileFact {
                        pid: child,
                        ..f.clone()
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
                self.rejudge(j, child, &mut out);
                self.rejudge(j, pid, &mut out);
            }
            task_event::EXEC => {
                if let Some(info) = proc_info(pid) {
                    self.procs.insert(pid, info);
                }
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
                self.rejudge(j, pid, &mut out);
            }
            task_event::EXIT => {
                let fds: Vec<u32> = self
                    .files
                    .get(&pid)
                    .into_iter()
                    .flat_map(|m| m.keys().copied())
                    .collect();
                for fd in fds {
                    self.remove_fd(pid, fd, &mut out);
                }
                self.untrack_reported(pid, 0..=u32::MAX, &mut out);
                self.files.remove(&pid);
                self.mappings.remove(&pid);
                self.procs.remove(&pid);
                self.verdicts.remove(&pid);
                self.children.remove(&pid);
            }
            // The kernel dropped its tracking as it reported the close: untracking here could
            // hit the next fd of that number. A close of an fd not kept changes nothing.
            task_event::CLOSE => {
                let key = fd_key(pid, ev.arg);
                self.tracked.remove(&key);
                self.reported.remove(&key);
                if self.forget_fd(pid, ev.arg) {
                    self.rejudge(j, pid, &mut out);
                }
            }
            task_event::REFRESH => {
                if let Some(info) = proc_info(pid) {
                    self.procs.insert(pid, info);
                    self.rejudge(j, pid, &mut out);
                }
            }
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
                        self.remove_fd(pid, fd, &mut out);
                    }
                    self.rejudge(j, pid, &mut out);
                }
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests;
