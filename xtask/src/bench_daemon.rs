//! `cargo xtask bench daemon`: what `ckpt-watch daemon` costs the host and how fast it alerts,
//! all in one run against baselines measured in that run:
//!
//! 1. an fd storm (openat `/dev/null`, pipe2, UDP and TCP sockets, accepted TCP connections, each
//!    created and closed, fork+exec of /bin/true, and getppid, a syscall that makes no fd; each
//!    kind in a loop on N threads) with and without the daemon running, alternating, medians
//!    compared;
//! 2. alert latency: a subject process opens an io_uring and closes it, again and again, and the
//!    bench times the daemon's `became-blocking` and `became-ok` lines for it, both as read by
//!    the bench and as stamped by the daemon;
//! 3. the daemon's RSS and CPU beside 2,000 processes × 100 fds, idle and under a paced churn of
//!    10,000 fds/s (`/dev/null` and UDP sockets, which the kernel side should drop, and TCP
//!    sockets, which always reach user space), with its own metrics at the end.
//!
//! Targets (the performance issue): storm ≤ 5 % added for every kind (TCP, UDP, pipes,
//! /dev/null, accepted connections, fork+exec), alert p99 ≤ 50 ms, RSS ≤ 32 MB steady and
//! ≤ 64 MB at start (VmHWM), CPU ≤ 5 % of a core under the churn.

mod daemon;
mod footprint;
mod forked;
mod latency;
mod procfs;
mod storm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bench_scan::Shape;
/// Number formats shared with the scan bench, so both print alike.
pub(crate) use crate::bench_scan::report::{count, duration};
use daemon::Under;

#[derive(clap::Args)]
pub struct Args {
    /// Threads in the fd storm.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Iterations per thread and kind of fd in one storm.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Storms per kind without and with the daemon (alternating); medians are compared.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// io_uring open/close cycles for the alert latency.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    cycles: u32,
    /// Load beside the daemon for its footprint, PROCSxFDS (stdio not counted).
    #[arg(long, default_value = "2000x100")]
    load: Shape,
    /// fds per second the churn helper creates and closes.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    churn: u32,
    /// Seconds each footprint window lasts.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Only these parts (repeatable; default: all three).
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Bench this ckpt-watch binary (another build, for a before/after) instead of building.
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
    /// Force this install-event backend on every daemon (default: the best the kernel allows),
    /// to compare backends on one kernel.
    #[arg(long, value_parser = ["fentry", "kprobe", "tracepoint"])]
    backend: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Storm,
    Latency,
    Footprint,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => {
            crate::cargo(&["build", "--release", "-p", "ckpt-user"])?;
            target_dir().join("release/ckpt-watch")
        }
    };
    let ckpt = Under {
        binary,
        backend: args.backend.clone(),
    };
    header(&ckpt);
    let runs = |part| args.only.is_empty() || args.only.contains(&part);
    if runs(Part::Storm) {
        storm::run(
            &ckpt,
            &storm::Config {
                threads: args.threads,
                iterations: args.iterations,
                runs: args.runs,
            },
        )?;
    }
    if runs(Part::Latency) {
        latency::run(&ckpt, args.cycles)?;
    }
    if runs(Part::Footprint) {
        footprint::run(
            &ckpt,
            &footprint::Config {
                load: args.load,
                rate: args.churn,
                window: Duration::from_secs(args.window),
            },
        )?;
    }
    Ok(())
}

/// `workspace/target`, unless CARGO_TARGET_DIR moved it (cargo built there, then).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn header(ckpt: &Under) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Other work on the host skews every figure; the load average says how much there was.
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    println!(
        "ckpt-watch daemon benchmark — Linux {}, {cpus} CPUs (load average {})",
        kernel.trim(),
        loadavg.join(" ")
    );
    println!(
        "  ckpt-watch: {}, {} backend",
        ckpt.binary.display(),
        ckpt.backend.as_deref().unwrap_or("the best")
    );
}

/// `MET` or `MISSED`.
fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}
