//! Part 2: alert latency. A subject process opens an io_uring (which blocks a checkpoint) and
//! stamps CLOCK_REALTIME the moment `io_uring_setup` returns; the bench waits for the daemon's
//! `became-blocking` line for the subject, then has it close the ring and waits for
//! `became-ok`, and so on. Each alert's latency is measured twice from the stamp: to when the
//! bench read the line (what a consumer sees) and to the alert's own `time` (the daemon's part
//! alone, without the pipe and the bench's wake-up).

use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, bail};
use libc::c_int;

use super::daemon::{Alert, Daemon, Under};
use super::forked::Forked;
use super::{duration, verdict};

/// Target: p99 from the syscall's return to the `became-blocking` line read.
const TARGET_P99: Duration = Duration::from_millis(50);
/// Far beyond any sane latency: a missing alert fails the bench rather than hanging it.
const ALERT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the daemon to take in the subject's fork, setsid and fd closes before the first
/// cycle, so no alert about them is mistaken for one about the ring.
const SETTLE: Duration = Duration::from_millis(500);

const OPEN: u8 = b'o';
const CLOSE: u8 = b'c';

pub fn run(ckpt: &Under, cycles: u32) -> anyhow::Result<()> {
    println!(
        "\n2. alert latency: {cycles} cycles of io_uring_setup → became-blocking, close → \
         became-ok, from the syscall's return in the subject (--settle 0s)"
    );
    // The daemon's own latency: without the settling time by which it holds back a verdict
    // (1 s by default) on purpose, lest a short-lived fd alert, and without the rate limit
    // (120 a minute by default) that the cycles would soon reach.
    let daemon = Daemon::start(
        ckpt,
        &["--settle", "0s", "--max-alerts-per-minute", "1000000"],
    )?;
    let mut subject = Subject::spawn()?;
    std::thread::sleep(SETTLE);
    daemon.drain_alerts();
    let pid = subject.pid();
    let (mut blocking, mut ok) = (Latencies::default(), Latencies::default());
    for cycle in 0..cycles {
        let opened = subject.command(OPEN)?;
        let alert = daemon.wait_alert(pid, "became-blocking", ALERT_TIMEOUT);
        blocking.add(opened, &alert.with_context(|| format!("cycle {cycle}"))?);
        let closed = subject.command(CLOSE)?;
        let alert = daemon.wait_alert(pid, "became-ok", ALERT_TIMEOUT);
        ok.add(closed, &alert.with_context(|| format!("cycle {cycle}"))?);
    }
    report(&blocking, &ok);
    Ok(())
}

/// The subject: a detached process that opens or closes its ring on command, and answers each
/// command with its CLOCK_REALTIME stamp (or −errno).
struct Subject {
    process: Forked,
    commands: PipeWriter,
    stamps: PipeReader,
}

impl Subject {
    fn spawn() -> anyhow::Result<Subject> {
        let (commands_rx, commands) = io::pipe().context("pipe")?;
        let (stamps, stamps_tx) = io::pipe().context("pipe")?;
        let keep = [commands_rx.as_raw_fd(), stamps_tx.as_raw_fd()];
        // SAFETY: the subject makes raw syscalls only.
        let process = unsafe { Forked::spawn(keep, || subject(keep[0], keep[1])) }?;
        Ok(Subject {
            process,
            commands,
            stamps,
        })
    }

    fn pid(&self) -> u32 {
        self.process.pid() as u32
    }

    /// Has the subject open or close its ring: the stamp taken right after the syscall.
    fn command(&mut self, command: u8) -> anyhow::Result<i64> {
        self.commands
            .write_all(&[command])
            .context("commanding the subject")?;
        let mut stamp = [0; 8];
        self.stamps
            .read_exact(&mut stamp)
            .context("the subject's answer")?;
        match i64::from_ne_bytes(stamp) {
            errno @ ..0 => bail!(
                "the subject's {}: {}",
                if command == OPEN {
                    "io_uring_setup"
                } else {
                    "close"
                },
                io::Error::from_raw_os_error(-errno as i32)
            ),
            stamp => Ok(stamp),
        }
    }
}

/// The subject's loop, in the forked child: raw syscalls only.
fn subject(commands: c_int, stamps: c_int) {
    let mut ring = -1;
    loop {
        let mut command = 0u8;
        // SAFETY: reading one byte into a local.
        if unsafe { libc::read(commands, (&raw mut command).cast(), 1) } != 1 {
            return;
        }
        let result = match command {
            OPEN => {
                ring = io_uring_setup();
                ring
            }
            // SAFETY: closing the ring this process opened.
            CLOSE => unsafe { libc::close(ring) },
            _ => return,
        };
        // Stamped first: the latency starts when the syscall has returned.
        let stamp = realtime_ns();
        let answer = if result == -1 { -errno() } else { stamp };
        // SAFETY: writing 8 bytes from a local.
        if unsafe { libc::write(stamps, (&raw const answer).cast(), 8) } != 8 {
            return;
        }
    }
}

/// A one-entry io_uring; its fd, or -1.
fn io_uring_setup() -> c_int {
    // struct io_uring_params is 120 bytes, all of them input-zero here.
    let mut params = [0u64; 15];
    // SAFETY: the kernel writes at most sizeof(struct io_uring_params) into `params`.
    unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) as c_int }
}

fn errno() -> i64 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
        .into()
}

/// CLOCK_REALTIME in ns, without allocating (the daemon stamps alerts with the same clock).
fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// One alert kind's latencies, in ns.
#[derive(Default)]
struct Latencies {
    read: Vec<i64>,
    stamped: Vec<i64>,
}

impl Latencies {
    fn add(&mut self, syscall: i64, alert: &Alert) {
        self.read.push(alert.read - syscall);
        if let Some(time) = alert.time {
            self.stamped.push(time - syscall);
        }
    }
}

/// p50, p99 and max (nearest rank) of latencies in ns.
fn percentiles(latencies: &[i64]) -> Option<[Duration; 3]> {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let rank = |p: f64| {
        let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        // Negative only if the host's clock stepped back mid-cycle.
        Duration::from_nanos(sorted[i].max(0) as u64)
    };
    (!sorted.is_empty()).then(|| [rank(0.5), rank(0.99), rank(1.0)])
}

fn report(blocking: &Latencies, ok: &Latencies) {
    println!(
        "  {:<16} {:<28} {:>9} {:>9} {:>9}",
        "alert", "until", "p50", "p99", "max"
    );
    let rows = [
        ("became-blocking", "the bench read the line", &blocking.read),
        ("became-blocking", "the alert's own time", &blocking.stamped),
        ("became-ok", "the bench read the line", &ok.read),
        ("became-ok", "the alert's own time", &ok.stamped),
    ];
    for (event, until, latencies) in rows {
        let Some([p50, p99, max]) = percentiles(latencies) else {
            println!("  {event:<16} {until:<28} (no alert carried a readable time)");
            continue;
        };
        println!(
            "  {event:<16} {until:<28} {:>9} {:>9} {:>9}",
            duration(p50),
            duration(p99),
            duration(max)
        );
    }
    if let Some([_, p99, _]) = percentiles(&blocking.read) {
        println!(
            "  target p99 ≤ {} (became-blocking, line read): {} → {}",
            duration(TARGET_P99),
            duration(p99),
            verdict(p99 <= TARGET_P99)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let latencies: Vec<i64> = (1..=200).map(|n| n * 1_000_000).collect();
        assert_eq!(percentiles(&latencies), Some([ms(100), ms(198), ms(200)]));
        assert_eq!(percentiles(&[]), None);
    }
}
