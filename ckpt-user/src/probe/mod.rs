//! Loads the BPF iterators with this kernel's offsets, runs them, and decodes their records.

mod decode;
mod fd_tables;
mod per_process;
mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{Iter, Program},
};
use ckpt_common::{KernelOffsets, OkFops, ProcFacts};

use decode::StreamDecoder;
pub use decode::{DecodeError, Event, Record, decode_event};
pub use fd_tables::FdTables;

/// The BPF object built by build.rs (empty when the eBPF toolchain was missing at build time).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ckpt-ebpf.o"));

const FILE_PROG: &str = "ckpt_task_file";
/// The file walk that counts ok kinds instead of reporting them (`Purpose::Scan::count_ok`).
const FILE_COUNTING_PROG: &str = "ckpt_task_file_counting";
const VMA_PROG: &str = "ckpt_task_vma";
const PROC_PROG: &str = "ckpt_task";
/// The daemon's table walk, over the same tasks.
const TABLES_PROG: &str = "ckpt_fd_tables";
/// The kernel functions they attach to: `bpf_iter_` and the iterator type.
const FILE_FUNC: &str = "bpf_iter_task_file";
const VMA_FUNC: &str = "bpf_iter_task_vma";
const PROC_FUNC: &str = "bpf_iter_task";

/// Bytes read from an iterator at once: thousands of records per read(), and a buffer that
/// stays small beside the records it decodes to.
const READ_CHUNK: usize = 1 << 20;
/// A host scan's file records cross from the reading thread to the decoding one in chunks of
/// this many bytes, at most this many at once. A chunk is handed over once less than
/// `READ_ROOM` is left in it: the kernel returns up to 8 pages per read() of an iterator.
const CHUNK: usize = 256 << 10;
const CHUNKS_IN_FLIGHT: usize = 4;
const READ_ROOM: usize = 64 << 10;
/// Mapping records passed between the two walks at once, and batches in flight.
const MAPPING_BATCH: usize = 1024;
const MAPPING_BATCHES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this ckpt-watch was built without its BPF programs (the eBPF toolchain was missing at build time): rebuild with the README's first command"
    )]
    NotBuilt,
    #[error("cannot load the BPF object: {0}; is the kernel ≥ 5.8 with BPF iterators enabled?")]
    Load(String),
    #[error(
        "no install-event backend could be attached ({0}): fentry needs a kernel that lets BPF attach through ftrace, kprobe one with CONFIG_KPROBES; drop --backend to take the best this kernel allows (tracepoint at worst)"
    )]
    NoBackend(String),
    #[error(
        "the kernel rejected BPF program {program}: {reason}; run as root on a kernel ≥ 5.8 with CONFIG_BPF_SYSCALL"
    )]
    Program {
        program: &'static str,
        reason: String,
    },
    #[error("cannot read BPF iterator {program}: {source}")]
    Read {
        program: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// One read() of an iterator into `buf`; 0 at its end.
fn read_once(name: &'static str, file: &mut File, buf: &mut [u8]) -> Result<usize, ProbeError> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            // The kernel gives up one read() after a million objects that produced no output
            // (a filtered scan of a busy host) with EAGAIN; the next read() carries on from
            // there.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ProbeError::Read {
                    program: name,
                    source,
                });
            }
        }
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf reads a constant of the running system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

/// Processes a filtered scan iterates one by one, at most: each costs two iterator links,
/// where a whole-host pass visits every open file of the host (~120 ms beside 2,000 × 100).
const PER_PROCESS_MAX: usize = 64;

/// The loaded iterators. Offsets (and the cgroup filter) are fixed at load.
pub struct Probe {
    ebpf: Ebpf,
    /// The file walk loaded: [`FILE_PROG`] or [`FILE_COUNTING_PROG`].
    file_prog: &'static str,
    /// `iter/task_vma` exists (Linux ≥ 5.12); without it mappings are not reported.
    vmas: bool,
    /// The host's processes as `iter/task` told them, read once its program was loaded;
    /// `None` when it was not (not asked for, or refused by this kernel: /proc has to tell).
    procs: Option<Result<Vec<ProcFacts>, ProbeError>>,
    /// The processes a filtered scan visits one by one, when few enough.
    per_process: Vec<u32>,
}

/// The kernel's table of ops tables whose files are ok whatever their state
/// ([`Probe::ok_tables`]).
pub struct OkTables(BpfHashMap<MapData, u64, OkFops>);

impl OkTables {
    /// From now on, the walk counts files of table `f_op` that `ok` describes.
    pub fn insert(&mut self, f_op: u64, ok: OkFops) -> Result<(), ProbeError> {
        self.0
            .insert(f_op, ok, 0)
            .map_err(|e| ProbeError::Load(format!("filling OK_FOPS: {}", error_chain(&e))))
    }
}

pub fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> ProbeError {
    move |e| ProbeError::Program {
        program,
        reason: error_chain(&e),
    }
}

/// The error with its sources, which hold the kernel's errno and the verifier's log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The BPF object, parsed. Parsing needs nothing of the kernel: a scan parses while the BTF it
/// loads the object with is still being read.
pub struct Object(aya::Object);

impl Object {
    pub fn parse() -> Result<Self, ProbeError> {
        if OBJECT.is_empty() {
            return Err(ProbeError::NotBuilt);
        }
        aya::Object::parse(OBJECT)
            .map(Self)
            .map_err(|e| ProbeError::Load(error_chain(&e)))
    }
}

/// What the programs are loaded for. The kernel allocates every map of the object at load,
/// used or not (the daemon's hash maps are preallocated: ~10 ms and ~15 MB of kernel memory),
/// so a scan shrinks the daemon's maps to nothing and the daemon the scan's pid filter.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// One snapshot, of these processes only when `targets` is given; with `processes`, the
    /// host's processes too ([`Probe::processes`]).
    /// With `count_ok`, the file walk counts the files of ops tables put in [`OkTables`] per
    /// process (for about that many processes) instead of reporting them.
    Scan {
        targets: Option<&'a BTreeSet<u32>>,
        processes: bool,
        count_ok: Option<u32>,
    },
    /// Snapshots and live events, with the event ring buffer sized to `ring_bytes` (a power of
    /// two and a multiple of the page size), and room to watch `watched_sockets` TCP sockets.
    Daemon {
        ring_bytes: u32,
        watched_sockets: u32,
    },
}

/// The event maps, which only the daemon's programs use.
const DAEMON_MAPS: [&str; 5] = [
    "TRACKED",
    "WATCHED_SOCKS",
    "OK_FOPS",
    "OK_SOCKS",
    "SHARED_TABLES",
];

/// Ops tables a counting scan can hold as ok: a host has a few hundred tables at most.
const OK_TABLES: u32 = 1024;

/// Ops tables a scan's file walk can report (`SEEN_OPS`, preallocated): ten times what a host
/// holds, and half the daemon's room, which must last it for weeks of loaded modules. Making
/// 8,192 elements cost each scan ~0.25 ms, 3 % of a container's preflight. Beyond it a table
/// goes unreported and its files' kind is unknown, never ok.
const SCAN_SEEN_OPS: u32 = 4096;

impl Probe {
    /// The kernel functions the iterators attach to: all a scan's loads need of the kernel's
    /// BTF.
    pub const ITERATOR_FUNCS: [&str; 3] = [FILE_FUNC, VMA_FUNC, PROC_FUNC];

    /// Loads the iterators of `object` with `offsets` (the process iterator only when `purpose`
    /// asks for it), and the maps sized and filled for `purpose`.
    /// `iter_ids` are the BTF ids of [`Self::ITERATOR_FUNCS`], `None` where the kernel lacks one.
    /// `verifying` is called as the file walk goes to the verifier.
    pub fn load(
        object: Object,
        offsets: &KernelOffsets,
        iter_ids: &[Option<u32>],
        purpose: Purpose,
        verifying: &dyn Fn(),
    ) -> Result<Self, ProbeError> {
        let (targets, processes, count_ok) = match purpose {
            Purpose::Scan {
                targets,
                processes,
                count_ok,
            } => (targets, processes, count_ok),
            Purpose::Daemon { .. } => (None, false, None),
        };
        let mut offsets = *offsets;
        if targets.is_some() {
            offsets.flags |= ckpt_common::FLAG_FILTER_TGIDS;
        }
        if let Purpose::Daemon { .. } = purpose {
            offsets.flags |= ckpt_common::FLAG_WATCH_SOCKETS;
        }
        let file_name = match count_ok {
            Some(_) => FILE_COUNTING_PROG,
            None => FILE_PROG,
        };
        let mut loader = EbpfLoader::new();
        // The object has no CO-RE relocations: every kernel offset it uses is in `offsets`,
        // read from the BTF by kernel::btf. (Stock aya 0.14 would parse the whole BTF for
        // them in `new` anyway; third_party/aya defers that to objects that have some.)
        loader.btf(None);
        loader.override_global("OFFSETS", &offsets, true);
        // A scan links only the iterators it loads, not the daemon's programs nor the other
        // file walk (aya would relocate all of them: ~0.4 ms of each start-up).
        let scanning = [file_name, VMA_PROG, PROC_PROG];
        match purpose {
            Purpose::Scan { targets, .. } => {
                loader.programs_only(&scanning[..if processes { 3 } else { 2 }]);
                let count = targets.map_or(1, |t| t.len().max(1));
                let count = u32::try_from(count).map_err(|_| {
                    ProbeError::Load(format!("{count} processes are too many to filter"))
                })?;
                loader.map_max_entries("TARGET_TGIDS", count);
                for name in DAEMON_MAPS {
                    loader.map_max_entries(name, 1);
                }
                loader.map_max_entries("SEEN_OPS", SCAN_SEEN_OPS);
                if let Some(processes) = count_ok {
                    loader.map_max_entries("OK_FOPS", OK_TABLES);
                    loader.map_max_entries("OK_COUNTS", processes.max(1));
                }
                // A ring buffer is at least a page.
                loader.map_max_entries("EVENTS", page_size());
            }
            Purpose::Daemon {
                ring_bytes,
                watched_sockets,
            } => {
                loader.map_max_entries("TARGET_TGIDS", 1);
                loader.map_max_entries("EVENTS", ring_bytes);
                loader.map_max_entries("WATCHED_SOCKS", watched_sockets);
            }
        }
        let mut ebpf = loader
            .load_parsed(object.0)
            .map_err(|e| ProbeError::Load(error_chain(&e)))?;
        let load = |prog, name, func| Self::load_iter(prog, name, func, iter_ids);
        // The verifier takes most of a short scan's start-up: the iterators are verified at
        // once, one per core (the small process iterator after the mappings'). The processes
        // are read as soon as their iterator is loaded, while the file walk's is still being
        // verified: before any file is walked, so that a process told was there before its
        // files were.
        let (mut file_prog, mut vma_prog, mut proc_prog, mut tables_prog) =
            (None, None, None, None);
        for (name, prog) in ebpf.programs_mut() {
            match name {
                name if name == file_name => file_prog = Some(prog),
                VMA_PROG => vma_prog = Some(prog),
                PROC_PROG => proc_prog = Some(prog),
                TABLES_PROG => tables_prog = Some(prog),
                _ => {}
            }
        }
        let daemon = matches!(purpose, Purpose::Daemon { .. });
        let (files, vmas, procs, tables) = std::thread::scope(|s| {
            let others = s.spawn(|| {
                let vmas = load(vma_prog, VMA_PROG, VMA_FUNC).map(|_| ());
                let procs = processes.then(|| load(proc_prog, PROC_PROG, PROC_FUNC));
                let procs = procs.map(|prog| prog.map(Self::read_processes));
                let tables = daemon.then(|| load(tables_prog, TABLES_PROG, PROC_FUNC).map(|_| ()));
                (vmas, procs, tables)
            });
            verifying();
            let files = load(file_prog, file_name, FILE_FUNC);
            let (vmas, procs, tables) =
                others.join().expect("loading a BPF program does not panic");
            (files, vmas, procs, tables)
        });
        files?;
        tables.transpose()?;
        let procs = match procs {
            None => None,
            Some(Ok(read)) => Some(read),
            Some(Err(e)) => {
                tracing::warn!("processes are read from /proc instead: {e}");
                None
            }
        };
        let vmas = match vmas {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "mappings without an fd are not judged on this kernel (needs ≥ 5.12): {e}"
                );
                false
            }
        };
        let mut probe = Self {
            ebpf,
            file_prog: file_name,
            vmas,
            procs,
            per_process: Vec::new(),
        };
        if let Some(pids) = targets {
            probe.set_targets(pids)?;
        }
        Ok(probe)
    }

    /// Loads iterator `prog` (named `name`), attached to kernel function `func`: one of
    /// [`Self::ITERATOR_FUNCS`], whose BTF ids are `iter_ids`.
    fn load_iter<'p>(
        prog: Option<&'p mut Program>,
        name: &'static str,
        func: &str,
        iter_ids: &[Option<u32>],
    ) -> Result<&'p mut Iter, ProbeError> {
        let prog: &mut Iter = prog
            .ok_or_else(|| ProbeError::Load(format!("program {name} missing from the object")))?
            .try_into()
            .map_err(program_error(name))?;
        let at = Self::ITERATOR_FUNCS.iter().position(|f| *f == func);
        let id = at.and_then(|i| iter_ids.get(i).copied().flatten());
        let id = id.ok_or_else(|| ProbeError::Program {
            program: name,
            reason: format!("this kernel's BTF has no {func} to attach to"),
        })?;
        let t = std::time::Instant::now();
        prog.load_with_btf_id(id).map_err(program_error(name))?;
        // What the verifier walked: the part of start-up a program's shape decides.
        let verified = prog
            .info()
            .ok()
            .and_then(|i| i.verified_instruction_count());
        tracing::debug!(program = name, ?verified, took = ?t.elapsed(), "verified");
        Ok(prog)
    }

    /// Fills the pid filter that `FLAG_FILTER_TGIDS` turned on at load.
    fn set_targets(&mut self, pids: &BTreeSet<u32>) -> Result<(), ProbeError> {
        let map = self
            .ebpf
            .map_mut("TARGET_TGIDS")
            .ok_or_else(|| ProbeError::Load("map TARGET_TGIDS missing".into()))?;
        let mut targets: aya::maps::HashMap<_, u32, u8> =
            aya::maps::HashMap::try_from(map).map_err(|e| ProbeError::Load(error_chain(&e)))?;
        for pid in pids {
            targets
                .insert(pid, 0, 0)
                .map_err(|e| ProbeError::Load(error_chain(&e)))?;
        }
        self.visit_only(pids);
        Ok(())
    }

    /// Tells the probe that only `pids` can hold what its filter reports (a cgroup's
    /// processes, read from `cgroup.procs`): when few, the iterators visit them one by one
    /// instead of every task of the host. The filter still decides what is reported.
    pub fn visit_only(&mut self, pids: &BTreeSet<u32>) {
        if !pids.is_empty() && pids.len() <= PER_PROCESS_MAX {
            self.per_process = pids.iter().copied().collect();
        }
    }

    /// Runs the kernel skipped, over every loaded program: a tracing program that fires on a
    /// CPU where it is running already (a TCP state change in softirq, while the same program
    /// handles another) is not run, and nothing else tells. Programs whose count cannot be read
    /// count 0.
    pub fn recursion_misses(&self) -> BTreeMap<&str, u64> {
        self.ebpf
            .programs()
            .filter_map(|(name, prog)| Some((name, prog.fd().ok()?)))
            .filter_map(|(name, fd)| Some((name, sys::recursion_misses(fd.as_fd()).ok()?)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The loaded object, for the daemon's event programs and maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// An iterator running program `name` over every task, or over process `pid`'s.
    fn iterator(&mut self, name: &'static str, pid: Option<u32>) -> Result<File, ProbeError> {
        let prog: &mut Iter = self
            .ebpf
            .program_mut(name)
            .expect("loaded in Probe::load")
            .try_into()
            .map_err(program_error(name))?;
        if let Some(pid) = pid {
            let fd = prog.fd().map_err(program_error(name))?;
            return per_process::open(fd.as_fd(), pid).map_err(|source| ProbeError::Read {
                program: name,
                source,
            });
        }
        Self::whole_iterator(prog, name)
    }

    /// An iterator running the loaded program `prog` (named `name`) over every task.
    fn whole_iterator(prog: &mut Iter, name: &'static str) -> Result<File, ProbeError> {
        let link_id = prog.attach().map_err(program_error(name))?;
        let link = prog.take_link(link_id).map_err(program_error(name))?;
        link.into_file().map_err(|e| ProbeError::Program {
            program: name,
            reason: error_chain(&e),
        })
    }

    /// Reads an iterator to its end, decoding its records as they are read: the stream (200
    /// bytes per open file) is never held whole.
    fn drain(
        name: &'static str,
        mut file: File,
        buf: &mut [u8],
        each: &mut dyn FnMut(Record),
    ) -> Result<(), ProbeError> {
        let mut decoder = StreamDecoder::default();
        loop {
            let n = read_once(name, &mut file, buf)?;
            if n == 0 {
                return Ok(decoder.finish()?);
            }
            decoder.feed(&buf[..n], each)?;
        }
    }

    /// As [`Probe::drain`], with the reads on another thread of `scope`: the kernel walks the
    /// tasks' files and runs the program inside read(), most of a host scan's time, while this
    /// thread decodes what the last reads returned.
    fn drain_beside<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        name: &'static str,
        mut file: File,
        each: &mut dyn FnMut(Record),
    ) -> Result<(), ProbeError> {
        let (full_tx, full) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(CHUNKS_IN_FLIGHT);
        let (empty_tx, empty) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = scope.spawn(move || {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            loop {
                let n = read_once(name, &mut file, &mut chunk[filled..])?;
                filled += n;
                if n != 0 && CHUNK - filled >= READ_ROOM {
                    continue;
                }
                if filled != 0 {
                    // No decoder: it failed, and its error is the one told.
                    if full_tx.send((chunk, filled)).is_err() {
                        return Ok(());
                    }
                    chunk = empty.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                    filled = 0;
                }
                if n == 0 {
                    return Ok::<_, ProbeError>(());
                }
            }
        });
        let mut decoder = StreamDecoder::default();
        for (chunk, filled) in full {
            decoder.feed(&chunk[..filled], each)?;
            let _ = empty_tx.send(chunk);
        }
        reader.join().expect("reading an iterator does not panic")?;
        Ok(decoder.finish()?)
    }

    /// Every process of the host, as `iter/task` told it at load; `None` when it was not
    /// loaded (not asked for, or refused by this kernel): /proc has to tell. Taken out of the
    /// probe: `None` when asked again.
    pub fn processes(&mut self) -> Result<Option<Vec<ProcFacts>>, ProbeError> {
        self.procs.take().transpose()
    }

    /// Which processes use which fd table now, for a probe loaded for the daemon.
    pub fn fd_tables(&mut self) -> Result<FdTables, ProbeError> {
        let file = self.iterator(TABLES_PROG, None)?;
        let mut tables = FdTables::default();
        let mut buf = vec![0u8; READ_CHUNK];
        Self::drain(TABLES_PROG, file, &mut buf, &mut |r| {
            if let Record::Table { tgid, files } = r {
                tables.note(tgid, files);
            }
        })?;
        Ok(tables)
    }

    /// Runs the process iterator `prog` once.
    fn read_processes(prog: &mut Iter) -> Result<Vec<ProcFacts>, ProbeError> {
        let file = Self::whole_iterator(prog, PROC_PROG)?;
        let mut procs = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        Self::drain(PROC_PROG, file, &mut buf, &mut |r| {
            if let Record::Proc(p) = r {
                procs.push(p);
            }
        })?;
        Ok(procs)
    }

    /// The ops tables whose files the walk counts instead of reporting, for a scan loaded
    /// with `count_ok` (once: taken out of the probe, so that it can be filled meanwhile).
    pub fn ok_tables(&mut self) -> Result<OkTables, ProbeError> {
        let map = self
            .ebpf
            .take_map("OK_FOPS")
            .ok_or_else(|| ProbeError::Load("map OK_FOPS missing or taken".into()))?;
        Ok(OkTables(
            BpfHashMap::try_from(map).map_err(|e| ProbeError::Load(error_chain(&e)))?,
        ))
    }

    /// Per process, the files the walk counted as ok instead of reporting them.
    pub fn ok_counts(&self) -> Result<BTreeMap<u32, u64>, ProbeError> {
        let Some(aya::maps::Map::HashMap(map)) = self.ebpf.map("OK_COUNTS") else {
            return Err(ProbeError::Load("hash map OK_COUNTS missing".into()));
        };
        let reading = |e: String| ProbeError::Load(format!("reading OK_COUNTS: {e}"));
        let info = map.info().map_err(|e| reading(error_chain(&e)))?;
        let elements = sys::hash_elements(map.fd().as_fd(), info.max_entries())
            .map_err(|e| reading(e.to_string()))?;
        Ok(elements.into_iter().collect())
    }

    /// Runs both iterators once, handing `each` every open file and file-backed mapping of
    /// every task (of the targets, after [`Probe::set_targets`]), and each ops table the first
    /// time it is seen.
    pub fn snapshot(&mut self, each: &mut dyn FnMut(Record)) -> Result<(), ProbeError> {
        if !self.per_process.is_empty() && self.snapshot_per_process(each)? {
            return Ok(());
        }
        let files = self.iterator(self.file_prog, None)?;
        let vmas = if self.vmas {
            Some(self.iterator(VMA_PROG, None)?)
        } else {
            None
        };
        // The mappings are walked on another core meanwhile: walking every VMA of the host
        // costs about a third of walking every fd. The two programs share no per-CPU state.
        // Their records come over in small batches, taken between the files' records, so
        // that tens of thousands of them are never held twice.
        std::thread::scope(|scope| {
            let (batches_tx, batches) = std::sync::mpsc::sync_channel(MAPPING_BATCHES);
            let mappings = vmas.map(|vmas| {
                scope.spawn(move || {
                    let mut batch = Vec::with_capacity(MAPPING_BATCH);
                    let mut buf = vec![0u8; READ_CHUNK];
                    Self::drain(VMA_PROG, vmas, &mut buf, &mut |r| {
                        batch.push(r);
                        if batch.len() == MAPPING_BATCH {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(MAPPING_BATCH));
                            // Gone only once the files' walk failed; its error is the one told.
                            let _ = batches_tx.send(full);
                        }
                    })?;
                    let _ = batches_tx.send(batch);
                    Ok::<_, ProbeError>(())
                })
            });
            let mut files_seen = 0usize;
            Self::drain_beside(scope, self.file_prog, files, &mut |r| {
                each(r);
                files_seen += 1;
                if files_seen.is_multiple_of(MAPPING_BATCH) {
                    batches.try_iter().flatten().for_each(&mut *each);
                }
            })?;
            batches.iter().flatten().for_each(&mut *each);
            if let Some(mappings) = mappings {
                mappings
                    .join()
                    .expect("reading an iterator does not panic")?;
            }
            Ok(())
        })
    }

    /// The targets' files and mappings, process by process; false (and nothing reported)
    /// when this kernel cannot scope an iterator to a process.
    fn snapshot_per_process(&mut self, each: &mut dyn FnMut(Record)) -> Result<bool, ProbeError> {
        let mut buf = vec![0u8; READ_CHUNK];
        let pids = self.per_process.clone();
        for (i, &pid) in pids.iter().enumerate() {
            let files = match self.iterator(self.file_prog, Some(pid)) {
                Ok(files) => files,
                Err(e) if i == 0 => {
                    tracing::debug!("scanning every task: {e}");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            Self::drain(self.file_prog, files, &mut buf, each)?;
            if self.vmas {
                let vmas = self.iterator(VMA_PROG, Some(pid))?;
                Self::drain(VMA_PROG, vmas, &mut buf, each)?;
            }
        }
        Ok(true)
    }
}
