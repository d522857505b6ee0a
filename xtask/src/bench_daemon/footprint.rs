//! Part 3: the daemon's memory and CPU beside a loaded host (the scan bench's synthetic load,
//! 2,000 processes × 100 fds by default), in windows of equal length: idle, then under a paced
//! churn of `/dev/null` opens and of UDP sockets (ok by ops table and by kind: the kernel side
//! should drop both), then of TCP sockets (every one judged in user space, and its close
//! reported back: the honest worst case). The daemon's
//! own metrics say how many events reached it. Each window has a daemon of its own, so one
//! window's backlog or periodic rescan cannot leak into the next.
//!
//! RSS is VmRSS sampled once a second (max reported, and its growth over the window), CPU is
//! utime + stime over the window as a share of one core. The CPU the BPF programs spend runs in
//! the churning process's syscalls, not in the daemon: that is part 1's added cost.

use std::time::{Duration, Instant};

use super::daemon::{Daemon, Metrics, Under};
use super::forked::Forked;
use super::procfs::{self, RssParts, mb};
use super::storm::Kind;
use super::{count, duration, verdict};
use crate::bench_scan::Shape;
use crate::bench_scan::load::Load;

/// The performance issue's targets: steady RSS, and the high-water mark of the start (the first
/// snapshot of the loaded host).
const TARGET_RSS_MB: f64 = 32.0;
const TARGET_HWM_MB: f64 = 64.0;
const TARGET_CPU: f64 = 0.05;
/// After the start: its first scan's garbage freed, its first counters read.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a window's daemon may take to answer `/metrics` before its counts are given up.
const METRICS_TIMEOUT: Duration = Duration::from_secs(20);
/// The churn helper's pace: it catches up to `rate × elapsed` every tick.
const TICK_NS: i64 = 1_000_000;

pub struct Config {
    pub load: Shape,
    pub rate: u32,
    pub window: Duration,
}

/// What churns during a window.
#[derive(Clone, Copy)]
enum Churn {
    Idle,
    Fds(Kind),
}

impl Churn {
    fn name(self, rate: u32) -> String {
        let what = match self {
            Churn::Idle => return "none (idle)".into(),
            Churn::Fds(Kind::DevNull) => "/dev/null",
            Churn::Fds(Kind::Pipe) => "pipe",
            Churn::Fds(Kind::UdpSocket) => "UDP socket",
            Churn::Fds(Kind::TcpSocket) => "TCP socket",
            Churn::Fds(Kind::TcpAccept) => "TCP connection",
            Churn::Fds(Kind::ForkExec) => "process",
            Churn::Fds(Kind::OtherSyscall) => "getppid",
        };
        format!("{what} {}/s", count(rate as usize))
    }
}

/// One window's figures.
struct Window {
    churn: Churn,
    ready_in: Duration,
    sampled: Sampled,
    /// Peak RSS of the daemon's life, its start's full scan included.
    hwm: u64,
    /// Where the resident memory is, at the end.
    rss_parts: RssParts,
    /// None when the daemon did not answer `/metrics`.
    counted: Option<Counted>,
    metrics: Option<Metrics>,
}

/// The daemon's own counts over a window.
struct Counted {
    /// Install and close events it handled.
    events: f64,
    /// Installs its kernel side dropped.
    dropped: f64,
    /// Events the ring buffer had no room for, and the full rescans they caused.
    lost: f64,
    rescans: f64,
}

impl Counted {
    fn between(before: &Metrics, after: &Metrics) -> Counted {
        let delta = |series: &str| after.sum(series) - before.sum(series);
        Counted {
            events: delta("ckpt_watch_events_total{kind=\"install\"}")
                + delta("ckpt_watch_events_total{kind=\"close\"}"),
            dropped: delta("ckpt_watch_events_filtered_total"),
            lost: delta("ckpt_watch_events_lost_total"),
            rescans: delta("ckpt_watch_reconciles_total{reason=\"lost-events\"}"),
        }
    }
}

/// What sampling over the window gave.
struct Sampled {
    rss_max: u64,
    rss_growth: i64,
    cpu: Duration,
    helper_cpu: Option<Duration>,
    elapsed: Duration,
}

pub fn run(ckpt: &Under, config: &Config) -> anyhow::Result<()> {
    // Before any daemon, while the bench has a single thread: the load is forked.
    let load = Load::spawn(config.load)?;
    println!(
        "\n3. footprint beside {} (load ready in {}): a fresh daemon per {} window, churn \
         paced at {}/s, RSS sampled each second",
        config.load,
        duration(load.ready_in),
        duration(config.window),
        count(config.rate as usize)
    );
    let churns = [
        Churn::Idle,
        Churn::Fds(Kind::DevNull),
        Churn::Fds(Kind::UdpSocket),
        Churn::Fds(Kind::TcpSocket),
    ];
    let mut windows = Vec::new();
    for churn in churns {
        windows.push(window(ckpt, churn, config)?);
    }
    drop(load);
    report(&windows, config.rate);
    Ok(())
}

fn window(ckpt: &Under, churn: Churn, config: &Config) -> anyhow::Result<Window> {
    let daemon = Daemon::start(ckpt, &[])?;
    std::thread::sleep(SETTLE);
    let before = daemon.metrics(METRICS_TIMEOUT).ok();
    let helper = match churn {
        Churn::Idle => None,
        // SAFETY: the churn loop makes raw syscalls only.
        Churn::Fds(kind) => Some(unsafe { Forked::spawn([], || churn_loop(kind, config.rate)) }?),
    };
    let sampled = sample(&daemon, helper.as_ref(), config.window)?;
    let metrics = daemon.metrics(METRICS_TIMEOUT).ok();
    let counted = match (&before, &metrics) {
        (Some(before), Some(after)) => Some(Counted::between(before, after)),
        _ => None,
    };
    let pid = daemon.pid();
    Ok(Window {
        churn,
        ready_in: daemon.ready_in,
        counted,
        hwm: procfs::status_bytes(pid, "VmHWM")?,
        rss_parts: procfs::rss_parts(pid)?,
        sampled,
        metrics,
    })
}

/// RSS each second and CPU over `length`, of the daemon (and the helper's CPU).
fn sample(daemon: &Daemon, helper: Option<&Forked>, length: Duration) -> anyhow::Result<Sampled> {
    let pid = daemon.pid();
    let helper_cpu =
        |helper: Option<&Forked>| helper.map(|h| procfs::cpu_time(h.pid())).transpose();
    let t = Instant::now();
    let (cpu, helper_start) = (procfs::cpu_time(pid)?, helper_cpu(helper)?);
    let mut rss = vec![procfs::status_bytes(pid, "VmRSS")?];
    for second in 1..=length.as_secs() {
        std::thread::sleep(
            (t + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        rss.push(procfs::status_bytes(pid, "VmRSS")?);
    }
    let cpu = procfs::cpu_time(pid)?.saturating_sub(cpu);
    let helper_cpu = helper_cpu(helper)?
        .zip(helper_start)
        .map(|(end, start)| end.saturating_sub(start));
    Ok(Sampled {
        rss_max: rss.iter().copied().max().unwrap_or_default(),
        rss_growth: *rss.last().unwrap_or(&0) as i64 - rss[0] as i64,
        cpu,
        helper_cpu,
        elapsed: t.elapsed(),
    })
}

/// The churn helper, in a forked child: `kind` created and closed at `rate` per second, for
/// ever. Each tick it catches up with `rate × elapsed`, so a late wake-up does not lower the
/// average rate.
fn churn_loop(kind: Kind, rate: u32) {
    let start = monotonic_ns();
    let mut done: i64 = 0;
    let mut tick = start;
    loop {
        let due = (monotonic_ns() - start) as i128 * i128::from(rate) / 1_000_000_000;
        while i128::from(done) < due {
            let _ = kind.once();
            done += 1;
        }
        tick += TICK_NS;
        let next = libc::timespec {
            tv_sec: tick / 1_000_000_000,
            tv_nsec: tick % 1_000_000_000,
        };
        // SAFETY: sleeping until an absolute time given by a valid timespec.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &next,
                std::ptr::null_mut(),
            )
        };
    }
}

fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn report(windows: &[Window], rate: u32) {
    println!(
        "  {:<20} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "churn",
        "ready in",
        "RSS max",
        "growth",
        "VmHWM",
        "CPU",
        "events/s",
        "dropped/s",
        "lost/s",
        "rescans",
        "helper"
    );
    for w in windows {
        let secs = w.sampled.elapsed.as_secs_f64();
        let counted = w.counted.as_ref().map_or_else(
            || format!("{:>39}", "(no answer on /metrics)"),
            |c| {
                format!(
                    "{:>9.0} {:>9.0} {:>9.0} {:>7}",
                    c.events / secs,
                    c.dropped / secs,
                    c.lost / secs,
                    c.rescans
                )
            },
        );
        println!(
            "  {:<20} {:>9} {:>5.1} MB {:>+6.2} MB {:>5.1} MB {:>6.2} % {counted} {:>7}",
            w.churn.name(rate),
            duration(w.ready_in),
            mb(w.sampled.rss_max),
            w.sampled.rss_growth as f64 / (1024.0 * 1024.0),
            mb(w.hwm),
            100.0 * w.sampled.cpu.as_secs_f64() / secs,
            w.sampled.helper_cpu.map_or("-".into(), |c| format!(
                "{:.1} %",
                100.0 * c.as_secs_f64() / secs
            )),
        );
    }
    println!(
        "  (CPU: share of one core; events/s: install + close events the daemon handled, from the \
         whole host; dropped/s: installs its kernel side dropped; lost/s: events the ring buffer \
         had no room for; rescans: full rescans on loss; helper: the churn's own CPU)"
    );
    for w in windows {
        let RssParts {
            anonymous,
            bpf,
            files,
        } = w.rss_parts;
        println!(
            "  RSS at the end, {}: {:.1} MB anonymous (heap, allocations, stacks), {:.1} MB BPF \
             maps mapped (the ring buffer), {:.1} MB binary and libraries",
            w.churn.name(rate),
            mb(anonymous),
            mb(bpf),
            mb(files)
        );
    }
    targets(windows);
    let Some(last) = windows.last() else {
        return;
    };
    let Some(metrics) = &last.metrics else {
        println!(
            "  the daemon did not answer /metrics at the end ({})",
            last.churn.name(rate)
        );
        return;
    };
    rescans(metrics);
    println!(
        "  the daemon's metrics at the end ({}):",
        last.churn.name(rate)
    );
    for sample in metrics.samples() {
        println!("    {sample}");
    }
}

/// Targets, against the worst window.
fn targets(windows: &[Window]) {
    let rss = windows
        .iter()
        .map(|w| mb(w.sampled.rss_max))
        .fold(0.0, f64::max);
    let hwm = windows.iter().map(|w| mb(w.hwm)).fold(0.0, f64::max);
    let cpu = windows
        .iter()
        .map(|w| w.sampled.cpu.as_secs_f64() / w.sampled.elapsed.as_secs_f64())
        .fold(0.0, f64::max);
    println!(
        "  targets (worst window): RSS ≤ {TARGET_RSS_MB:.0} MB: {rss:.1} MB → {}; \
         VmHWM ≤ {TARGET_HWM_MB:.0} MB: {hwm:.1} MB → {}; \
         CPU ≤ {:.0} % of a core: {:.2} % → {}",
        verdict(rss <= TARGET_RSS_MB),
        verdict(hwm <= TARGET_HWM_MB),
        TARGET_CPU * 100.0,
        cpu * 100.0,
        verdict(cpu <= TARGET_CPU)
    );
}

/// The periodic rescan falls outside the windows: what it would cost, from the mean full scan.
fn rescans(metrics: &Metrics) {
    let scans = metrics.sum("ckpt_watch_reconcile_duration_seconds_count");
    let seconds = metrics.sum("ckpt_watch_reconcile_duration_seconds_sum");
    if scans > 0.0 {
        let each = seconds / scans;
        println!(
            "  full rescan: {} each ({} in this daemon); at the default --rescan 60s that adds \
             about {:.2} % of a core",
            duration(Duration::from_secs_f64(each)),
            scans,
            100.0 * each / 60.0
        );
    }
}
