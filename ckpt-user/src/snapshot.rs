//! A snapshot: everything a scan learned from the kernel and /proc, serialisable so it can be
//! saved on one host and replayed through resolve → classify → report anywhere, without root.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use ckpt_common::N_OPS_MEMBERS;
use serde::{Deserialize, Serialize};

use crate::facts::FileFact;
use crate::kernel::btf::{BtfError, LoadedBtf, VMLINUX_BTF};
use crate::kernel::kallsyms::{KallsymsError, Symbol, Symbols};
use crate::kernel::privileges::{self, PrivilegeError};
use crate::probe::{Probe, ProbeError};
use crate::resolve;
use crate::scope::{Own, ProcInfo, procfs};

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
}

/// Where the time of a live scan went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timings {
    pub btf: Duration,
    pub load: Duration,
    pub iterate: Duration,
    pub kallsyms: Duration,
    pub procfs: Duration,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub files: Vec<FileFact>,
    /// Member function addresses per ops table, in `ckpt_common::OPS_MEMBERS` order.
    pub ops: BTreeMap<u64, [u64; N_OPS_MEMBERS]>,
    /// The kallsyms entries at those addresses.
    pub symbols: Vec<(u64, Symbol)>,
    pub data_symbols: usize,
    pub procs: BTreeMap<u32, ProcInfo>,
    pub own_netns: Option<u64>,
    pub own_ipcns: Option<u64>,
    #[serde(skip)]
    pub timings: Timings,
}

/// Which tasks the kernel side reports. Filtering there keeps a scan of one process or one
/// container from costing user space in proportion to the whole host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Pid(u32),
    /// A cgroup v2 (its id is the directory's inode number) and everything below it.
    Cgroup {
        id: u64,
        level: u32,
    },
}

impl Snapshot {
    /// Scans the live kernel: the tasks `filter` selects.
    pub fn take(filter: Filter) -> Result<Self, SnapshotError> {
        privileges::ensure_can_load_bpf()?;
        // /proc/kallsyms costs ~40 ms of kernel time: read it on another core meanwhile.
        let kallsyms = std::thread::spawn(|| {
            let t = Instant::now();
            std::fs::read("/proc/kallsyms").map(|b| (b, t.elapsed()))
        });
        let mut timings = Timings::default();
        let t = Instant::now();
        let LoadedBtf {
            mut offsets,
            loader: loader_btf,
        } = LoadedBtf::from_file(Path::new(VMLINUX_BTF))?;
        // The scanner holds BPF fds of its own; it is not what anyone asks about.
        offsets.ignore_tgid = std::process::id();
        // A pid's dump is its subtree (`criu dump -t`): whom its children hold decides which
        // peers are inside, so the kernel reports the whole subtree. Finding it needs every
        // process's parent first.
        let mut known_procs = None;
        let mut targets = None;
        match filter {
            Filter::All => {}
            Filter::Pid(pid) => {
                let procs = procfs::all_procs()?;
                let parents = procs.values().map(|p| (p.pid, p.ppid)).collect();
                targets = Some(crate::scope::subtree(pid, &parents));
                known_procs = Some(procs);
                offsets.filter_tgids = 1;
            }
            Filter::Cgroup { id, level } => {
                offsets.target_cgroup = id;
                offsets.target_cgroup_level = level;
            }
        }
        timings.btf = t.elapsed();
        let t = Instant::now();
        let mut probe = Probe::load(&offsets, &loader_btf)?;
        if let Some(pids) = &targets {
            probe.set_targets(pids)?;
        }
        timings.load = t.elapsed();
        let kallsyms = || {
            kallsyms
                .join()
                .expect("the kallsyms reader does not panic")
                .map_err(KallsymsError::Io)
        };
        let mut snap = Self::collect(&mut probe, known_procs, kallsyms)?;
        snap.timings.btf = timings.btf;
        snap.timings.load = timings.load;
        Ok(snap)
    }

    /// Runs a loaded probe's iterators once. `kallsyms` supplies `/proc/kallsyms`'s text (and
    /// how long reading it took), perhaps read on another thread meanwhile.
    pub fn collect(
        probe: &mut Probe,
        known_procs: Option<BTreeMap<u32, ProcInfo>>,
        kallsyms: impl FnOnce() -> Result<(Vec<u8>, std::time::Duration), KallsymsError>,
    ) -> Result<Self, SnapshotError> {
        let mut timings = Timings::default();
        let t = Instant::now();
        let raw = probe.snapshot()?;
        timings.iterate = t.elapsed();

        let t = Instant::now();
        let (text, read_time) = kallsyms()?;
        let symbols = Symbols::lookup(&text[..], &resolve::wanted_addresses(&raw.ops))?;
        timings.kallsyms = read_time.max(t.elapsed());

        let mut files: Vec<FileFact> = raw.files.iter().map(FileFact::from_file).collect();
        files.extend(raw.vmas.iter().map(FileFact::from_vma));
        refine_deleted_allocation(&mut files);
        crate::scope::map_files::see_mappings_as_criu(&mut files);
        crate::scope::fsnotify::see_watches_as_criu(&mut files);
        let t = Instant::now();
        let procs = read_procs(&files, known_procs);
        timings.procfs = t.elapsed();
        let own = Own::current();
        Ok(Self {
            files,
            ops: raw.ops.into_iter().collect(),
            data_symbols: symbols.data_symbols,
            symbols: symbols.entries(),
            procs,
            own_netns: own.netns,
            own_ipcns: own.ipcns,
            timings,
        })
    }

    pub fn load(path: &Path) -> Result<Self, SnapshotError> {
        let err = |reason: String| SnapshotError::Replay {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
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
        }
    }
}

/// `i_blocks` misses blocks a filesystem has reserved but not yet written (ext4 delayed
/// allocation); `stat(2)`, which CRIU uses against --ghost-limit, counts them. Deleted files
/// are few, so stat them through /proc like CRIU does.
fn refine_deleted_allocation(files: &mut [FileFact]) {
    use std::os::unix::fs::MetadataExt;
    for f in files.iter_mut() {
        if let (Some(fd), crate::facts::FileType::Reg, 0) = (f.fd, f.file_type, f.nlink)
            && let Ok(meta) = std::fs::metadata(format!("/proc/{}/fd/{fd}", f.pid))
        {
            f.allocated = meta.blocks() * 512;
        }
    }
}

/// /proc facts for every process the scan saw (and the target, which may hold no files).
/// A process that exited since the iteration is skipped: it has nothing left to dump.
fn read_procs(
    files: &[FileFact],
    known: Option<BTreeMap<u32, ProcInfo>>,
) -> BTreeMap<u32, ProcInfo> {
    let mut procs = known.unwrap_or_default();
    for f in files {
        if let std::collections::btree_map::Entry::Vacant(e) = procs.entry(f.pid)
            && let Ok(p) = procfs::read_proc(f.pid)
        {
            e.insert(p);
        }
    }
    procs
}
