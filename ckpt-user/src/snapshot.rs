//! A snapshot: everything a scan learned from the kernel and /proc, serialisable so it can be
//! saved on one host and replayed through resolve → classify → report anywhere, without root.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ckpt_common::N_OPS_MEMBERS;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::checkpointer::criu::Criu;
use crate::facts::{DevNum, FileFact, FileType};
use crate::input::{self, ReadError};
use crate::kernel::btf::{BtfError, LoadedBtf};
use crate::kernel::kallsyms::{KallsymsError, KallsymsIndex, Symbol, Symbols};
use crate::kernel::kallsyms_cache;
use crate::kernel::privileges::{self, PrivilegeError};
use crate::probe::{self, OkTables, Probe, ProbeError, Purpose, Record};
use crate::resolve;
use crate::scope::{Holders, Own, ProcInfo, procfs};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Kallsyms(#[from] KallsymsError),
    #[error(transparent)]
    Proc(#[from] crate::scope::ProcError),
    #[error("cannot read snapshot {path}: {reason}")]
    Replay { path: String, reason: String },
    #[error("cannot write snapshot {path}: {source}")]
    Save {
        path: String,
        source: std::io::Error,
    },
    #[error("pid {pid} was not scanned: this snapshot holds {scanned}; replay one of those")]
    NotScanned { pid: u32, scanned: String },
}

/// Where the time of a live scan went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for the kernel's BTF offsets, and parsing the BPF object meanwhile.
    pub btf: Duration,
    /// Loading and verifying the programs, and for a host scan, the kernel's account of its
    /// processes (`iter/task`, ~2 ms).
    pub load: Duration,
    pub iterate: Duration,
    /// What the scan waited for kallsyms after the walk: the rest of its read (on another
    /// thread since the start) and the lookup.
    pub kallsyms: Duration,
    /// What /proc must add to the kernel's facts: deleted files' allocation, mappings on hidden
    /// mounts, inotify and fanotify marks, locks beyond the kernel side's walk.
    pub refine: Duration,
    pub procfs: Duration,
}

/// What a snapshot is of: where and when it was taken, which tasks, and how they were to be
/// judged. A replay judges what was scanned and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scanned {
    pub host: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub filter: Filter,
    pub profile: String,
    /// The CRIU installed then; without `--profile`, its version picks the profile on replay.
    pub criu: Option<Criu>,
}

impl Scanned {
    /// A record of a live scan on this host, now.
    pub fn now(filter: Filter, profile: &str, criu: Option<&Criu>) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            host: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            filter,
            profile: profile.to_string(),
            criu: criu.cloned(),
        }
    }

    fn describe(&self) -> String {
        let what = match self.filter {
            Filter::All => "every process".to_string(),
            Filter::Pid(pid) => format!("pid {pid} and its descendants"),
            Filter::Cgroup { id, .. } => format!("the processes of cgroup id {id}"),
        };
        crate::report::printable(&format!(
            "{what} (host {}, Linux {}, {})",
            self.host, self.kernel, self.time
        ))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// `None` in snapshots of ckpt-watch versions that did not record it.
    #[serde(default)]
    pub scanned: Option<Scanned>,
    pub files: Vec<FileFact>,
    /// Member function addresses per ops table, in `ckpt_common::OPS_MEMBERS` order.
    pub ops: BTreeMap<u64, [u64; N_OPS_MEMBERS]>,
    /// The kallsyms entries at those addresses.
    pub symbols: Vec<(u64, Symbol)>,
    pub data_symbols: usize,
    pub procs: BTreeMap<u32, ProcInfo>,
    pub own_netns: Option<u64>,
    pub own_ipcns: Option<u64>,
    /// The kernel's internal shmem device (`Own::shm_dev`); `None` in snapshots of ckpt-watch
    /// versions that did not record it, where no file counts as on it.
    #[serde(default)]
    pub shm_dev: Option<DevNum>,
    /// Every namespace inode of each process, recorded only when some file is an nsfs file
    /// (whose verdict depends on them), so a replay never asks this host's /proc.
    #[serde(default)]
    pub namespaces: BTreeMap<u32, Vec<u64>>,
    /// Per process, the fds the kernel counted as ok by their kind instead of reporting them
    /// (a host scan that lists only what is not ok: [`OkByKind`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ok_by_kind: BTreeMap<u32, u64>,
    #[serde(skip)]
    pub timings: Timings,
    /// Built as a scan to be judged decodes `files`; a replay's and the daemon's have none.
    /// Whoever changes `files` after sets it to `None`.
    #[serde(skip)]
    pub(crate) index: Option<FactIndex>,
}

/// Where each process's facts are in [`Snapshot::files`], and who holds which socket and pty
/// master: what judging looks up. A live scan builds it as the facts are decoded, beside the
/// kernel's walk; built after it, a host scan waited ~10 ms more.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactIndex {
    /// Where each pid's facts are in the files: runs of indices, since a task's facts come one
    /// after another (a few runs per process, not an index per fact: megabytes less).
    /// foldhash: one lookup per fact of the host.
    by_pid: HashMap<u32, Vec<Range<usize>>, foldhash::fast::RandomState>,
    holders: Holders,
    /// Facts indexed.
    facts: usize,
}

/// Facts from which [`FactIndex::of`] builds its two halves on two threads.
const INDEX_APART: usize = 10_000;

impl FactIndex {
    /// Notes `f`, the fact at `index`.
    pub fn add(&mut self, index: usize, f: &FileFact) {
        note_run(&mut self.by_pid, f.pid, index);
        self.holders.add(f);
        self.facts += 1;
    }

    /// The index of `files`.
    pub fn of(files: &[FileFact]) -> Self {
        let by_pid = || {
            let mut by_pid = HashMap::default();
            for (i, f) in files.iter().enumerate() {
                note_run(&mut by_pid, f.pid, i);
            }
            by_pid
        };
        let (holders, by_pid) = if files.len() < INDEX_APART {
            (Holders::index(files), by_pid())
        } else {
            std::thread::scope(|scope| {
                let holders = scope.spawn(|| Holders::index(files));
                let by_pid = by_pid();
                let holders = holders.join().expect("indexing holders does not panic");
                (holders, by_pid)
            })
        };
        Self {
            by_pid,
            holders,
            facts: files.len(),
        }
    }

    /// Whether this indexes exactly `files` (as far as their number tells).
    pub fn covers(&self, files: &[FileFact]) -> bool {
        self.facts == files.len()
    }

    /// Every pid with facts.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_pid.keys().copied()
    }

    /// Indices of `pid`'s facts, in order.
    pub fn facts_of(&self, pid: u32) -> impl Iterator<Item = usize> + '_ {
        self.by_pid
            .get(&pid)
            .into_iter()
            .flatten()
            .cloned()
            .flatten()
    }

    pub fn holders(&self) -> &Holders {
        &self.holders
    }
}

/// Adds `index` to `pid`'s runs: the last one grows when `index` follows it.
fn note_run(
    by_pid: &mut HashMap<u32, Vec<Range<usize>>, foldhash::fast::RandomState>,
    pid: u32,
    index: usize,
) {
    let runs = by_pid.entry(pid).or_default();
    match runs.last_mut() {
        Some(run) if run.end == index => run.end += 1,
        _ => runs.push(index..index + 1),
    }
}

/// Which tasks the kernel side reports. Filtering there keeps a scan of one process or one
/// container from costing user space in proportion to the whole host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    All,
    Pid(u32),
    /// A cgroup v2 (its id is the directory's inode number) and everything below it.
    Cgroup {
        id: u64,
        level: u32,
    },
}

/// Judges a kind of file, for a host scan that lists only what is not ok: whether every file
/// like `f` (its ops table, whose member functions are in `table`, looked up in `symbols`; its
/// file type) is ok whatever its state and wherever it is held, or at least every plain one
/// (see [`crate::classify::Assume`]). The kernel then counts such files instead of reporting
/// them.
pub trait OkByKind: Sync {
    fn always_ok(
        &self,
        f: &FileFact,
        table: &HashMap<u64, [u64; N_OPS_MEMBERS]>,
        symbols: &Symbols,
    ) -> Option<OkKind>;
}

/// A kind of file found ok by [`OkByKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OkKind {
    /// Only for the sample's device number.
    pub rdev_bound: bool,
    /// Only the plain files of the kind.
    pub only_plain: bool,
}

/// A walk that counts ok kinds: while the kernel walks, the first file of each ops table and
/// file type decoded is judged by its kind, and the kernel told the tables whose files are ok.
pub struct CountOk<'a> {
    by_kind: &'a dyn OkByKind,
    kallsyms: &'a KallsymsIndex,
    tables: OkTables,
    judged: HashSet<(u64, FileType)>,
}

impl<'a> CountOk<'a> {
    pub fn new(by_kind: &'a dyn OkByKind, kallsyms: &'a KallsymsIndex, tables: OkTables) -> Self {
        Self {
            by_kind,
            kallsyms,
            tables,
            judged: HashSet::new(),
        }
    }

    /// Offers `f`'s kind to the kernel's table. Never a socket (all share one table), nor a
    /// file others are judged by (a unix or packet socket, a pty master), whose holders must be
    /// known.
    fn consider(&mut self, f: &FileFact, ops: &HashMap<u64, [u64; N_OPS_MEMBERS]>) {
        let kind = (f.f_op, f.file_type);
        if f.fd.is_none()
            || f.file_type == FileType::Sock
            || Holders::indexes(f)
            || self.judged.contains(&kind)
        {
            return;
        }
        // The table's record comes before its first file, unless the kernel's table of
        // tables reported is full: such kinds are never counted.
        let Some(members) = ops.get(&f.f_op) else {
            return;
        };
        self.judged.insert(kind);
        let table = HashMap::from([(f.f_op, *members)]);
        let Ok(symbols) =
            Symbols::lookup_indexed(self.kallsyms, &resolve::wanted_addresses(&table))
        else {
            return;
        };
        if let Some(ok) = self.by_kind.always_ok(f, &table, &symbols)
            && let Err(e) = self
                .tables
                .insert(f.f_op, f.ok_fops(ok.rdev_bound, ok.only_plain))
        {
            tracing::debug!("{e}: such files are reported one by one");
        }
    }
}

/// What every live scan reads first — the kernel's BTF (offsets, the ids iterators attach to)
/// and kallsyms's text — begun on other threads as soon as a command knows it will scan, so
/// that its own start-up (finding CRIU, reading config files: ~12 ms) runs meanwhile. Both are
/// readable by anyone: the scan checks its privileges when it starts, as before.
pub struct ScanStart {
    btf: JoinHandle<Result<LoadedBtf, BtfError>>,
    kallsyms: JoinHandle<std::io::Result<(KallsymsIndex, Duration)>>,
    verifying: OpenOnDrop,
}

impl ScanStart {
    pub fn begin() -> Self {
        let verifying = Verifying::default();
        // /proc/kallsyms costs ~40 ms of kernel time unless a copy stands for it. Indexed here,
        // the lookup after the kernel's walk is a few binary searches.
        let kallsyms = std::thread::spawn({
            let verifying = verifying.clone();
            move || {
                verifying.wait();
                let t = Instant::now();
                let index = kallsyms_cache::read(&Cache::system())?;
                Ok((index, t.elapsed()))
            }
        });
        let btf = std::thread::spawn(|| {
            let btf = LoadedBtf::of_running_kernel(&Cache::system(), &Probe::ITERATOR_FUNCS);
            // aya probes the kernel's BPF features (~12 bpf() calls, ~0.3 ms) the first time
            // it loads an object, on the loading thread: done here, it is done meanwhile.
            aya::features();
            btf
        });
        Self {
            btf,
            kallsyms,
            verifying: OpenOnDrop(verifying),
        }
    }

    /// Open once this scan's file walk is being verified.
    pub fn verifying(&self) -> Verifying {
        self.verifying.0.clone()
    }
}

/// Open once a scan's file walk is being verified, or once the scan is given up before that.
/// What a scan needs only after its walk (the kallsyms index, a preflight's judge) waits for
/// it: the verifier holds the main thread for milliseconds and leaves the other core idle,
/// while before it, on 2 cores, that work took turns with the BTF read and object load the
/// verifier waits for (a container's preflight between host scans: ~0.5 ms of ~9).
#[derive(Clone, Default)]
pub struct Verifying(Arc<OnceLock<()>>);

impl Verifying {
    pub fn wait(&self) {
        self.0.wait();
    }

    fn open(&self) {
        let _ = self.0.set(());
    }
}

/// Opens its [`Verifying`] when dropped: however a scan ends, nothing waits for it forever.
struct OpenOnDrop(Verifying);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Lowers the calling thread, and it alone, to the least priority. For the host's cgroup files,
/// read beside the file walk: the walk is one core's work and a host scan's longest step, and
/// at equal priority the scheduler gave the reader turns on that core too (2,000 × 100: the
/// walk had ~87 % of its core; the scan took ~3 ms more). The reader takes no sleeping lock
/// that a task of the host may wait for (the kernel writes a cgroup file under a spinlock),
/// and failing to lower it costs only that time.
fn yield_to_the_walk() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
}

impl Snapshot {
    /// Scans `root`'s tree, its dump. The tree is listed before the probe loads and the kernel
    /// reports the listed pids only: when it has grown by the end of the scan (a process forked
    /// in meanwhile, perhaps by a tree choosing its timing), it is scanned again as it is then.
    pub fn take_tree(start: ScanStart, root: u32) -> Result<Self, SnapshotError> {
        let snap = Self::take(start, Filter::Pid(root), None, None)?;
        let grew = procfs::tree_of(root)?
            .iter()
            .any(|p| !snap.procs.contains_key(p));
        if grew {
            return Self::take(ScanStart::begin(), Filter::Pid(root), None, None);
        }
        Ok(snap)
    }

    /// Scans the live kernel: the tasks `filter` selects. `members`, when the caller knows
    /// them, are every process the filter can select (a cgroup's `cgroup.procs`): a few are
    /// visited one by one instead of every task of the host. With `by_kind`, a host scan's
    /// kernel counts the files of kinds it judges ok instead of reporting them.
    pub fn take(
        start: ScanStart,
        filter: Filter,
        members: Option<&BTreeSet<u32>>,
        by_kind: Option<&dyn OkByKind>,
    ) -> Result<Self, SnapshotError> {
        privileges::ensure_can_load_bpf()?;
        let ScanStart {
            btf,
            kallsyms,
            verifying,
        } = start;
        let mut timings = Timings::default();
        let t = Instant::now();
        // Parsed while the BTF thread is still at work: this one is done with its targets
        // first (~0.5 ms before).
        let object = probe::Object::parse();
        let LoadedBtf {
            mut offsets,
            func_ids,
        } = btf.join().expect("reading BTF does not panic")?;
        // The scanner holds BPF fds of its own; it is not what anyone asks about.
        offsets.ignore_tgid = std::process::id();
        // A pid's dump is its subtree (`criu dump -t`): whom its children hold decides which
        // peers are inside, so the kernel reports the whole subtree. The processes a scan is
        // known to be about are read from /proc while the programs load.
        let mut known_procs = None;
        let mut targets = None;
        // Every process of the host: told by the kernel (`iter/task`) where it can, with
        // their cgroups read from /proc on another core while the kernel walks the files;
        // else all read from /proc meanwhile. Those that came since are read after.
        let host = matches!(filter, Filter::All);
        let by_kernel = host && offsets.can_read_processes();
        let mut all_procs = None;
        match filter {
            Filter::All if by_kernel => {}
            Filter::All => all_procs = Some(std::thread::spawn(procfs::all_procs)),
            Filter::Pid(pid) => {
                let tree = procfs::tree_of(pid)?;
                known_procs = Some(read_meanwhile(tree.clone()));
                targets = Some(tree);
            }
            // A kernel whose cgroups the BTF does not describe cannot filter: scanning
            // everything costs time, filtering blind would find no files and say `ok`.
            Filter::Cgroup { id, level } if offsets.can_filter_cgroups() => {
                offsets.target_cgroup = id;
                offsets.target_cgroup_level = level;
            }
            Filter::Cgroup { .. } => {
                tracing::debug!("no cgroup ancestry in this kernel's BTF: scanning every task");
            }
        }
        if let (Filter::Cgroup { .. }, Some(members)) = (filter, members) {
            known_procs = Some(read_meanwhile(members.clone()));
        }
        timings.btf = t.elapsed();
        let t = Instant::now();
        let by_kind = by_kind.filter(|_| host);
        // A process counted is a map element: room for every task there is, and some forked
        // meanwhile (the files of processes beyond it are reported as usual).
        let count_ok = by_kind.map(|_| {
            let tasks = procfs::tasks().unwrap_or(1 << 15);
            u32::try_from(tasks.saturating_add(1024)).unwrap_or(u32::MAX)
        });
        let purpose = Purpose::Scan {
            targets: targets.as_ref(),
            processes: by_kernel,
            count_ok,
        };
        let mut probe = Probe::load(object?, &offsets, &func_ids, purpose, &|| {
            verifying.0.open()
        })?;
        if let Some(members) = members {
            probe.visit_only(members);
        }
        let ok_tables = by_kind.map(|_| probe.ok_tables()).transpose()?;
        if by_kernel {
            all_procs = Some(match probe.processes()? {
                Some(facts) => std::thread::spawn(move || {
                    yield_to_the_walk();
                    Ok(procfs::with_cgroups(&facts))
                }),
                None => std::thread::spawn(procfs::all_procs),
            });
        }
        timings.load = t.elapsed();
        // Read meanwhile, since the start: ready by now.
        let (index, took) = kallsyms
            .join()
            .expect("the kallsyms reader does not panic")
            .map_err(KallsymsError::from)?;
        let count_ok = by_kind
            .zip(ok_tables)
            .map(|(by_kind, tables)| CountOk::new(by_kind, &index, tables));
        let kallsyms = |wanted: &HashSet<u64>| Ok((Symbols::lookup_indexed(&index, wanted)?, took));
        let mut snap = Self::collect(&mut probe, known_procs, all_procs, kallsyms, true, count_ok)?;
        // The host's other processes are no part of this scan (nor of a saved snapshot).
        if let Some(pids) = &targets {
            snap.procs.retain(|pid, _| pids.contains(pid));
        }
        snap.timings.btf = timings.btf;
        snap.timings.load = timings.load;
        Ok(snap)
    }

    /// Runs a loaded probe's iterators once. `kallsyms` looks the wanted addresses up in
    /// `/proc/kallsyms` (and tells how long reading it took, for the log): read and indexed
    /// on another thread meanwhile, or looked up as it is read.
    /// `judged`: the snapshot will be judged through a `SnapshotWorld`, whose [`FactIndex`] is
    /// then built as the facts are decoded (the daemon's state indexes them its own way).
    /// `count_ok`: for a probe loaded with `count_ok`, the ok kinds told to its kernel.
    pub fn collect(
        probe: &mut Probe,
        known_procs: Option<ProcsReader>,
        all_procs: Option<ProcsReader>,
        kallsyms: impl FnOnce(&HashSet<u64>) -> Result<(Symbols, Duration), KallsymsError>,
        judged: bool,
        mut count_ok: Option<CountOk>,
    ) -> Result<Self, SnapshotError> {
        let mut timings = Timings::default();
        let t = Instant::now();
        // A host scan holds a fact per open fd of the host: sized from the kernel's count of
        // open files, the Vec is rarely copied as it grows (tens of MB). Untouched capacity
        // costs no memory; a refused reservation (strict overcommit) only means growing as
        // before.
        let mut files = Vec::new();
        if all_procs.is_some() {
            let _ = files.try_reserve(procfs::open_files().unwrap_or(0));
        }
        let mut ops = HashMap::new();
        let mut noted = Noted::default();
        let mut index = judged.then(FactIndex::default);
        probe.snapshot(&mut |record| {
            let fact = match record {
                Record::File(r) => {
                    let fact = FileFact::from_file(&r);
                    if let Some(count_ok) = &mut count_ok {
                        count_ok.consider(&fact, &ops);
                    }
                    fact
                }
                Record::Vma(r) => FileFact::from_vma(&r),
                Record::Ops(f_op, members) => {
                    ops.insert(f_op, members);
                    return;
                }
                // Written by the process iterator only (`Probe::processes`).
                Record::Proc(_) => return,
                // Written by the daemon's table walk only (`Probe::fd_tables`).
                Record::Table { .. } => return,
            };
            noted.note(files.len(), &fact);
            if let Some(index) = &mut index {
                index.add(files.len(), &fact);
            }
            files.push(fact);
        })?;
        let ok_by_kind = match count_ok {
            Some(_) => probe.ok_counts()?,
            None => BTreeMap::new(),
        };
        noted.holders.extend(ok_by_kind.keys());
        timings.iterate = t.elapsed();

        let t = Instant::now();
        let (symbols, read_time) = kallsyms(&resolve::wanted_addresses(&ops))?;
        timings.kallsyms = t.elapsed();
        tracing::debug!(?read_time, "kallsyms read");

        let t = Instant::now();
        refine_deleted_allocation(&mut files, &noted.closer_look);
        crate::scope::map_files::see_mappings_as_criu(&mut files, &noted.closer_look);
        crate::scope::fsnotify::see_watches_as_criu(&mut files, &noted.closer_look);
        crate::scope::file_locks::see_locks_as_criu(&mut files, &noted.closer_look);
        timings.refine = t.elapsed();
        let t = Instant::now();
        let known_procs = match all_procs {
            Some(reader) => {
                let mut all = reader.join().expect("the /proc reader does not panic")?;
                // As for a scan that reads /proc after: the processes that hold files.
                all.retain(|pid, _| noted.holders.contains(pid));
                Some(all)
            }
            None => known_procs
                .map(|reader| reader.join().expect("the /proc reader does not panic"))
                .transpose()?,
        };
        let procs = read_procs(&noted.holders, known_procs);
        let namespaces = if noted.nsfs {
            procs
                .keys()
                .map(|&pid| (pid, procfs::all_ns_inodes(pid)))
                .collect()
        } else {
            BTreeMap::new()
        };
        timings.procfs = t.elapsed();
        let own = Own::current();
        Ok(Self {
            scanned: None,
            namespaces,
            files,
            ops: ops.into_iter().collect(),
            data_symbols: symbols.data_symbols,
            symbols: symbols.entries(),
            procs,
            own_netns: own.netns,
            own_ipcns: own.ipcns,
            shm_dev: own.shm_dev,
            ok_by_kind,
            timings,
            index,
        })
    }

    /// Reads a saved snapshot (at most [`input::SNAPSHOT_MAX`] bytes).
    pub fn load(path: &Path) -> Result<Self, SnapshotError> {
        let err = |reason: String| SnapshotError::Replay {
            path: crate::report::printable(&path.display().to_string()),
            reason,
        };
        let bytes = input::read_capped(path, input::SNAPSHOT_MAX).map_err(|e| match e {
            ReadError::TooBig(_) => err(format!("{e} (snapshots are capped at 1 GiB)")),
            ReadError::Io(_) => err(e.to_string()),
        })?;
        Self::parse(&bytes).map_err(err)
    }

    /// A snapshot from its JSON; the error is one line (it may quote the text it stopped at).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| crate::report::printable(&e.to_string()))
    }

    /// Writes the snapshot to `path`: readable by its owner only (it holds kernel addresses),
    /// atomically, and never through a symlink.
    pub fn save(&self, path: &Path) -> Result<(), SnapshotError> {
        let err = |source: std::io::Error| SnapshotError::Save {
            path: crate::report::printable(&path.display().to_string()),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|e| err(e.into()))?;
        write_private(path, &json).map_err(err)
    }

    /// Refuses a pid the snapshot did not scan: judging it would judge a process with no
    /// files, and say `ok`.
    pub fn check_scanned(&self, pid: u32) -> Result<(), SnapshotError> {
        let has_files = || self.files.iter().any(|f| f.pid == pid);
        let scanned = match &self.scanned {
            Some(s) => match s.filter {
                Filter::All => true,
                Filter::Pid(root) => {
                    let parents = self.procs.values().map(|p| (p.pid, p.ppid)).collect();
                    crate::scope::subtree(root, &parents).contains(&pid)
                }
                Filter::Cgroup { .. } => self.procs.contains_key(&pid) || has_files(),
            },
            // An older snapshot does not say what it scanned; one of a --pid scan holds every
            // process of its host: only a process with files in it was scanned.
            None => !self.procs.contains_key(&pid) || has_files(),
        };
        if scanned {
            return Ok(());
        }
        let what = match &self.scanned {
            Some(s) => s.describe(),
            None => {
                "no files of it and no record of what was scanned (an older ckpt-watch saved it)"
                    .into()
            }
        };
        Err(SnapshotError::NotScanned { pid, scanned: what })
    }

    pub fn symbols(&self) -> Symbols {
        Symbols::from_entries(self.symbols.clone(), self.data_symbols)
    }

    pub fn ops_members(&self) -> HashMap<u64, [u64; N_OPS_MEMBERS]> {
        self.ops.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn own(&self) -> Own {
        Own {
            netns: self.own_netns,
            ipcns: self.own_ipcns,
            shm_dev: self.shm_dev,
        }
    }
}

/// What a scan notes of each fact as it is decoded, while the fact is fresh in the cache:
/// finding it afterwards swept the host's tens of MB of facts again, once per question.
#[derive(Default)]
struct Noted {
    /// Indices of the few facts /proc must refine.
    closer_look: Vec<usize>,
    /// Every process that holds a fact.
    holders: BTreeSet<u32>,
    /// The last process added to `holders`: a task's facts come one after another.
    last_holder: Option<u32>,
    /// Some fact is an nsfs file, whose verdict depends on every process's namespaces.
    nsfs: bool,
}

impl Noted {
    fn note(&mut self, index: usize, f: &FileFact) {
        if wants_deleted_allocation(f)
            || crate::scope::map_files::wants_a_look(f)
            || crate::scope::fsnotify::wants_a_look(f)
            || crate::scope::file_locks::wants_a_look(f)
        {
            self.closer_look.push(index);
        }
        if self.last_holder != Some(f.pid) {
            self.holders.insert(f.pid);
            self.last_holder = Some(f.pid);
        }
        self.nsfs |= f.fs_type == "nsfs";
    }
}

/// An open regular file with no name left: its allocation is [`refine_deleted_allocation`]'s.
fn wants_deleted_allocation(f: &FileFact) -> bool {
    f.fd.is_some() && f.file_type == crate::facts::FileType::Reg && f.nlink == 0
}

/// `i_blocks` misses blocks a filesystem has reserved but not yet written (ext4 delayed
/// allocation); `stat(2)`, which CRIU uses against --ghost-limit, counts them. Deleted files
/// are few, so stat them through /proc like CRIU does. `which`: indices into `files`, a
/// superset of those files.
fn refine_deleted_allocation(files: &mut [FileFact], which: &[usize]) {
    refine_deleted_allocation_by(files, which, stat_held);
}

/// The inode number and bytes allocated of what `pid`'s `fd` is now.
fn stat_held(pid: u32, fd: u32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
    Some((meta.ino(), meta.blocks() * 512))
}

/// [`refine_deleted_allocation`] with `stat(pid, fd)` → (inode number, bytes allocated).
///
/// A worker pool's forks share the deleted files they inherited (a log unlinked under them):
/// each inode is stat'ed once, not once per holder. A holder may have pointed its fd at
/// another file since the walk: a stat of another inode is not this one's, and the next
/// holder is asked. `stat(2)` counts at least the blocks the kernel's inode has, so the
/// larger is kept: no timing makes a ghost look smaller than the kernel saw it.
fn refine_deleted_allocation_by(
    files: &mut [FileFact],
    which: &[usize],
    mut stat: impl FnMut(u32, u32) -> Option<(u64, u64)>,
) {
    let mut stated: HashMap<(DevNum, u64), u64> = HashMap::new();
    for &i in which {
        let f = &mut files[i];
        let (true, Some(fd)) = (wants_deleted_allocation(f), f.fd) else {
            continue;
        };
        let key = (f.dev, f.ino);
        let allocated = match stated.get(&key) {
            Some(&allocated) => Some(allocated),
            None => stat(f.pid, fd)
                .filter(|&(ino, _)| ino == f.ino)
                .map(|(_, allocated)| *stated.entry(key).or_insert(allocated)),
        };
        if let Some(allocated) = allocated {
            f.allocated = f.allocated.max(allocated);
        }
    }
}

/// /proc facts for every process the scan saw (and the target, which may hold no files).
/// A process that exited since the iteration is skipped: it has nothing left to dump.
/// `/proc` read on another thread: every process of the host.
pub type ProcsReader =
    std::thread::JoinHandle<Result<BTreeMap<u32, ProcInfo>, crate::scope::ProcError>>;

/// `pids` read from /proc on another thread: those that exited are left out.
fn read_meanwhile(pids: BTreeSet<u32>) -> ProcsReader {
    std::thread::spawn(move || {
        Ok(pids
            .iter()
            .filter_map(|&p| procfs::read_or_warn(p).map(|info| (p, info)))
            .collect())
    })
}

fn read_procs(
    holders: &BTreeSet<u32>,
    known: Option<BTreeMap<u32, ProcInfo>>,
) -> BTreeMap<u32, ProcInfo> {
    let mut procs = known.unwrap_or_default();
    for &pid in holders {
        if let std::collections::btree_map::Entry::Vacant(e) = procs.entry(pid)
            && let Some(p) = procfs::read_or_warn(pid)
        {
            e.insert(p);
        }
    }
    procs
}

/// Writes `bytes` as a new file readable by its owner only, in a temporary file beside `path`
/// then renamed over it: a reader never sees half a file, and a symlink planted at `path` is
/// replaced, not followed.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}-{nanos}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    // O_EXCL: never an existing file, nor a symlink planted under the temporary name.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A deleted file, as the walk tells it of a holder: its inode's blocks, not stat's.
    fn ghost_of(pid: u32, fd: u32, meta: &std::fs::Metadata) -> FileFact {
        let mut f = crate::classify::tests::base(FileType::Reg);
        (f.pid, f.fd, f.ino, f.nlink, f.unlinked) = (pid, Some(fd), meta.ino(), 0, true);
        f.allocated = 4096;
        f
    }

    /// Forks sharing one deleted file: its inode is stat'ed once, through the first holder's
    /// fd, and every holder gets what stat(2) counts. A holder whose fd points at another
    /// file by now is not believed, and nothing lowers what the kernel saw.
    #[test]
    fn a_ghost_many_holders_share_is_stated_once_and_never_shrinks() {
        use std::io::Write as _;
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let open_ghost = |name: &str, bytes: usize| {
            let path = dir.path().join(name);
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(&vec![7u8; bytes]).unwrap();
            std::fs::remove_file(&path).unwrap();
            file
        };
        let (ghost, other) = (open_ghost("ghost", 1 << 20), open_ghost("other", 1));
        let (ghost_meta, other_meta) = (ghost.metadata().unwrap(), other.metadata().unwrap());
        let pid = std::process::id();
        let fd = ghost.as_raw_fd() as u32;

        let mut files: Vec<FileFact> = (0..50).map(|_| ghost_of(pid, fd, &ghost_meta)).collect();
        let which: Vec<usize> = (0..files.len()).collect();
        let mut stats = 0;
        refine_deleted_allocation_by(&mut files, &which, |pid, fd| {
            stats += 1;
            stat_held(pid, fd)
        });
        assert_eq!(stats, 1, "one stat for one inode");
        assert!(ghost_meta.blocks() * 512 >= 1 << 20, "{ghost_meta:?}");
        assert!(
            files
                .iter()
                .all(|f| f.allocated == ghost_meta.blocks() * 512)
        );

        // The first holder's fd now names the small file: the next holder's is asked. The
        // last one's inode had more blocks when the kernel walked it than stat counts now.
        let mut files = vec![ghost_of(pid, other.as_raw_fd() as u32, &ghost_meta)];
        files.push(ghost_of(pid, fd, &ghost_meta));
        files.push(ghost_of(pid, fd, &ghost_meta));
        files[0].allocated = 0;
        files[2].allocated = 1 << 30;
        refine_deleted_allocation(&mut files, &[0, 1, 2]);
        assert_eq!(
            files[0].allocated, 0,
            "the other inode's stat is not believed"
        );
        assert_eq!(files[1].allocated, ghost_meta.blocks() * 512);
        assert_eq!(
            files[2].allocated,
            1 << 30,
            "no stat lowers the kernel's blocks"
        );
        assert_ne!(other_meta.ino(), ghost_meta.ino());
    }

    /// What the kernel tells of every process (`iter/task`) is what /proc tells, field by
    /// field, for each process that /proc shows the same before and after: among them one in
    /// a session of its own, one another thread traces, one in its own network namespace, and
    /// one whose name /proc escapes.
    #[test]
    fn processes_told_by_the_kernel_are_those_proc_tells() {
        if let Err(e) = privileges::ensure_can_load_bpf() {
            eprintln!("skipped: {e}");
            return;
        }
        let btf = LoadedBtf::from_file(
            Path::new(crate::kernel::btf::VMLINUX_BTF),
            &Probe::ITERATOR_FUNCS,
        )
        .unwrap();
        assert!(btf.offsets.can_read_processes(), "this kernel's BTF");
        let spawn = |args: &[&str]| {
            let mut cmd = std::process::Command::new(args[0]);
            cmd.args(&args[1..]);
            cmd.spawn().unwrap()
        };
        let mut session = spawn(&["setsid", "sleep", "60"]);
        let mut netns = spawn(&["unshare", "--net", "sleep", "60"]);
        let mut traced = spawn(&["sleep", "60"]);
        // A name /proc escapes (a newline, a backslash) and pads with blanks.
        let named = crate::scope::tests::fork_named(c" a\\b\nc ");
        let tracee = traced.id() as libc::pid_t;
        // SAFETY: PTRACE_SEIZE neither stops the child nor touches our memory.
        assert_eq!(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tracee, 0, 0) }, 0);
        std::thread::sleep(Duration::from_millis(100));

        let before = procfs::all_procs().unwrap();
        let mut probe = Probe::load(
            probe::Object::parse().unwrap(),
            &btf.offsets,
            &btf.func_ids,
            Purpose::Scan {
                targets: None,
                processes: true,
                count_ok: None,
            },
            &|| {},
        )
        .unwrap();
        let told = probe.processes().unwrap().expect("iter/task loads here");
        let after = procfs::all_procs().unwrap();
        for child in [&mut session, &mut netns, &mut traced] {
            let _ = child.kill();
            let _ = child.wait();
        }
        // SAFETY: our own child, killed and reaped.
        unsafe {
            libc::kill(named, libc::SIGKILL);
            libc::waitpid(named, std::ptr::null_mut(), 0);
        }

        let mut compared = BTreeMap::new();
        for facts in &told {
            let pid = facts.pid;
            let (Some(was), Some(is)) = (before.get(&pid), after.get(&pid)) else {
                continue;
            };
            if was != is {
                continue;
            }
            let kernel = procfs::from_kernel(facts);
            let mut proc = was.clone();
            proc.cgroups.clear();
            assert_eq!(kernel, proc, "pid {pid}");
            compared.insert(pid, kernel);
        }
        let own = compared.get(&std::process::id()).expect("this process");
        let child = |c: &std::process::Child| compared.get(&c.id()).expect("a child");
        assert_eq!(child(&session).sid, session.id());
        assert_ne!(child(&netns).netns, own.netns);
        assert!(child(&netns).netns.is_some());
        assert_ne!(child(&traced).tracer_pid, 0);
        assert!(own.pidns.is_some() && own.ipcns.is_some());
        let renamed = compared.get(&(named as u32)).expect("the renamed child");
        assert_eq!(renamed.comm, " a\\b\nc ");
    }

    /// A host scan that counts ok kinds: processes' pipes, eventfds, /dev/null and plain
    /// regular files are counted by the kernel once their kind is judged ok (all but those
    /// walked before user space had judged it: the reads ahead hold ~11,000 records at most);
    /// their unix sockets (judged by their peers), a pidfd of a process outside their dumps
    /// (which blocks), a deleted file and a locked one are reported; and for each process,
    /// counted plus reported are all its fds.
    #[test]
    fn ok_kinds_are_counted_by_the_kernel_and_the_rest_reported() {
        const CHILDREN: usize = 24;
        // Within the default limit of 1024 fds; enough plain files that, once the kernel
        // counts them, the reads ahead (records, not fds) do not hold them all.
        const PIPES: usize = 50;
        const PLAIN: usize = 800;
        let judge = crate::judge::Judge::new(&crate::cli::JudgingArgs {
            profile: Some("criu-4".into()),
            ..Default::default()
        })
        .unwrap();
        let by_kind = judge.by_kind().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("ckpt-count-ok-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("plain");
        std::fs::write(&path, "x").unwrap();
        let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let dir_path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut status = [0; 2];
        assert_eq!(unsafe { libc::pipe(status.as_mut_ptr()) }, 0);
        let [status_rx, status_tx] = status;
        // Each child locks a file of its own: locks on one inode are walked a few at a time.
        let lock_paths: Vec<std::ffi::CString> = (0..CHILDREN)
            .map(|i| {
                let p = dir.path().join(format!("locked-{i}"));
                std::fs::write(&p, "x").unwrap();
                std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
            })
            .collect();
        let children: Vec<libc::pid_t> = lock_paths
            .iter()
            .map(|lock_path| {
                // SAFETY: the child only makes async-signal-safe calls, then is killed.
                let child = unsafe { libc::fork() };
                if child == 0 {
                    unsafe {
                        // Each step that fails sets its bit.
                        let mut failed = 0u8;
                        let mut pair = [0; 2];
                        for _ in 0..PIPES {
                            failed |= (libc::pipe(pair.as_mut_ptr()) != 0) as u8;
                        }
                        failed |= ((libc::eventfd(0, 0) < 0) as u8) << 1;
                        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                        failed |= ((null < 0) as u8) << 2;
                        let unix =
                            libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, &mut pair[0]);
                        failed |= ((unix != 0) as u8) << 3;
                        // Varargs: each argument a full register.
                        let pidfd = libc::syscall(
                            libc::SYS_pidfd_open,
                            1 as libc::c_long,
                            0 as libc::c_long,
                        );
                        failed |= ((pidfd < 0) as u8) << 4;
                        for _ in 0..PLAIN {
                            let plain = libc::open(path.as_ptr(), libc::O_RDONLY);
                            failed |= ((plain < 0) as u8) << 5;
                        }
                        let locked = libc::open(lock_path.as_ptr(), libc::O_RDONLY);
                        failed |= ((libc::flock(locked, libc::LOCK_SH) != 0) as u8) << 6;
                        let deleted =
                            libc::open(dir_path.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600);
                        failed |= ((deleted < 0) as u8) << 7;
                        libc::write(status_tx, [failed].as_ptr().cast(), 1);
                        loop {
                            libc::pause();
                        }
                    }
                }
                child
            })
            .collect();
        let mut failed = vec![0u8; CHILDREN];
        for byte in &mut failed {
            assert_eq!(
                unsafe { libc::read(status_rx, (byte as *mut u8).cast(), 1) },
                1
            );
        }
        let fds: Vec<usize> = children
            .iter()
            .map(|c| std::fs::read_dir(format!("/proc/{c}/fd")).unwrap().count())
            .collect();
        let snap = Snapshot::take(ScanStart::begin(), Filter::All, None, Some(&by_kind));
        // SAFETY: our own children, killed and reaped.
        unsafe {
            for &child in &children {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            libc::close(status_rx);
            libc::close(status_tx);
        }
        assert_eq!(
            failed,
            vec![0; CHILDREN],
            "the steps of each child that failed"
        );
        let snap = snap.unwrap();
        let (mut all_counted, mut plain_counted) = (0, 0);
        for (&child, fds) in children.iter().zip(fds) {
            let child = child as u32;
            let counted = snap.ok_by_kind.get(&child).copied().unwrap_or(0) as usize;
            let reported: Vec<&FileFact> = snap
                .files
                .iter()
                .filter(|f| f.pid == child && f.fd.is_some())
                .collect();
            assert_eq!(
                counted + reported.len(),
                fds,
                "pid {child}: every fd counted or reported"
            );
            // Beside any the child inherited from the tests running meanwhile.
            let socks = reported.iter().filter(|f| f.file_type == FileType::Sock);
            assert!(socks.count() >= 2, "pid {child}: unix sockets are reported");
            assert!(
                reported.iter().any(|f| f.pidfd_target == Some(1)),
                "pid {child}: the pidfd is reported"
            );
            let reg = |f: &&&FileFact| f.file_type == FileType::Reg;
            assert!(
                reported.iter().filter(reg).any(|f| f.nlink == 0),
                "pid {child}: the deleted file is reported"
            );
            assert!(
                reported.iter().filter(reg).any(|f| f.locked == Some(true)),
                "pid {child}: the locked file is reported"
            );
            assert!(snap.procs.contains_key(&child));
            all_counted += counted;
            let plain = |f: &&&FileFact| f.nlink > 0 && f.locked == Some(false);
            plain_counted += PLAIN - reported.iter().filter(reg).filter(plain).count();
        }
        assert!(
            plain_counted + 11_000 >= CHILDREN * PLAIN,
            "{plain_counted} of {} plain files counted",
            CHILDREN * PLAIN
        );
        let opened = CHILDREN * (2 * PIPES + 2 + PLAIN);
        assert!(
            all_counted + 11_000 >= opened,
            "{all_counted} of {opened} ok fds counted"
        );
    }

    /// Only the thread that yields is lowered: the walk and the rest of the scan keep theirs.
    #[test]
    fn yielding_to_the_walk_lowers_the_calling_thread_alone() {
        let nice = |tid| rustix::process::getpriority_process(Some(tid)).unwrap();
        let own = nice(rustix::thread::gettid());
        let yielded = std::thread::spawn(move || {
            yield_to_the_walk();
            nice(rustix::thread::gettid())
        })
        .join()
        .unwrap();
        assert_eq!(yielded, 19);
        assert_eq!(nice(rustix::thread::gettid()), own);
    }

    /// What waits for a scan's verifier is not let go before, and is let go by a scan given
    /// up before its walk was verified (a preflight whose cgroup is gone): it never hangs.
    #[test]
    fn a_scan_given_up_before_its_verifier_lets_go_of_what_waits() {
        let start = ScanStart::begin();
        let verifying = start.verifying();
        let (let_go, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            verifying.wait();
            let _ = let_go.send(());
        });
        assert!(
            waited.recv_timeout(Duration::from_millis(200)).is_err(),
            "let go before any program went to the verifier"
        );
        drop(start);
        waited
            .recv_timeout(Duration::from_secs(10))
            .expect("a scan's start dropped lets go of what waits for its verifier");
    }

    #[test]
    fn saved_private_atomically_and_never_through_a_symlink() {
        let tmp = tempfile::Builder::new()
            .prefix("ckpt-snap-save-")
            .tempdir()
            .unwrap();
        let d = tmp.path();
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = d.join("snap.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let snap = Snapshot::default();
        snap.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "the symlink was replaced by the file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), unsafe { libc::geteuid() });
        assert!(Snapshot::load(&path).is_ok());
        let left: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
        assert!(snap.save(&d.join("no-such-dir/snap.json")).is_err());
    }

    fn proc(pid: u32, ppid: u32) -> (u32, ProcInfo) {
        (
            pid,
            ProcInfo {
                pid,
                ppid,
                ..Default::default()
            },
        )
    }

    #[test]
    fn replay_judges_only_what_was_scanned() {
        let mut snap = Snapshot {
            procs: BTreeMap::from([proc(10, 1), proc(11, 10), proc(20, 1)]),
            ..Default::default()
        };
        snap.scanned = Some(Scanned::now(Filter::Pid(10), "criu-4", None));
        assert!(snap.check_scanned(10).is_ok() && snap.check_scanned(11).is_ok());
        let err = snap.check_scanned(20).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "pid 20 was not scanned: this snapshot holds pid 10 and its descendants (host "
            ),
            "{err}"
        );
        assert!(!err.contains('\n'));
        // An older snapshot: a pid without files in it was not scanned.
        snap.scanned = None;
        assert!(snap.check_scanned(20).is_err());
        assert!(
            snap.check_scanned(99).is_ok(),
            "left to the 'exited' answer"
        );
        let old = br#"{"files":[],"ops":{},"symbols":[],"data_symbols":0,"procs":{},"own_netns":null,"own_ipcns":null}"#;
        assert!(Snapshot::parse(old).unwrap().scanned.is_none());
    }

    #[test]
    fn a_replay_reads_namespaces_from_the_snapshot_not_this_host() {
        use crate::aggregate::World as _;
        let me = std::process::id();
        let mut snap = Snapshot {
            procs: BTreeMap::from([proc(me, 1)]),
            ..Default::default()
        };
        assert!(
            crate::aggregate::SnapshotWorld::new(&snap)
                .ns_inodes(me)
                .is_empty()
        );
        snap.namespaces.insert(me, vec![7]);
        assert_eq!(
            crate::aggregate::SnapshotWorld::new(&snap).ns_inodes(me),
            [7]
        );
    }
}
