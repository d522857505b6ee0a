//! Part 1: what the daemon adds to an fd storm. N threads create and close fds in a tight loop,
//! one kind at a time, timed wall-clock; runs alternate without and with the daemon (started
//! afresh each time, stopped after) so drift on the host hits both sides alike, and medians are
//! compared.
//!
//! The kinds are meant to take the paths an install can take: `/dev/null` and pipes are always
//! ok by their ops table and UDP sockets by their kind, so all three should be dropped in the
//! kernel; a TCP socket's state decides its verdict, so every one goes to user space (and, not
//! kept there, its close comes back too). The daemon's metrics, read around each storm, say
//! where each kind's events really went.

use std::io;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::daemon::{Daemon, Metrics, Under};
use super::{count, duration, procfs, verdict};

/// Target: added wall time per kind.
const TARGET_ADDED: f64 = 0.05;
/// How long the daemon may take to work through a storm's backlog (a bound, not a target).
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(120);
/// The daemon reads its kernel-side counters (dropped, lost) every 250 ms.
const COUNTERS_READ: Duration = Duration::from_millis(300);

#[derive(Clone, Copy)]
pub struct Config {
    pub threads: u32,
    pub iterations: u64,
    pub runs: u32,
}

#[derive(Clone, Copy)]
pub enum Kind {
    DevNull,
    Pipe,
    UdpSocket,
    TcpSocket,
    /// A loopback connection made and accepted: both ends reach user space (established).
    TcpAccept,
    /// fork, exec of /bin/true, wait: the lifecycle events, no fd of note.
    ForkExec,
    /// getppid: a syscall that makes no fd. The daemon's program runs at the exit of every
    /// syscall (closes and, on the tracepoint backend, installs are found there), so this is
    /// what it adds to everything else the host does.
    OtherSyscall,
}

const N_KINDS: usize = 7;
const KINDS: [Kind; N_KINDS] = [
    Kind::DevNull,
    Kind::Pipe,
    Kind::UdpSocket,
    Kind::TcpSocket,
    Kind::TcpAccept,
    Kind::ForkExec,
    Kind::OtherSyscall,
];

/// The listener every TCP-accept storm connects to: (fd, port), made once per bench.
static LISTENER: std::sync::OnceLock<Result<(libc::c_int, u16), i32>> = std::sync::OnceLock::new();

fn listener() -> io::Result<(libc::c_int, u16)> {
    let made = LISTENER.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let port = l
            .local_addr()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?
            .port();
        Ok((std::os::fd::IntoRawFd::into_raw_fd(l), port))
    });
    made.map_err(io::Error::from_raw_os_error)
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::DevNull => "openat(/dev/null) + close",
            Kind::Pipe => "pipe2 + close ×2",
            Kind::UdpSocket => "socket(UDP) + close",
            Kind::TcpSocket => "socket(TCP) + close",
            Kind::TcpAccept => "TCP connect + accept + close ×2",
            Kind::ForkExec => "fork + exec(/bin/true) + wait",
            Kind::OtherSyscall => "getppid (no fd)",
        }
    }

    /// Iterations of this kind in a storm of `iterations`: a process start costs about a
    /// thousand fd creations, a loopback connection about ten, a getppid a tenth.
    pub fn scaled(self, iterations: u64) -> u64 {
        match self {
            Kind::OtherSyscall => iterations * 10,
            Kind::ForkExec => (iterations / 1000).max(1),
            Kind::TcpAccept => (iterations / 10).max(1),
            _ => iterations,
        }
    }

    /// One iteration: creates and closes one fd (two for a pipe or a connection), or runs one
    /// process. Raw syscalls only, no allocation (but the accept storm's one listener), so a
    /// forked helper may call it too.
    pub fn once(self) -> io::Result<()> {
        let mut pair = [0; 2];
        // SAFETY: raw syscalls on a C string literal, a valid [c_int; 2] and fds we just made.
        unsafe {
            match self {
                Kind::DevNull => {
                    let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    check(fd)?;
                    libc::close(fd);
                }
                Kind::Pipe => {
                    check(libc::pipe2(pair.as_mut_ptr(), libc::O_CLOEXEC))?;
                    libc::close(pair[0]);
                    libc::close(pair[1]);
                }
                Kind::UdpSocket | Kind::TcpSocket => {
                    let sk_type = match self {
                        Kind::UdpSocket => libc::SOCK_DGRAM,
                        _ => libc::SOCK_STREAM,
                    };
                    let fd = libc::socket(libc::AF_INET, sk_type | libc::SOCK_CLOEXEC, 0);
                    check(fd)?;
                    libc::close(fd);
                }
                Kind::TcpAccept => {
                    let (listener, port) = listener()?;
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    check(fd)?;
                    let mut addr: libc::sockaddr_in = std::mem::zeroed();
                    addr.sin_family = libc::AF_INET as libc::sa_family_t;
                    addr.sin_port = port.to_be();
                    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
                    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    let connected = check(libc::connect(fd, (&raw const addr).cast(), len));
                    // Whichever pending connection comes: every thread connects once per accept.
                    let accepted = libc::accept4(
                        listener,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    );
                    libc::close(fd);
                    connected?;
                    check(accepted)?;
                    libc::close(accepted);
                }
                Kind::OtherSyscall => {
                    libc::getppid();
                }
                Kind::ForkExec => match libc::fork() {
                    -1 => return Err(io::Error::last_os_error()),
                    0 => {
                        let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                        libc::execv(argv[0], argv.as_ptr());
                        libc::_exit(127);
                    }
                    child => {
                        let mut status = 0;
                        libc::waitpid(child, &mut status, 0);
                        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                            return Err(io::Error::other("/bin/true failed"));
                        }
                    }
                },
            }
        }
        Ok(())
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wall times of each kind's runs, without and with the daemon.
#[derive(Default)]
struct Times {
    without: [Vec<Duration>; N_KINDS],
    with: [Vec<Duration>; N_KINDS],
}

/// What the daemon made of one storm, by its own metrics.
#[derive(Clone, Copy, Default)]
struct Seen {
    installs: f64,
    closes: f64,
    dropped: f64,
    lost: f64,
    /// From the storm's end until the daemon answered `/metrics` again.
    busy: Duration,
}

impl Seen {
    fn between(before: &Metrics, after: &Metrics) -> Seen {
        let delta = |series: &str| after.sum(series) - before.sum(series);
        Seen {
            installs: delta("ckpt_watch_events_total{kind=\"install\"}"),
            closes: delta("ckpt_watch_events_total{kind=\"close\"}"),
            dropped: delta("ckpt_watch_events_filtered_total"),
            lost: delta("ckpt_watch_events_lost_total"),
            busy: Duration::ZERO,
        }
    }
}

pub fn run(ckpt: &Under, config: &Config) -> anyhow::Result<()> {
    println!(
        "\n1. fd storm: {} threads × {} iterations per kind, {} runs without and with the daemon \
         (alternating, the daemon started afresh for each), median wall time",
        config.threads,
        count(config.iterations as usize),
        config.runs
    );
    // Untimed: the first storm of a process pays for faulting in its stacks and the kernel's
    // slab caches warming up.
    let warm_up = Config {
        iterations: config.iterations / 10,
        ..*config
    };
    storms(&warm_up, None)?;
    let mut times = Times::default();
    let mut daemon_cpu = Duration::ZERO;
    let mut seen = [Seen::default(); N_KINDS];
    for _ in 0..config.runs {
        push(&mut times.without, storms(config, None)?.0);
        let daemon = Daemon::start(ckpt, &[])?;
        let cpu = procfs::cpu_time(daemon.pid())?;
        let (with, run_seen) = storms(config, Some(&daemon))?;
        daemon_cpu += procfs::cpu_time(daemon.pid())?.saturating_sub(cpu);
        push(&mut times.with, with);
        for (total, run) in seen.iter_mut().zip(run_seen) {
            total.installs += run.installs;
            total.closes += run.closes;
            total.dropped += run.dropped;
            total.lost += run.lost;
            total.busy = total.busy.max(run.busy);
        }
    }
    report(&times, config.iterations);
    events(&seen, daemon_cpu, config);
    Ok(())
}

/// One storm of each kind. With a daemon, each is followed by a wait for it to work through
/// its backlog (so that does not slow the next kind) and to read its kernel-side counters, and
/// what it saw of each is returned.
fn storms(
    config: &Config,
    daemon: Option<&Daemon>,
) -> anyhow::Result<([Duration; N_KINDS], [Seen; N_KINDS])> {
    let mut times = [Duration::ZERO; N_KINDS];
    let mut seen = [Seen::default(); N_KINDS];
    for ((time, seen), kind) in times.iter_mut().zip(&mut seen).zip(KINDS) {
        let before = daemon.map(|d| d.metrics(BACKLOG_TIMEOUT)).transpose()?;
        *time = storm(kind, config.threads, kind.scaled(config.iterations))?;
        if let (Some(daemon), Some(before)) = (daemon, before) {
            let end = Instant::now();
            daemon.metrics(BACKLOG_TIMEOUT)?;
            let busy = end.elapsed();
            std::thread::sleep(COUNTERS_READ);
            *seen = Seen {
                busy,
                ..Seen::between(&before, &daemon.metrics(BACKLOG_TIMEOUT)?)
            };
        }
    }
    Ok((times, seen))
}

/// `threads` threads, released together, each doing `iterations` of `kind`: the wall time from
/// their release to the last one's end.
fn storm(kind: Kind, threads: u32, iterations: u64) -> anyhow::Result<Duration> {
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    (0..iterations).try_for_each(|_| kind.once())
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("a storm thread panicked"))?
                .map_err(|e| anyhow!("{}: {e}", kind.name()))?;
        }
        Ok(t.elapsed())
    })
}

fn push(runs: &mut [Vec<Duration>; N_KINDS], times: [Duration; N_KINDS]) {
    for (runs, time) in runs.iter_mut().zip(times) {
        runs.push(time);
    }
}

fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// (max − min) / median: how much the runs of one side disagree, to weigh the added % against.
fn spread(runs: &[Duration]) -> f64 {
    let (min, max) = (runs.iter().min(), runs.iter().max());
    let (Some(min), Some(max)) = (min, max) else {
        return 0.0;
    };
    (*max - *min).as_secs_f64() / median(runs).as_secs_f64()
}

fn report(times: &Times, iterations: u64) {
    println!(
        "  {:<28} {:>18} {:>18} {:>8} {:>15}",
        "kind", "without (spread)", "with (spread)", "added", "per iteration"
    );
    let mut met = Vec::new();
    for (i, kind) in KINDS.into_iter().enumerate() {
        let (without, with) = (median(&times.without[i]), median(&times.with[i]));
        let added = with.as_secs_f64() / without.as_secs_f64() - 1.0;
        let per_iteration =
            (with.as_secs_f64() - without.as_secs_f64()) / kind.scaled(iterations) as f64;
        println!(
            "  {:<28} {:>9} ({:>4.1} %) {:>9} ({:>4.1} %) {:>+7.1} % {:>+12.0} ns",
            kind.name(),
            duration(without),
            spread(&times.without[i]) * 100.0,
            duration(with),
            spread(&times.with[i]) * 100.0,
            added * 100.0,
            per_iteration * 1e9
        );
        met.push(format!(
            "{} {}",
            kind.name(),
            verdict(added <= TARGET_ADDED)
        ));
    }
    println!(
        "  target ≤ {:.0} % added: {}",
        TARGET_ADDED * 100.0,
        met.join(", ")
    );
}

/// Where each kind's fds went, by the daemon's own count, and what the daemon spent on them.
fn events(seen: &[Seen; N_KINDS], daemon_cpu: Duration, config: &Config) {
    let runs = (config.runs * config.threads) as u64;
    println!(
        "  events per iteration, as the daemon counted them (all runs with it, the host's other \
         activity included); busy after: from the storm's end until it answered /metrics again"
    );
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>9} {:>22}",
        "kind", "installs", "closes", "dropped", "lost", "busy after (max)"
    );
    let mut events = 0.0;
    for (kind, seen) in KINDS.into_iter().zip(seen) {
        let iterations = (runs * kind.scaled(config.iterations)) as f64;
        println!(
            "  {:<28} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>22}",
            kind.name(),
            seen.installs / iterations,
            seen.closes / iterations,
            seen.dropped / iterations,
            seen.lost / iterations,
            duration(seen.busy)
        );
        events += seen.installs + seen.closes;
    }
    println!(
        "  daemon CPU over the storms with it: {} for {} install and close events \
         ({:.1} µs per event)",
        duration(daemon_cpu),
        count(events as usize),
        daemon_cpu.as_secs_f64() * 1e6 / events.max(1.0)
    );
}
