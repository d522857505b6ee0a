//! From per-file judgements to verdicts per process and per dump (CRIU's rule: one task that
//! fails fails the whole dump).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::Serialize;

use crate::checkpointer::given::Given;
use crate::classify::{self, Classifier, Context, Judgement, Place, Verdict};
use crate::facts::{FileFact, FileType};
use crate::scope::workload::{Kind, Workload};
use crate::scope::{DumpSet, Holders, Holding, Own, ProcInfo, procfs};
use crate::snapshot::{FactIndex, Snapshot};

#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
    /// `start-end` of a mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    pub kind: String,
    /// What it is: a path, `socket:[ino] AF_INET SOCK_STREAM ESTABLISHED`, `anon_inode:[x]`.
    pub what: String,
    pub fops: String,
    pub verdict: Verdict,
    pub reason: String,
    pub options: Vec<String>,
    /// With `needs`: what restoring a dump made with each option will need, in their order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
    pub rule: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    pub verdict: Verdict,
    /// The options this process needs: the first choice of each `needs` item.
    pub options: Vec<String>,
    /// What restoring a dump made with those options will need, one per option.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
    /// Checks on the task itself (session leader, tracer).
    pub task: Vec<Judgement>,
    pub files: Vec<FileReport>,
    pub mappings: Vec<FileReport>,
    /// How many fds and mappings were judged, the `ok` ones a host scan does not list included.
    #[serde(skip)]
    pub judged: (usize, usize),
}

/// One checkpoint: a root and the tasks dumped with it.
#[derive(Clone, Debug, Serialize)]
pub struct DumpReport {
    pub root: u32,
    pub verdict: Verdict,
    pub options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
    pub processes: Vec<ProcessReport>,
}

/// One workload (DESIGN.md §7): what it is, and the verdict of the dump its root implies.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub root: u32,
    pub verdict: Verdict,
    pub options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
    pub left_out: Vec<u32>,
    pub processes: Vec<ProcessReport>,
}

impl WorkloadReport {
    pub fn new(w: Workload, dump: DumpReport) -> Self {
        Self {
            kind: w.kind,
            id: w.id,
            name: w.name,
            root: w.root,
            verdict: dump.verdict,
            options: dump.options,
            restore: dump.restore,
            left_out: w.left_out,
            processes: dump.processes,
        }
    }

    /// The worst first; then containers, units, sessions; then by id.
    pub fn sort(reports: &mut [WorkloadReport]) {
        reports.sort_by(|a, b| {
            b.verdict
                .cmp(&a.verdict)
                .then(a.kind.cmp(&b.kind))
                .then_with(|| a.id.cmp(&b.id))
        });
    }
}

fn worst(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    verdicts.max().unwrap_or(Verdict::Ok)
}

fn dedup(options: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    options.filter(|o| seen.insert(o.clone())).collect()
}

/// The restore side of each option (classify::restore).
pub fn restore_needs(options: &[String]) -> Vec<String> {
    options
        .iter()
        .map(|o| classify::restore::restore_need(o))
        .collect()
}

/// The first choice of every `needs` judgement, once each, in order.
fn needed_options<'j>(
    judgements: impl Iterator<Item = (&'j Verdict, &'j Vec<String>)>,
) -> Vec<String> {
    dedup(
        judgements
            .filter(|(v, _)| **v == Verdict::Needs)
            .filter_map(|(_, o)| o.first().cloned()),
    )
}

/// Where the facts come from: a snapshot, or the daemon's live state.
/// `Sync`: the processes of a large dump are judged on several threads at once.
pub trait World: Sync {
    /// Every file and mapping of `pid`.
    fn files_of(&self, pid: u32) -> Vec<&FileFact>;
    fn proc_info(&self, pid: u32) -> Option<&ProcInfo>;
    /// Who holds which socket and pty master, across the host.
    fn holders(&self) -> &Holders;
    /// Every namespace inode of `pid` (nsfs files are judged by them): the live /proc's.
    fn ns_inodes(&self, pid: u32) -> Vec<u64> {
        procfs::all_ns_inodes(pid)
    }
    /// How many more fds of `pid` the kernel judged ok by their kind and counted only.
    fn ok_by_kind(&self, _pid: u32) -> usize {
        0
    }
}

/// How to judge: the profile, the names of ops tables, the options that will be given.
#[derive(Clone)]
pub struct Rules<'a, 'p> {
    /// The profile with the ops tables' names; shared by every dump of one scan, so that each
    /// kind of file is matched against the profile once.
    pub classifier: &'a Classifier<'p>,
    pub given: &'a Given,
    pub own: Own,
    /// Describes a file for people (a live scan adds the /proc path).
    pub describe: &'a (dyn Fn(&FileFact) -> String + Sync),
    /// List `ok` files too. A host scan judges every file but lists only the others: building
    /// and describing 200k reports nobody reads would cost more than the scan itself.
    pub keep_ok: bool,
    /// Reports on files judged alike in every dump (`Holding::judged_alike`), kept for the
    /// dumps judged with these same rules in one world; `None` where the rules are copied with
    /// other options.
    pub kept: Option<&'a KeptReports>,
}

/// Reports on the files of a process judged alike in every dump that takes it (those that
/// relate to no other task, a unix socket pair within the process), by process and root
/// namespaces, kept across the dumps of one scan: workloads' dumps nest (a session's tree holds
/// the sessions started from it, a unit's the logins it serves).
#[derive(Default)]
pub struct KeptReports(Mutex<HashMap<ProcessInDump, IndexedReports>>);

/// A process, and whether the dump's root has its own network and IPC namespaces.
type ProcessInDump = (u32, bool, bool);

/// Reports on some of a process's files, each with its index among them.
type IndexedReports = Arc<[(u32, FileReport)]>;

impl Rules<'_, '_> {
    /// The report on one file, `None` for an `ok` file that is not to be listed.
    fn file_report(
        &self,
        f: &FileFact,
        holding: &Holding,
        set: &DumpSet,
        root: &ProcInfo,
        ns: &dyn Fn() -> BTreeSet<u64>,
        external_ptys: &dyn Fn() -> usize,
    ) -> Option<FileReport> {
        let ops = self.classifier.ops_of(f);
        let mut ctx = set.context(f, holding, root, &self.own, ns);
        if matches!(ctx.tty_master, Some(Place::Outside | Place::None)) {
            ctx.external_ptys = external_ptys();
        }
        let rule = self.classifier.rule_for(f, &ctx);
        // Options only ever turn `needs` into `ok`: an `ok` file is one whatever is given, and
        // one not to be listed needs no report built.
        if !self.keep_ok && classify::judged_ok(rule, f) {
            return None;
        }
        let j = self.given.apply(self.classifier.judgement(rule, f));
        if j.verdict == Verdict::Ok && !self.keep_ok {
            return None;
        }
        Some(FileReport {
            fd: f.fd,
            range: f
                .mapping
                .as_ref()
                .map(|m| format!("{:x}-{:x}", m.start, m.end)),
            kind: j.kind,
            what: (self.describe)(f),
            fops: ops.map_or_else(|| format!("{:#x}", f.f_op), |o| o.label()),
            verdict: j.verdict,
            reason: j.reason,
            restore: if j.verdict == Verdict::Needs {
                restore_needs(&j.options)
            } else {
                vec![]
            },
            options: j.options,
            rule: j.rule,
        })
    }

    /// The reports on one process's `files` (fds, then mappings, each in `files`' order), all
    /// `holding`'s. Those on files judged alike depend on the dump only through its root's
    /// namespaces: with [`Self::kept`], a nested dump that takes the process takes them from
    /// the first dump that did.
    fn reports(
        &self,
        holding: &Holding,
        of_root: &Context,
        files: &[&FileFact],
        report: impl Fn(&FileFact) -> Option<FileReport>,
    ) -> (Vec<FileReport>, Vec<FileReport>) {
        let (same, own): (Vec<_>, Vec<_>) = (0u32..)
            .zip(files)
            .partition(|(_, f)| holding.judged_alike(f));
        let judge = |part: Vec<(u32, &&FileFact)>| {
            part.into_iter()
                .filter_map(|(i, f)| Some((i, report(f)?)))
                .collect::<Vec<_>>()
        };
        let alike: IndexedReports = match self.kept {
            // Which files are alike depends on the membership: only a member's are kept.
            Some(kept) if holding.member() => {
                let key = (holding.pid(), of_root.own_netns, of_root.own_ipcns);
                // Judged outside the lock, which the other threads of the dump take too. A
                // thread that panicked holding it left the map whole: it only inserts.
                let known = kept
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                    .cloned();
                known.unwrap_or_else(|| {
                    let reports: IndexedReports = judge(same).into();
                    kept.0
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, reports.clone());
                    reports
                })
            }
            _ => judge(same).into(),
        };
        let mut all: Vec<(u32, FileReport)> = alike.iter().cloned().collect();
        all.extend(judge(own));
        all.sort_by_key(|(i, _)| *i);
        all.into_iter()
            .map(|(_, r)| r)
            .partition(|r| r.range.is_none())
    }

    /// `judge` of each process of `set`, in pid order: on several threads when the dump holds
    /// many processes, each thread with a classifier of its own (its cache of kinds is not
    /// shared). A host's largest dump, a session of thousands of processes, took ~40 ms on one
    /// core.
    fn each_process<R: Send>(
        &self,
        set: &DumpSet,
        judge: impl Fn(&Rules, u32) -> R + Sync,
    ) -> Vec<R> {
        // Read once: the daemon judges dumps all day, and the count reads cgroup files.
        static CORES: OnceLock<usize> = OnceLock::new();
        let pids: Vec<u32> = set.pids.iter().copied().collect();
        let most = pids.len() / MIN_PROCESSES_PER_THREAD;
        let threads = match most {
            0 | 1 => 1,
            _ => *CORES
                .get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .min(&MAX_JUDGING_THREADS)
                .min(&most),
        };
        if threads < 2 {
            return pids.iter().map(|&pid| judge(self, pid)).collect();
        }
        let (profile, ops) = (self.classifier.profile, self.classifier.ops);
        let (given, own, describe) = (self.given, &self.own, self.describe);
        let (keep_ok, kept) = (self.keep_ok, self.kept);
        let judge = &judge;
        std::thread::scope(|scope| {
            let mut parts = pids.chunks(pids.len().div_ceil(threads));
            let first = parts.next().unwrap_or_default();
            let others: Vec<_> = parts
                .map(|part| {
                    scope.spawn(move || {
                        let classifier = Classifier::new(profile, ops);
                        let rules = Rules {
                            classifier: &classifier,
                            given,
                            own: own.clone(),
                            describe,
                            keep_ok,
                            kept,
                        };
                        part.iter()
                            .map(|&pid| judge(&rules, pid))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<R> = first.iter().map(|&pid| judge(self, pid)).collect();
            for other in others {
                all.extend(other.join().expect("judging a process does not panic"));
            }
            all
        })
    }

    /// Judges `set` as one dump.
    pub fn dump(&self, world: &dyn World, set: &DumpSet) -> DumpReport {
        let root = world.proc_info(set.root).cloned().unwrap_or(ProcInfo {
            pid: set.root,
            sid: set.root,
            ..Default::default()
        });
        let ns_of_set = || -> BTreeSet<u64> {
            set.members
                .iter()
                .flat_map(|p| world.ns_inodes(*p))
                .collect()
        };
        // criu/tty.c tty_verify_active_pairs(): one pty slave without its master may be the
        // shell job's terminal; a second one fails (`Only one slave external peer is allowed`)
        // unless declared --external (fdzoo two_ext_pty_slaves, CRIU 4.2.1).
        let external_ptys = OnceLock::new();
        let count_external_ptys = || {
            *external_ptys.get_or_init(|| {
                set.members
                    .iter()
                    .flat_map(|&m| world.files_of(m))
                    .filter(|f| f.mapping.is_none())
                    .filter_map(|f| set.tty_master(f, world.holders()))
                    .filter(|(_, place)| *place != Place::Inside)
                    .map(|(index, _)| index)
                    .collect::<BTreeSet<u32>>()
                    .len()
            })
        };
        let of_root = DumpSet::root_context(&root, &self.own);
        let process = |rules: &Rules, pid: u32| {
            let files = world.files_of(pid);
            let maps = files.iter().filter(|f| f.mapping.is_some()).count();
            let judged = (files.len() - maps + world.ok_by_kind(pid), maps);
            let holding = Holding::process(world.holders(), set, pid, &files);
            let report = |f: &FileFact| {
                rules.file_report(f, &holding, set, &root, &ns_of_set, &count_external_ptys)
            };
            let (mut fds, mappings) = rules.reports(&holding, &of_root, &files, report);
            fds.sort_by_key(|r| r.fd);
            let unknown = ProcInfo {
                pid,
                sid: pid,
                ..Default::default()
            };
            let info = world.proc_info(pid).unwrap_or(&unknown);
            let mut facts = set.task_facts(info, &root);
            facts.locked_fds = files
                .iter()
                .filter(|f| f.mapping.is_none() && f.locked == Some(true))
                .filter_map(|f| f.fd)
                .collect();
            // A descendant the report does not list (`--pid`) is dumped all the same: its
            // pid namespace is judged on the root.
            if pid == set.root {
                facts.nested_pidns |= set.members.iter().any(|&m| {
                    world
                        .proc_info(m)
                        .is_some_and(|p| set.task_facts(p, &root).nested_pidns)
                });
            }
            let task: Vec<Judgement> = classify::classify_task(rules.classifier.profile, &facts)
                .into_iter()
                .map(|j| rules.given.apply(j))
                .collect();
            let all = || {
                task.iter().map(|j| (&j.verdict, &j.options)).chain(
                    fds.iter()
                        .chain(&mappings)
                        .map(|r| (&r.verdict, &r.options)),
                )
            };
            let options = needed_options(all());
            ProcessReport {
                pid,
                comm: world
                    .proc_info(pid)
                    .map(|p| p.comm.clone())
                    .unwrap_or_default(),
                verdict: worst(all().map(|(v, _)| *v)),
                restore: restore_needs(&options),
                options,
                task,
                files: fds,
                mappings,
                judged,
            }
        };
        let processes = self.each_process(set, process);
        let options = dedup(processes.iter().flat_map(|p| p.options.iter().cloned()));
        DumpReport {
            root: set.root,
            verdict: worst(processes.iter().map(|p| p.verdict)),
            restore: restore_needs(&options),
            options,
            processes,
        }
    }
}

/// Judging threads of one dump at most, and processes each judges at least.
const MAX_JUDGING_THREADS: usize = 4;
const MIN_PROCESSES_PER_THREAD: usize = 64;

/// A snapshot, indexed for judging.
pub struct SnapshotWorld<'a> {
    pub snapshot: &'a Snapshot,
    index: Cow<'a, FactIndex>,
}

impl<'a> SnapshotWorld<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let index = match &snapshot.index {
            Some(index) if index.covers(&snapshot.files) => Cow::Borrowed(index),
            _ => Cow::Owned(FactIndex::of(&snapshot.files)),
        };
        Self { snapshot, index }
    }

    /// Every pid with files or /proc facts in the snapshot.
    pub fn pids(&self) -> BTreeSet<u32> {
        self.index
            .pids()
            .chain(self.snapshot.procs.keys().copied())
            .collect()
    }
}

impl World for SnapshotWorld<'_> {
    fn files_of(&self, pid: u32) -> Vec<&FileFact> {
        let files = &self.snapshot.files;
        self.index
            .facts_of(pid)
            .filter_map(|i| files.get(i))
            .collect()
    }

    fn proc_info(&self, pid: u32) -> Option<&ProcInfo> {
        self.snapshot.procs.get(&pid)
    }

    fn holders(&self) -> &Holders {
        self.index.holders()
    }

    fn ok_by_kind(&self, pid: u32) -> usize {
        self.snapshot
            .ok_by_kind
            .get(&pid)
            .map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// As recorded: a replayed snapshot must not ask this host's /proc.
    fn ns_inodes(&self, pid: u32) -> Vec<u64> {
        self.snapshot
            .namespaces
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }
}

/// A description from kernel facts alone (replay, or when /proc has no path for it).
pub fn describe_facts(f: &FileFact) -> String {
    use crate::classify::names as n;
    match (f.file_type, &f.socket) {
        (FileType::Sock, Some(s)) => {
            let mut d = format!(
                "socket:[{}] {} {}",
                f.ino,
                n::family_name(s.family),
                n::sock_type_name(s.sk_type)
            );
            if s.family == 2 || s.family == 10 {
                d.push_str(&format!(" proto {}", s.protocol));
                if s.sk_type == 1 {
                    d.push(' ');
                    d.push_str(&n::tcp_state_name(s.state));
                }
            }
            d
        }
        // Its kind could not be read, and the kernel side reads no socket's name.
        (FileType::Sock, None) => format!("socket:[{}] on {}", f.ino, f.fs_type),
        (FileType::Chr | FileType::Blk, _) => format!(
            "{} {} {}",
            f.file_type.as_str(),
            f.rdev.map_or_else(|| "?".into(), |d| d.to_string()),
            f.name
        ),
        (FileType::None, _) => format!("anon_inode:{}", f.name),
        (FileType::Fifo, _) if f.fs_type == "pipefs" => format!("pipe:[{}]", f.ino),
        _ if f.nlink == 0 && f.file_type == FileType::Reg => {
            format!("{} (deleted) on {}", f.name, f.fs_type)
        }
        _ => format!("{} on {}", f.name, f.fs_type),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::scope::tests::{file, unix_with_peer};

    fn proc(pid: u32, ppid: u32, sid: u32) -> (u32, ProcInfo) {
        let p = ProcInfo {
            pid,
            ppid,
            sid,
            comm: format!("p{pid}"),
            ..Default::default()
        };
        (pid, p)
    }

    /// Session 10's tree holds session 20 (a shell and a daemon started from it with setsid).
    /// Pid 21 holds a unix socket whose peer pid 10 holds, a deleted file too big for the
    /// ghost limit and a plain file; pid 20 a file on a hidden mount.
    fn nested() -> Snapshot {
        let mut ghost = file(21, FileType::Reg, 7);
        (ghost.fd, ghost.nlink, ghost.unlinked) = (Some(4), 0, true);
        (ghost.size, ghost.allocated) = (64 << 20, 64 << 20);
        let mut plain = file(21, FileType::Reg, 8);
        plain.fd = Some(5);
        let mut hidden = file(20, FileType::Reg, 9);
        (hidden.mount_visible, hidden.mnt_id) = (Some(false), Some(3));
        Snapshot {
            procs: BTreeMap::from([proc(10, 1, 10), proc(20, 10, 20), proc(21, 20, 20)]),
            files: vec![
                unix_with_peer(10, 100, 101),
                unix_with_peer(21, 101, 100),
                ghost,
                plain,
                hidden,
            ],
            ..Default::default()
        }
    }

    /// An index noted fact by fact as a scan decodes them is the one built from the facts
    /// after, on one thread or two; a snapshot whose facts changed in number since is indexed
    /// afresh.
    #[test]
    fn a_noted_index_is_the_built_one_and_a_stale_one_is_not_used() {
        let mut many = nested().files;
        many.extend((0..12_000).map(|i| unix_with_peer(30 + i % 7, 1000 + i as u64, 1)));
        for files in [&nested().files, &many] {
            let mut noted = FactIndex::default();
            for (i, f) in files.iter().enumerate() {
                noted.add(i, f);
            }
            assert_eq!(noted, FactIndex::of(files), "{} facts", files.len());
        }
        let mut snapshot = nested();
        snapshot.index = Some(FactIndex::of(&snapshot.files[..2]));
        let world = SnapshotWorld::new(&snapshot);
        assert_eq!(world.files_of(21).len(), 3);
        assert_eq!(world.files_of(20).len(), 1);
    }

    /// A session of 400 processes, more than one thread judges: each process is judged as it
    /// is alone in the same dump, in pid order, whichever thread judged it. Unix socket peers
    /// cross the threads' shares of the processes, and some are outside the dump.
    #[test]
    fn a_dump_judged_on_several_threads_is_each_process_judged_alone() {
        let root = 1000;
        let mut procs = BTreeMap::from([proc(root, 1, root), proc(5000, 1, 5000)]);
        let mut files = vec![unix_with_peer(5000, 9_999, 10_000)];
        for pid in root + 1..root + 400 {
            procs.extend([proc(pid, root, root)]);
            let ino = u64::from(pid) * 10;
            let peer = if pid % 7 == 0 { 9_999 } else { ino + 10 };
            files.push(unix_with_peer(pid, ino, peer));
            if pid % 11 == 0 {
                let mut ghost = file(pid, FileType::Reg, ino + 1);
                (ghost.fd, ghost.nlink, ghost.unlinked) = (Some(4), 0, true);
                (ghost.size, ghost.allocated) = (64 << 20, 64 << 20);
                files.push(ghost);
            }
        }
        let snapshot = Snapshot {
            procs,
            files,
            ..Default::default()
        };
        let world = SnapshotWorld::new(&snapshot);
        let profile = classify::load_profile("criu-4").unwrap();
        let ops = crate::resolve::OpsTables::default();
        let classifier = Classifier::new(&profile, &ops);
        let given = Given::default();
        let kept = KeptReports::default();
        let rules = Rules {
            classifier: &classifier,
            given: &given,
            own: Own::default(),
            describe: &describe_facts,
            keep_ok: true,
            kept: Some(&kept),
        };
        let parents = snapshot.procs.values().map(|p| (p.pid, p.ppid)).collect();
        let set = DumpSet::tree(root, &parents);
        assert_eq!(set.pids.len(), 400);
        let whole = serde_json::to_value(rules.dump(&world, &set)).unwrap();
        let processes = whole["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 400);
        for (judged, &pid) in processes.iter().zip(&set.pids) {
            let alone = DumpSet {
                pids: BTreeSet::from([pid]),
                ..set.clone()
            };
            let alone = serde_json::to_value(rules.dump(&world, &alone)).unwrap();
            assert_eq!(judged, &alone["processes"][0], "pid {pid}");
        }
        let blocked = |rule: &str| {
            processes
                .iter()
                .filter(|p| {
                    p["files"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|f| f["rule"] == rule)
                })
                .count()
        };
        assert_eq!(blocked("ghost-too-big"), 37);
        // Every 7th peer is pid 5000's, outside; the last process's peer is nobody's.
        assert_eq!(blocked("unix-stream-peer-outside"), 57 + 1);
    }

    /// The fds the kernel counted as ok are judged fds of their process, beside those reported.
    #[test]
    fn fds_counted_by_the_kernel_are_judged_fds() {
        let mut snapshot = nested();
        snapshot.ok_by_kind = BTreeMap::from([(21, 40), (10, 3)]);
        let world = SnapshotWorld::new(&snapshot);
        let profile = classify::load_profile("criu-4").unwrap();
        let ops = crate::resolve::OpsTables::default();
        let classifier = Classifier::new(&profile, &ops);
        let rules = Rules {
            classifier: &classifier,
            given: &Given::default(),
            own: Own::default(),
            describe: &describe_facts,
            keep_ok: false,
            kept: None,
        };
        let parents = snapshot.procs.values().map(|p| (p.pid, p.ppid));
        let dump = rules.dump(&world, &DumpSet::tree(10, &parents.collect()));
        let judged: BTreeMap<u32, (usize, usize)> =
            dump.processes.iter().map(|p| (p.pid, p.judged)).collect();
        // 10: its unix socket; 20: its file on a hidden mount; 21: its socket and two files.
        assert_eq!(
            judged,
            BTreeMap::from([(10, (1 + 3, 0)), (20, (1, 0)), (21, (3 + 40, 0))])
        );
    }

    fn judged(rules: &Rules, world: &SnapshotWorld, root: u32) -> serde_json::Value {
        let parents = world.snapshot.procs.values().map(|p| (p.pid, p.ppid));
        let set = DumpSet::tree(root, &parents.collect());
        serde_json::to_value(rules.dump(world, &set)).unwrap()
    }

    /// Nested dumps that share the reports on files judged alike judge each dump as it is
    /// judged alone, in either order: files that relate to no other task, and a pair whose
    /// ends process 21 holds; the socket whose peer is outside the inner dump only is judged
    /// in each dump for itself.
    #[test]
    fn nested_dumps_share_only_what_cannot_differ() {
        let mut snapshot = nested();
        let mut pair = [unix_with_peer(21, 102, 103), unix_with_peer(21, 103, 102)];
        (pair[0].fd, pair[1].fd) = (Some(6), Some(7));
        snapshot.files.extend(pair);
        let world = SnapshotWorld::new(&snapshot);
        let profile = classify::load_profile("criu-4").unwrap();
        let ops = crate::resolve::OpsTables::default();
        let classifier = Classifier::new(&profile, &ops);
        let given = Given::default();
        for keep_ok in [false, true] {
            let alone = Rules {
                classifier: &classifier,
                given: &given,
                own: Own::default(),
                describe: &describe_facts,
                keep_ok,
                kept: None,
            };
            let (outer, inner) = (judged(&alone, &world, 10), judged(&alone, &world, 20));
            let rules = |kept| Rules {
                kept: Some(kept),
                ..alone.clone()
            };
            let kept = KeptReports::default();
            assert_eq!(judged(&rules(&kept), &world, 20), inner, "{keep_ok}");
            assert_eq!(judged(&rules(&kept), &world, 10), outer, "{keep_ok}");
            let kept = KeptReports::default();
            assert_eq!(judged(&rules(&kept), &world, 10), outer, "{keep_ok}");
            assert_eq!(judged(&rules(&kept), &world, 20), inner, "{keep_ok}");

            let rules_of = |dump: &serde_json::Value| -> Vec<String> {
                let pid21 = &dump["processes"].as_array().unwrap()[..]
                    .iter()
                    .find(|p| p["pid"] == 21)
                    .unwrap()["files"];
                pid21
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["rule"].as_str().unwrap().into())
                    .collect()
            };
            let listed = if keep_ok {
                vec![
                    "unix-stream-peer-outside",
                    "ghost-too-big",
                    "file",
                    "unix",
                    "unix",
                ]
            } else {
                vec!["unix-stream-peer-outside", "ghost-too-big"]
            };
            assert_eq!(rules_of(&inner), listed);
            assert_eq!(
                rules_of(&outer)[0],
                if keep_ok { "unix" } else { "ghost-too-big" }
            );
        }
    }
}
