//! `ckpt-watch daemon`: a full snapshot, then live events; state per workload (DESIGN.md §7),
//! an alert when a workload's verdict changes and holds, Prometheus metrics, and periodic and
//! on-loss rescans so state converges to what a fresh `ckpt-watch --pid ROOT --tree` reports.

mod alert;
mod backend;
mod budget;
mod health;
mod http;
mod metrics;
mod ring;
mod state;
mod syscalls;

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::signal::unix::{SignalKind, signal};

pub use backend::Backend;
use state::{GivenBy, Judging, KernelUpdate, Outcome, Settings, State};

use crate::cache::Cache;
use crate::checkpointer::engine::OptionsError;
use crate::checkpointer::given::Given;
use crate::classify::Verdict;
use crate::cli::Exit;
use crate::cli::JudgingArgs;
use crate::facts::FileFact;
use crate::judge::Judge;
use crate::kernel::btf::{LoadedBtf, VMLINUX_BTF};
use crate::kernel::kallsyms::{KallsymsError, Symbols};
use crate::kernel::kallsyms_cache;
use crate::kernel::privileges;
use crate::probe::{self, Event, FdTables, Probe, Purpose, decode_event};
use crate::report::printable;
use crate::resolve::{self, Catalogue};
use crate::scope::container_id::{ContainerName, Runtime};
use crate::scope::procfs;
use crate::scope::workload::{Kind, Names};
use crate::snapshot::Snapshot;
use alert::{Alert, Format, Sink, Writer};
use budget::MapsBudget;
use health::{Health, Shared, SharedState, lock};
use http::Listen;
use metrics::label;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Full rescan period (e.g. 60s, 5m; 1s to 7d).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_rescan)]
    pub rescan: Duration,
    /// How long a workload's new verdict must hold before it is alerted (e.g. 1s, 500ms, 0s):
    /// a process that lives shorter never alerts.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_settle)]
    pub settle: Duration,
    /// Alerts written per minute at most (as many at once); the rest are counted and logged.
    #[arg(long, value_name = "N", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_alerts_per_minute: u32,
    /// Put the deciding member's command line in alerts (command lines can carry secrets).
    #[arg(long)]
    pub alert_cmdline: bool,
    /// Series of ckpt_watch_workload_verdict at most (the worst verdicts first); the rest are
    /// counted in ckpt_watch_workload_series_dropped_total.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_workload_series: u32,
    /// Event ring buffer size in bytes (a power of two, at least one page).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,
    /// TCP sockets the kernel side can watch in a state their kind is ok in (each costs ~100
    /// bytes of kernel memory, allocated at start); beyond them such a socket is judged unknown.
    #[arg(long, value_name = "N", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub watched_sockets: u32,
    /// Append alerts to FILE instead of stdout (reopened on SIGUSR1).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Alert format (default: text on a terminal, else json).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Metrics and health: ADDR:PORT or unix:/path. Never a non-local address unless given.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9782")]
    pub listen: Listen,
    /// Use this install-event backend (default: the best the kernel allows).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
}

/// The share of each second the loop may spend reading /proc/PID/maps (`budget`).
const MAPS_BUDGET: Duration = Duration::from_millis(50);

/// The shortest time from the end of a rescan caused by lost events to the start of the next.
const LOSS_RESCAN_GAP: Duration = Duration::from_secs(2);

/// Bytes of events read from the ring buffer that may wait for the daemon's loop (a rescan
/// holds it for hundreds of milliseconds beside thousands of processes): about 80,000
/// installs. More are dropped, counted as lost, and answered with a rescan.
const BACKLOG_BYTES: usize = 16 << 20;

/// `s` for an error line: escaped, and cut short (the value is whatever was typed).
fn quoted(s: &str) -> String {
    const MAX: usize = 32;
    let mut q: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        q.push_str("...");
    }
    format!("`{q}`")
}

/// `60s`, `5m`, `500ms`, `1h`, `2d` (a bare number is seconds), between `min` and `max`.
fn parse_duration(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let out_of_range = || {
        format!(
            "{} is not between {}s and {}s",
            quoted(s),
            min.as_secs_f64(),
            max.as_secs()
        )
    };
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{}: want a number and a unit (ms, s, m, h, d)",
                quoted(s)
            ));
        }
    };
    if num.is_empty() {
        return Err(format!("{}: want a number before the unit", quoted(s)));
    }
    // Digits beyond u64, or a product beyond it, are as absurd as any value over the maximum.
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(ms_per_unit))
        .map(Duration::from_millis)
        .filter(|d| (min..=max).contains(d))
        .ok_or_else(out_of_range)
}

/// A rescan period: a second (a rescan reads every process's files) to a week.
fn parse_rescan(s: &str) -> Result<Duration, String> {
    parse_duration(
        s,
        Duration::from_secs(1),
        Duration::from_secs(7 * 24 * 3600),
    )
}

/// A settle time: 0 (alert at once) to an hour.
fn parse_settle(s: &str) -> Result<Duration, String> {
    parse_duration(s, Duration::ZERO, Duration::from_secs(3600))
}

/// How often events' changes are judged and settled: often enough that a verdict that holds
/// is alerted soon after `settle`, seldom enough that a storm of events costs one judgement
/// of each workload it touched per tick.
fn settle_tick(settle: Duration) -> Duration {
    (settle / 4).clamp(Duration::from_millis(25), Duration::from_millis(250))
}

/// The options in force for each engine a workload here may be checkpointed by.
fn given_by(judge: &Judge) -> Result<GivenBy, OptionsError> {
    let runtimes = Runtime::ALL
        .into_iter()
        .map(|r| Ok((r, judge.options(judge.engine_for(Some(r)))?)))
        .collect::<Result<_, OptionsError>>()?;
    Ok(GivenBy {
        default: judge.options(judge.engine_for(None))?,
        runtimes,
    })
}

/// A container's own options, when its runc config file is not runc.conf. A file that cannot
/// be read or parsed is logged, and the engine's options stand for it.
fn annotated(judge: &Judge, c: &ContainerName) -> Option<Given> {
    match judge.annotated(c)? {
        Ok(given) => Some(given),
        Err(e) => {
            tracing::error!(container = c.short_id(), "{e}");
            None
        }
    }
}

/// This host's name, for alerts read from several hosts.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes"))?;
    if !n.is_power_of_two() || n < 4096 {
        return Err(format!("{n} must be a power of two of at least 4096 bytes"));
    }
    Ok(n)
}

fn kernel_maps(probe: &mut Probe) -> anyhow::Result<KernelMaps> {
    let ebpf = probe.ebpf_mut();
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .with_context(|| format!("BPF map {name} missing"))
    };
    Ok(KernelMaps {
        events: RingBuf::try_from(take("EVENTS")?)?,
        ok_fops: BpfHashMap::try_from(take("OK_FOPS")?)?,
        ok_socks: BpfHashMap::try_from(take("OK_SOCKS")?)?,
        tracked: BpfHashMap::try_from(take("TRACKED")?)?,
        shared_tables: BpfHashMap::try_from(take("SHARED_TABLES")?)?,
        lost: PerCpuArray::try_from(take("LOST")?)?,
        unreported: PerCpuArray::try_from(take("UNREPORTED")?)?,
        filtered: PerCpuArray::try_from(take("FILTERED")?)?,
        watches: PerCpuArray::try_from(take("WATCHES")?)?,
    })
}

struct KernelMaps {
    events: RingBuf<MapData>,
    ok_fops: BpfHashMap<MapData, u64, ckpt_common::OkFops>,
    ok_socks: BpfHashMap<MapData, ckpt_common::OkSock, u32>,
    tracked: BpfHashMap<MapData, u64, u8>,
    shared_tables: BpfHashMap<MapData, u64, u64>,
    lost: PerCpuArray<MapData, u64>,
    unreported: PerCpuArray<MapData, u64>,
    filtered: PerCpuArray<MapData, u64>,
    /// Watches of TCP sockets started, and refused by a full map.
    watches: PerCpuArray<MapData, u64>,
}

/// Every entry of a per-CPU counter map, on every CPU.
fn per_cpu_sum(map: &PerCpuArray<MapData, u64>) -> u64 {
    (0..map.len()).map(|i| per_cpu_at(map, i)).sum()
}

fn per_cpu_at(map: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    map.get(&index, 0).map_or(0, |v| v.iter().sum())
}

/// The loop's judging context: /proc as it is at each question.
macro_rules! judging {
    ($daemon:expr) => {
        Judging {
            profile: &$daemon.judge.profile,
            given: &$daemon.given,
            annotated: &|c| annotated(&$daemon.judge, c),
            read_proc: &|pid| procfs::read_proc(pid).ok(),
            exited: &procfs::exited,
            mapped: &|pid, f| $daemon.maps_budget.mappings_of(pid, f.dev, f.ino),
        }
    };
}

/// Everything the event loop owns.
struct Daemon {
    probe: Probe,
    state: State,
    judge: Judge,
    given: GivenBy,
    /// Container names from the engines' state files, read again at each rescan.
    names: Names,
    /// The clock settle times are measured on.
    started: Instant,
    maps_budget: MapsBudget,
    hostname: String,
    alert_cmdline: bool,
    max_workload_series: usize,
    /// Workloads already counted as dropped from the workload metric.
    series_dropped: std::collections::HashSet<(Kind, String)>,
    catalogue: Catalogue,
    /// The addresses of the functions the catalogue identifies tables by.
    catalogue_functions: Symbols,
    tracked: BpfHashMap<MapData, u64, u8>,
    ok_fops: BpfHashMap<MapData, u64, ckpt_common::OkFops>,
    ok_socks: BpfHashMap<MapData, ckpt_common::OkSock, u32>,
    /// Fd tables more than one process uses, by when they were last seen so.
    shared_tables: BpfHashMap<MapData, u64, u64>,
    lost: PerCpuArray<MapData, u64>,
    unreported: PerCpuArray<MapData, u64>,
    filtered: PerCpuArray<MapData, u64>,
    watches: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    /// By the kernel's index: watched sockets, compat fds, shared fd tables.
    unreported_seen: [u64; 3],
    filtered_seen: u64,
    /// By the kernel's index: started, refused.
    watches_seen: [u64; 2],
    /// A kind of TCP socket was given the states it is ok in since the last rescan.
    watches_offered: bool,
    alerts: Writer,
    format: Format,
    shared: SharedState,
    /// `ckpt_watch_events_total`'s counters, each taken from the family at its kind's first
    /// event (when its series appears): an event then costs an atomic add, not the shared
    /// lock, a label's allocations and a hash.
    event_counters: Vec<(&'static str, prometheus_client::metrics::counter::Counter)>,
}

impl Daemon {
    /// Applies what an event or a rescan produced to the kernel maps.
    fn apply(&mut self, out: Outcome) {
        for update in out.kernel {
            let result = match update {
                KernelUpdate::Track(k) => self.tracked.insert(k, 0, 0),
                KernelUpdate::Untrack(k) => self.tracked.remove(&k).or(Ok(())),
                KernelUpdate::AlwaysOk(f_op, ok) => self.ok_fops.insert(f_op, ok, 0),
                KernelUpdate::AlwaysOkSocket(kind) => {
                    self.ok_socks.insert(kind, ckpt_common::ANY_STATE, 0)
                }
                KernelUpdate::OkSocketStates(kind, mask) => {
                    // The sockets of this kind already open were found with other states (or
                    // none) to watch them in: the next rescan watches them by these.
                    self.watches_offered = true;
                    self.ok_socks.insert(kind, mask, 0)
                }
                KernelUpdate::ForgetAlwaysOk => self.forget_always_ok(),
            };
            if let Err(e) = result {
                tracing::warn!("updating a BPF map: {e}");
            }
        }
    }

    /// Judges the workloads events touched; writes the alerts whose changes held, logs and
    /// counts those over the rate limit; publishes every workload's verdict.
    fn settle(&mut self) {
        let j = judging!(self);
        let settled = self.state.settle(&j, &self.names, self.started.elapsed());
        let shared = self.shared.clone();
        let mut shared = lock(&shared);
        for change in settled.alerts {
            let event = change.event;
            let alert = Alert::new(change, &self.hostname, self.alert_cmdline);
            let line = match self.format {
                Format::Json => serde_json::to_string(&alert).unwrap_or_default(),
                Format::Text => alert.text(),
            };
            // The writer counts what it wrote and what failed; here only what it never got.
            if let Err(why) = self.alerts.send(event, line) {
                let w = &alert.workload;
                tracing::warn!(
                    event,
                    kind = w.kind.as_str(),
                    id = %printable(&w.id),
                    name = %printable(&w.name),
                    root = w.root,
                    verdict = alert.verdict.as_str(),
                    "alert dropped: {why}"
                );
                shared
                    .metrics
                    .alerts_dropped
                    .get_or_create(&label("reason", why.reason()))
                    .inc();
                shared.watch.alerts_dropped_at = Some(Instant::now());
            }
        }
        for change in settled.suppressed {
            let w = &change.workload;
            tracing::warn!(
                event = change.event,
                kind = w.kind.as_str(),
                id = %printable(&w.id),
                name = %printable(&w.name),
                root = w.root,
                verdict = change.verdict.as_str(),
                "alert over --max-alerts-per-minute: not written"
            );
            shared
                .metrics
                .alerts_suppressed
                .get_or_create(&label("event", change.event))
                .inc();
        }
        shared.workloads = self.state.workloads();
        self.publish_workloads(&mut shared);
    }

    /// The workload metrics from the settled verdicts: counts by kind for every workload, one
    /// series per container and unit up to the cap, the worst first.
    fn publish_workloads(&mut self, shared: &mut Shared) {
        let m = &shared.metrics;
        m.workloads.clear();
        m.workload_verdict.clear();
        let mut named = vec![];
        for w in &shared.workloads {
            let Some(v) = w.verdict else { continue };
            let kind = w.workload.kind.as_str();
            m.workloads
                .get_or_create(&vec![("kind", kind.into()), ("verdict", v.as_str().into())])
                .inc();
            if w.workload.kind != Kind::Session {
                named.push((v, &w.workload));
            }
        }
        named.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
        let mut dropped = std::collections::HashSet::new();
        for (i, (v, w)) in named.into_iter().enumerate() {
            if i < self.max_workload_series {
                let labels = vec![
                    ("kind", w.kind.as_str().into()),
                    ("id", w.id.clone()),
                    ("name", w.name.clone()),
                    ("verdict", v.as_str().into()),
                ];
                m.workload_verdict.get_or_create(&labels).set(1);
                continue;
            }
            let key = (w.kind, w.id.clone());
            if !self.series_dropped.contains(&key) {
                m.workload_series_dropped.inc();
            }
            dropped.insert(key);
        }
        // A workload dropped, then shown, then dropped again is counted again.
        self.series_dropped = dropped;
        shared.health.workloads = shared.workloads.len();
    }

    /// Empties the kernel's always-ok filters.
    fn forget_always_ok(&mut self) -> Result<(), aya::maps::MapError> {
        let tables: Vec<u64> = self.ok_fops.keys().collect::<Result<_, _>>()?;
        for f_op in tables {
            self.ok_fops.remove(&f_op)?;
        }
        let kinds: Vec<ckpt_common::OkSock> = self.ok_socks.keys().collect::<Result<_, _>>()?;
        for kind in kinds {
            self.ok_socks.remove(&kind)?;
        }
        Ok(())
    }

    /// A full rescan with the loaded iterators.
    fn reconcile(&mut self, reason: &str) -> anyhow::Result<()> {
        let t = Instant::now();
        // Parsed as it is read: its 8 MB of text would add to the host's files at the peak.
        let read = |wanted: &_| {
            let text = std::fs::File::open("/proc/kallsyms")?;
            Ok((Symbols::lookup(text, wanted)?, Duration::ZERO))
        };
        // On the events' clock: what they tell from before it, the snapshot tells too.
        let taken_at = monotonic_ns();
        // Marked before the file walk: an fd installed in a shared table since is either
        // walked or asks for the next rescan.
        let tables = self.probe.fd_tables().context("reading the fd tables")?;
        self.mark_shared_tables(&tables, taken_at);
        // This walk watches the idle TCP sockets of every kind offered so far.
        self.watches_offered = false;
        let snap = Snapshot::collect(&mut self.probe, None, None, read, false, None)
            .context("rescanning")?;
        let new_ops = resolve::resolve(&snap.ops_members(), &snap.symbols(), &self.catalogue);
        let renamed = self.state.learn_ops(&judging!(self), new_ops);
        self.apply(renamed);
        self.names = Names::read(Path::new("/"));
        let j = judging!(self);
        let out = self.state.reconcile(&j, snap, taken_at);
        self.apply(out);
        // A rescan holds the host's every fd at once, then keeps a few: hand the freed peak
        // back to the system rather than keep it as the resident size between rescans.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe {
            libc::malloc_trim(0);
        }
        let mut shared = lock(&self.shared);
        shared
            .metrics
            .reconciles
            .get_or_create(&label("reason", reason))
            .inc();
        shared
            .metrics
            .reconcile_seconds
            .observe(t.elapsed().as_secs_f64());
        shared.health.reconciles += 1;
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        shared.metrics.last_rescan.set(unix_time.as_secs_f64());
        tracing::info!(reason, elapsed = ?t.elapsed(), processes = self.state.process_count(), "rescan");
        Ok(())
    }

    /// Tells the kernel the fd tables a walk begun at `walked_at` found shared, and forgets the
    /// ones marked before it that it did not: unshared or freed since, their addresses free
    /// for tables no other process uses. A mark a fork made meanwhile stays.
    fn mark_shared_tables(&mut self, tables: &FdTables, walked_at: u64) {
        let unshared: Vec<u64> = self
            .shared_tables
            .iter()
            .filter_map(Result::ok)
            .filter(|&(files, seen)| seen < walked_at && !tables.is_shared(files))
            .map(|(files, _)| files)
            .collect();
        for files in unshared {
            let _ = self.shared_tables.remove(&files);
        }
        let mut refused = 0;
        for files in tables.shared() {
            if self.shared_tables.insert(files, walked_at, 0).is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::warn!(
                refused,
                "the kernel's map of shared fd tables is full: fds installed in those tables \
                 are seen by the other processes only at the next rescan"
            );
        }
    }

    /// Names a newly seen ops table before any file of it is judged: from the catalogue's
    /// functions resolved at start when it is a known kind (no kallsyms read on the alert's
    /// path), else from kallsyms, through the copy scans keep ([`kallsyms_cache`]): the
    /// kernel formats its whole text afresh for every reader, ~40 ms of CPU, and a daemon
    /// meets several such tables soon after its start (three in a TCP storm here).
    fn ops_seen(&mut self, f_op: u64, members: [u64; ckpt_common::N_OPS_MEMBERS]) {
        self.state.ops_seen(f_op, members);
        let one = std::collections::HashMap::from([(f_op, members)]);
        let known = resolve::resolve(&one, &self.catalogue_functions, &self.catalogue);
        if known.values().all(|id| id.via == resolve::Via::Members) {
            let out = self.state.learn_ops(&judging!(self), known);
            self.apply(out);
            return;
        }
        let symbols = kallsyms_cache::read(&Cache::system())
            .map_err(KallsymsError::from)
            .and_then(|index| Symbols::lookup_indexed(&index, &resolve::wanted_addresses(&one)));
        match symbols {
            Ok(symbols) => {
                let named = resolve::resolve(&one, &symbols, &self.catalogue);
                let out = self.state.learn_ops(&judging!(self), named);
                self.apply(out);
            }
            Err(e) => tracing::warn!("naming ops table {f_op:#x}: {e}"),
        }
    }

    fn events(&mut self, batch: &[Vec<u8>]) {
        for item in batch {
            self.event(item);
        }
    }

    fn event(&mut self, bytes: &[u8]) {
        let event = match decode_event(bytes) {
            Ok(e) => e,
            Err(e) => {
                // One bad record must not stop the daemon; a rescan repairs what it hid.
                tracing::warn!("undecodable event: {e}");
                return;
            }
        };
        if let Event::Ops(f_op, members) = event {
            self.ops_seen(f_op, members);
            self.count_event("ops");
            return;
        }
        let j = judging!(self);
        let (kind, out) = match event {
            Event::Ops(..) => unreachable!("handled above"),
            Event::Installed(rec) => ("install", self.state.installed(&j, &rec, &fd_still_open)),
            Event::Task(ev) => {
                let kind = match ev.kind {
                    ckpt_common::task_event::FORK => "fork",
                    ckpt_common::task_event::EXEC => "exec",
                    ckpt_common::task_event::EXIT => "exit",
                    ckpt_common::task_event::REFRESH => "refresh",
                    _ => "close",
                };
                (kind, self.state.task(&j, &ev, &fd_still_open))
            }
        };
        self.count_event(kind);
        self.apply(out);
    }

    fn count_event(&mut self, kind: &'static str) {
        if let Some((_, counter)) = self.event_counters.iter().find(|(k, _)| *k == kind) {
            counter.inc();
            return;
        }
        let counter = lock(&self.shared)
            .metrics
            .events
            .get_or_create(&label("kind", kind))
            .clone();
        counter.inc();
        self.event_counters.push((kind, counter));
    }

    /// Counts events lost and filtered in the kernel, and processes by verdict (on the tick, not
    /// per event: counting walks every process). Says why to rescan when events were lost,
    /// watched sockets changed state where the kernel could not report them, a compat syscall
    /// passed fds it could not read, an fd was reported in a table other processes share (or
    /// such a table found no room in the kernel's map), or a kind of TCP socket got states to
    /// be watched in, since.
    /// `backlog_dropped`: events read from the ring but dropped for want of room, so far.
    fn check_counters(&mut self, backlog_dropped: u64) -> Option<&'static str> {
        let by_verdict = self.state.processes_by_verdict();
        // Runs of an event program the kernel skipped are events lost too.
        let ring = per_cpu_sum(&self.lost);
        let skipped = self.probe.recursion_misses();
        let lost = ring + backlog_dropped + skipped.values().sum::<u64>();
        let unreported = [0, 1, 2].map(|i| per_cpu_at(&self.unreported, i));
        let new_unreported =
            [0, 1, 2].map(|i| unreported[i].saturating_sub(self.unreported_seen[i]));
        self.unreported_seen = unreported;
        let filtered = per_cpu_sum(&self.filtered);
        let mut shared = lock(&self.shared);
        shared.watch.loop_tick = Instant::now();
        for v in [
            Verdict::Ok,
            Verdict::Needs,
            Verdict::Unknown,
            Verdict::Blocks,
        ] {
            let n = by_verdict.get(&v).copied().unwrap_or(0);
            shared
                .metrics
                .processes
                .get_or_create(&label("verdict", v.as_str()))
                .set(n as i64);
        }
        shared.health.processes = self.state.process_count();
        shared
            .metrics
            .events_filtered
            .inc_by(filtered.saturating_sub(self.filtered_seen));
        self.filtered_seen = filtered;
        let watches = [0, 1].map(|i| per_cpu_at(&self.watches, i));
        for (i, outcome) in ["started", "refused"].into_iter().enumerate() {
            shared
                .metrics
                .socket_watches
                .get_or_create(&label("outcome", outcome))
                .inc_by(watches[i].saturating_sub(self.watches_seen[i]));
        }
        // Once: a host that fills the map refuses on and on, and the metric counts them all.
        if watches[1] > 0 && self.watches_seen[1] == 0 {
            tracing::warn!(
                refused = watches[1],
                "the kernel's map of watched TCP sockets is full: sockets it could not watch are judged unknown"
            );
        }
        self.watches_seen = watches;
        let new_lost = lost.saturating_sub(self.lost_seen);
        self.lost_seen = lost;
        if new_lost > 0 {
            shared.metrics.events_lost.inc_by(new_lost);
            shared.health.events_lost = lost;
            shared.watch.events_lost_at = Some(Instant::now());
            tracing::warn!(
                lost = new_lost,
                ring,
                backlog = backlog_dropped,
                ?skipped,
                "events lost (ring buffer or backlog full, or runs the kernel skipped; totals so far): rescanning"
            );
            return Some("lost-events");
        }
        let watches_offered = std::mem::take(&mut self.watches_offered);
        let [sockets, compat, shared_tables] = new_unreported;
        [
            (compat, "compat-fds"),
            (shared_tables, "shared-tables"),
            (sockets, "unreported-sockets"),
            (u64::from(watches_offered), "socket-watches"),
        ]
        .into_iter()
        .find_map(|(n, reason)| (n > 0).then_some(reason))
    }

    /// SIGHUP: the profile, CRIU's config files and the CRIU found are read again.
    fn reload_profile(&mut self, judging: &JudgingArgs) {
        let judged = Judge::new(judging).and_then(|j| Ok((given_by(&j)?, j)));
        match judged {
            Ok((given, judge)) => {
                tracing::info!("profile reloaded: {}", judge.profile_source);
                self.judge = judge;
                self.given = given;
                let out = self.state.profile_changed(&judging!(self));
                self.apply(out);
                if let Err(e) = self.reconcile("reload") {
                    tracing::error!("{e:#}");
                }
            }
            Err(e) => tracing::error!("SIGHUP: keeping the old profile: {e}"),
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, which times the events.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// After an exec, or for an install from before a rescan: is this fd still the same file?
fn fd_still_open(pid: u32, f: &FileFact) -> bool {
    let Some(fd) = f.fd else { return false };
    std::fs::metadata(Path::new(&format!("/proc/{pid}/fd/{fd}"))).is_ok_and(|m| m.ino() == f.ino)
}

pub fn run(args: &DaemonArgs, judging: &JudgingArgs) -> anyhow::Result<Exit> {
    // glibc gives each thread that allocates its own arena, and what a start-up thread (a BTF
    // parse) freed stays resident in it: +7 to +14 MB steady beside 2,000 x 100 fds. After the
    // start only the loop and the ring buffer's reader allocate; one arena is all they need.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(args, judging))
}

/// How long the alert writer may take to finish what is queued at exit (it may be stuck).
const ALERT_DRAIN: Duration = Duration::from_millis(500);

/// The signals the daemon takes.
const SIGNALS: [libc::c_int; 4] = [libc::SIGHUP, libc::SIGUSR1, libc::SIGTERM, libc::SIGINT];

/// Blocks (`SIG_BLOCK`) or unblocks `SIGNALS` in the calling thread.
fn mask_signals(how: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a sigset_t on the stack, filled by sigemptyset/sigaddset before use.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    match rc {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Delivers the daemon's signals to a thread that does nothing else. A signal pending on the
/// thread that loads BPF programs makes the verifier give up (EAGAIN): so the main thread, and
/// every thread it starts after this, blocks them. The handler (tokio's) runs on this one.
fn route_signals() -> std::io::Result<()> {
    mask_signals(libc::SIG_BLOCK)?;
    std::thread::Builder::new()
        .name("ckpt-signals".into())
        .spawn(|| {
            if let Err(e) = mask_signals(libc::SIG_UNBLOCK) {
                tracing::error!("no thread takes signals: {e}");
            }
            loop {
                std::thread::park();
            }
        })?;
    Ok(())
}

async fn run_async(args: &DaemonArgs, judging: &JudgingArgs) -> anyhow::Result<Exit> {
    // First of all: a SIGHUP or SIGUSR1 (a log rotation, a reload) that comes while the probe
    // loads would kill the daemon by default. Handled from here on; the loop takes it (and a
    // SIGTERM) once the daemon is up.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    route_signals().context("routing signals")?;
    privileges::ensure_can_load_bpf()?;
    // The same profile choice and options in force as `--pid` and `preflight`, per engine.
    let judge = Judge::new(judging)?;
    let given = given_by(&judge)?;
    // Held to the end: the socket file goes when this does.
    let http::Bound { listener, socket } = http::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {:?}", args.listen))?;
    let (
        LoadedBtf {
            mut offsets,
            func_ids,
        },
        btf,
    ) = LoadedBtf::with_aya_btf(Path::new(VMLINUX_BTF), &Probe::ITERATOR_FUNCS)?;
    // Its own /proc reads during rescans would otherwise come back as events.
    offsets.ignore_tgid = std::process::id();
    let mut probe = Probe::load(
        probe::Object::parse()?,
        &offsets,
        &func_ids,
        Purpose::Daemon {
            ring_bytes: args.ring_buffer_size,
            watched_sockets: args.watched_sockets,
        },
        &|| {},
    )?;
    let candidates: Vec<Backend> = match args.backend {
        Some(b) => vec![b],
        None => Backend::BEST_FIRST.to_vec(),
    };
    let attached = backend::attach(probe.ebpf_mut(), &btf, &candidates)?;
    // Every program is loaded: the parsed vmlinux BTF (tens of MB) is not needed again.
    drop(btf);
    tracing::warn!(
        backend = attached.backend.name(),
        "install events from the {} backend",
        attached.backend.name()
    );
    let maps = kernel_maps(&mut probe)?;

    let mut catalogue = Catalogue::builtin();
    catalogue.extend(judge.profile.ops.clone(), &judge.profile.profile.name)?;
    let health = Health {
        backend: attached.backend.name().into(),
        passed_over: attached
            .passed_over
            .iter()
            .map(|(b, why)| format!("{}: {why}", b.name()))
            .collect(),
        ..Default::default()
    };
    let shared: SharedState = Arc::new(Mutex::new(Shared::new(health, Instant::now())));
    lock(&shared)
        .metrics
        .backend
        .get_or_create(&label("backend", attached.backend.name()))
        .set(1);

    let format = args.format.unwrap_or(
        if args.output.is_none() && std::io::stdout().is_terminal() {
            Format::Text
        } else {
            Format::Json
        },
    );
    let sink = Sink::open(args.output.clone()).context("opening --output")?;
    let alerts =
        Writer::start(sink, shared.clone(), alert::QUEUE).context("starting the alert writer")?;
    let kallsyms = std::fs::File::open("/proc/kallsyms").context("opening /proc/kallsyms")?;
    let catalogue_functions = Symbols::lookup_functions(kallsyms, &catalogue.functions())?;
    let mut daemon = Daemon {
        probe,
        state: State::new(Settings {
            settle: args.settle,
            max_alerts_per_minute: args.max_alerts_per_minute,
        }),
        judge,
        given,
        names: Names::default(),
        started: Instant::now(),
        maps_budget: MapsBudget::new(MAPS_BUDGET),
        hostname: hostname(),
        alert_cmdline: args.alert_cmdline,
        max_workload_series: args.max_workload_series as usize,
        series_dropped: Default::default(),
        catalogue,
        catalogue_functions,
        tracked: maps.tracked,
        ok_fops: maps.ok_fops,
        ok_socks: maps.ok_socks,
        shared_tables: maps.shared_tables,
        lost: maps.lost,
        unreported: maps.unreported,
        filtered: maps.filtered,
        watches: maps.watches,
        lost_seen: 0,
        unreported_seen: [0; 3],
        filtered_seen: 0,
        watches_seen: [0; 2],
        watches_offered: false,
        alerts,
        format,
        shared: shared.clone(),
        event_counters: Vec::new(),
    };
    // Offered before the first scan, which then watches the idle TCP sockets it finds.
    let out = daemon.state.offer_socket_kinds(&judging!(daemon));
    daemon.apply(out);
    daemon.reconcile("start")?;

    let mut events = ring::Ring::spawn(maps.events, BACKLOG_BYTES)
        .context("starting the ring buffer's reader")?;
    let mut rescan =
        tokio::time::interval_at(tokio::time::Instant::now() + args.rescan, args.rescan);
    let mut counters = tokio::time::interval(Duration::from_millis(250));
    let mut settle = tokio::time::interval(settle_tick(args.settle));
    // A tick missed while a rescan ran is not worth catching up in a burst.
    settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Served from now on, on a thread of its own: /healthz answering means the daemon is up.
    lock(&shared).watch.loop_tick = Instant::now();
    http::spawn(listener, shared, http::LIMITS).context("starting the HTTP server")?;
    let mut rescan_pending = None;
    let mut last_loss_rescan = Instant::now() - LOSS_RESCAN_GAP;
    loop {
        tokio::select! {
            batch = events.next() => {
                let batch = batch.context("the ring buffer's reader stopped")?;
                if batch.unannounced {
                    tracing::info!(events = batch.records.len(), "events read on the wait's timeout: no wakeup came for them");
                }
                daemon.events(&batch.records);
            }
            _ = rescan.tick() => {
                if let Err(e) = daemon.reconcile("periodic") {
                    tracing::error!("{e:#}");
                }
            }
            _ = settle.tick() => daemon.settle(),
            _ = counters.tick() => {
                rescan_pending = daemon.check_counters(events.dropped()).or(rescan_pending);
                // A rescan beside thousands of processes takes long enough for a storm to
                // overflow the ring again: at most one per LOSS_RESCAN_GAP, none missed. The
                // gap runs from the rescan's end: a rescan longer than the gap (a slow host, or
                // runs skipped all along it) was followed by the next at once, and the loop
                // judged and alerted nothing in between.
                if let Some(reason) = rescan_pending
                    && last_loss_rescan.elapsed() >= LOSS_RESCAN_GAP
                {
                    rescan_pending = None;
                    if let Err(e) = daemon.reconcile(reason) {
                        tracing::error!("{e:#}");
                    }
                    last_loss_rescan = Instant::now();
                }
            }
            _ = hup.recv() => daemon.reload_profile(judging),
            _ = usr1.recv() => daemon.alerts.reopen(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("detaching");
    // Dropping the probe closes every program and link fd: nothing stays attached or pinned.
    let Daemon { probe, alerts, .. } = daemon;
    drop(probe);
    alerts.finish(ALERT_DRAIN);
    drop(socket);
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_rescan("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_rescan("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_rescan("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_rescan("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_rescan("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_settle("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_settle("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_settle("1h"), Ok(Duration::from_secs(3600)));
        // Absurd values are one line of error, never an overflow or a panic.
        for absurd in [
            "18446744073709551615s",
            "18446744073709551615",
            "5124095576030431h",
            "99999999999999999999999s",
            "0s",
            "999ms",
            "8d",
            "-1s",
            "s",
            "",
            "5 parsecs",
            "1\n2s",
        ] {
            let e = parse_rescan(absurd).unwrap_err();
            assert!(!e.contains('\n'), "{absurd}: {e}");
        }
        assert!(parse_settle("61m").is_err());
        let long = "9".repeat(10_000);
        let e = parse_settle(&long).unwrap_err();
        assert!(e.len() < 100, "the value is cut short: {e}");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_bounded_duration_or_one_short_line(s in "\\PC{0,40}|[0-9]{0,25}(ms|s|m|h|d)?") {
            for (parsed, min, max) in [
                (parse_rescan(&s), Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
                (parse_settle(&s), Duration::ZERO, Duration::from_secs(3600)),
            ] {
                match parsed {
                    Ok(d) => proptest::prop_assert!((min..=max).contains(&d), "{s:?}: {d:?}"),
                    Err(e) => proptest::prop_assert!(
                        !e.chars().any(char::is_control) && e.len() < 300,
                        "{s:?}: {e:?}"
                    ),
                }
            }
        }

        #[test]
        fn every_number_and_unit_in_range_parses_exactly(n in 0u64..=3600, unit in 0usize..3) {
            let (suffix, ms) = [("ms", 1), ("s", 1000), ("m", 60_000)][unit];
            let expected = Duration::from_millis(n * ms);
            let parsed = parse_settle(&format!("{n}{suffix}"));
            if expected <= Duration::from_secs(3600) {
                proptest::prop_assert_eq!(parsed, Ok(expected));
            } else {
                proptest::prop_assert!(parsed.is_err());
            }
        }
    }

    #[test]
    fn settle_ticks_stay_between_bounds() {
        assert_eq!(settle_tick(Duration::ZERO), Duration::from_millis(25));
        assert_eq!(
            settle_tick(Duration::from_millis(400)),
            Duration::from_millis(100)
        );
        assert_eq!(
            settle_tick(Duration::from_secs(3600)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("5000").is_err());
        assert!(parse_ring_size("1024").is_err());
    }
}
