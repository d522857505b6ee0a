//! `cargo xtask bench scan`: a whole-host scan by ckpt-watch against the tools a user has today,
//! all in the same run on the same synthetic load — Debian's `lsof -n`, and the `/proc` way
//! (readlink + stat + fdinfo of every fd). For each shape of load it prints each tool's wall time
//! (median and min of several runs), its ratio to ckpt-watch, peak RSS and throughput, then
//! ckpt-watch's own phase timings (`-v`). A last section checks that ckpt-watch's cost is linear
//! in the number of fds.
//!
//! Target (the performance issue): end to end ≤ 100 ms for 2,000 processes × 100 fds, ≥ 25× lsof.

pub(crate) mod load;
mod measure;
mod proc_walk;
pub(crate) mod report;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

use load::{Load, NOFILE_SLACK};
use measure::{Stats, Tool};

#[derive(clap::Args)]
pub struct Args {
    /// Load shapes to compare the tools on, PROCSxFDS (fds per process, stdio not counted);
    /// `PROCSxFDS+forked`: one process opens the fds and the others are its forks, sharing
    /// every open file (a worker pool).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2000x100,2000x100+forked,200x5000"
    )]
    shapes: Vec<Shape>,
    /// Runs per tool and shape; median and min are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Shapes for ckpt-watch's linearity check; `--linearity` with no value skips it.
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 0..,
        default_value = "500x100,1000x100,2000x100"
    )]
    linearity: Vec<Shape>,
    /// Internal: be the /proc walk (the bench runs it as a measured child).
    #[arg(long, hide = true)]
    proc_walk: bool,
}

/// N processes × M fds each.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    procs: usize,
    fds: usize,
    /// The processes are forks of one that opened the fds: they share its open files.
    forked: bool,
}

/// The shape the target is stated for.
const TARGET_SHAPE: Shape = Shape {
    procs: 2000,
    fds: 100,
    forked: false,
};
const TARGET_TIME: Duration = Duration::from_millis(100);
const TARGET_VS_LSOF: f64 = 25.0;

/// ckpt-watch exits 0, 1, 3 or 4 by verdict; 2 is its error.
const CKPT_OK: &[i32] = &[0, 1, 3, 4];

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Shape, String> {
        let (dims, forked) = match s.strip_suffix("+forked") {
            Some(dims) => (dims, true),
            None => (s, false),
        };
        let (procs, fds) = dims
            .split_once(['x', '×'])
            .ok_or_else(|| format!("{s:?}: expected PROCSxFDS, e.g. 2000x100"))?;
        let number = |n: &str| n.trim().parse().map_err(|e| format!("{s:?}: {e}"));
        Ok(Shape {
            procs: number(procs)?,
            fds: number(fds)?,
            forked,
        })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (procs, fds) = (report::count(self.procs), report::count(self.fds));
        let forked = if self.forked {
            ", forks sharing them"
        } else {
            ""
        };
        write!(f, "{procs} × {fds}{forked}")
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.proc_walk {
        return proc_walk::run();
    }
    let lsof = find_on_path("lsof")
        .context("lsof is not installed: run scripts/bootstrap.sh (or apt-get install -y lsof)")?;
    // xtask too: the /proc walk is this binary, and must be as optimised as ckpt-watch.
    crate::cargo(&["build", "--release", "-p", "ckpt-user", "-p", "xtask"])?;
    let release = target_dir().join("release");
    let ckpt = release.join("ckpt-watch");
    let tools = [
        Tool::new("ckpt-watch --json", &ckpt, &["--json"], CKPT_OK),
        Tool::new("ckpt-watch (text)", &ckpt, &[], CKPT_OK),
        Tool::new("lsof -n", &lsof, &["-n"], &[0, 1]),
        Tool::new(
            "/proc walk (Rust)",
            release.join("xtask"),
            &["bench", "scan", "--proc-walk"],
            &[0],
        ),
    ];
    header(&ckpt, &lsof, args.runs);

    let mut measured = Vec::new();
    for &shape in &args.shapes {
        let shape = fit_nofile(shape)?;
        let (fds, stats) = compare(shape, &tools, args.runs)?;
        measured.push((shape, fds, stats[0].median));
    }
    if !args.linearity.is_empty() {
        linearity(&args.linearity, &tools[0], args.runs, &measured)?;
    }
    Ok(())
}

/// `workspace/target`, unless CARGO_TARGET_DIR moved it (cargo built there, then).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn header(ckpt: &Path, lsof: &Path, runs: u32) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Other work on the host skews every tool; the load average says how much there was.
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    println!(
        "ckpt-watch scan benchmark — Linux {}, {cpus} CPUs (load average {}), {runs} runs per tool, interleaved",
        kernel.trim(),
        loadavg.join(" ")
    );
    println!("  ckpt-watch: {}", ckpt.display());
    println!("  lsof:       {}", lsof.display());
}

/// The fds per process that fit under RLIMIT_NOFILE's hard limit: only the soft limit can be
/// raised here (no CAP_SYS_RESOURCE), so a shape that does not fit is shrunk, and says so.
fn fit_nofile(shape: Shape) -> anyhow::Result<Shape> {
    // SAFETY: rlimit is plain data, written by the kernel.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let max = usize::try_from(limit.rlim_max)
        .unwrap_or(usize::MAX)
        .saturating_sub(NOFILE_SLACK);
    if shape.fds <= max {
        return Ok(shape);
    }
    let fitted = Shape { fds: max, ..shape };
    println!(
        "note: RLIMIT_NOFILE hard limit is {} (cannot be raised without CAP_SYS_RESOURCE): {shape} shrunk to {fitted}",
        limit.rlim_max
    );
    Ok(fitted)
}

/// Every tool on one shape of load: returns the fds on the host and each tool's stats.
fn compare(shape: Shape, tools: &[Tool], runs: u32) -> anyhow::Result<(usize, Vec<Stats>)> {
    let load = Load::spawn(shape)?;
    let fds = proc_walk::count_host_fds()?;
    println!(
        "\n{shape}: {} load processes ready in {}; {} fds open on the host",
        report::count(shape.procs),
        report::duration(load.ready_in),
        report::count(fds)
    );
    let stats = measure_all(tools, runs)?;
    let rows: Vec<(&str, Stats)> = tools.iter().map(|t| t.name).zip(stats).collect();
    report::table(&rows, fds);
    // The target holds for both mixes.
    let unforked = Shape {
        forked: false,
        ..shape
    };
    if unforked == TARGET_SHAPE {
        target(&rows);
    }
    phases(&tools[0])?;
    drop(load);
    let stats = rows.into_iter().map(|(_, s)| s).collect();
    Ok((fds, stats))
}

/// `runs` rounds of every tool in turn, so drift (caches, other load on the host) hits all alike.
fn measure_all(tools: &[Tool], runs: u32) -> anyhow::Result<Vec<Stats>> {
    let mut outcomes: Vec<Vec<_>> = tools.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (tool, outcomes) in tools.iter().zip(&mut outcomes) {
            outcomes.push(tool.run()?);
        }
    }
    Ok(outcomes.iter().map(|o| Stats::of(o)).collect())
}

/// The target, against both ckpt-watch output modes (rows 0 and 1; lsof is row 2).
fn target(rows: &[(&str, Stats)]) {
    let lsof = rows[2].1.median.as_secs_f64();
    for (name, stats) in &rows[..2] {
        let vs_lsof = lsof / stats.median.as_secs_f64();
        let met = stats.median <= TARGET_TIME && vs_lsof >= TARGET_VS_LSOF;
        println!(
            "  target {name}: ≤ {} and ≥ {TARGET_VS_LSOF:.0}× lsof: {} and {vs_lsof:.1}× → {}",
            report::duration(TARGET_TIME),
            report::duration(stats.median),
            if met { "MET" } else { "MISSED" }
        );
    }
}

/// One more ckpt-watch run with `-v`, for its own breakdown of where the time went.
fn phases(ckpt_json: &Tool) -> anyhow::Result<()> {
    // The log level, not -v: -v also lists every ok file, work the timed runs do not do.
    let verbose = ckpt_json.with_env("ckpt-watch --json, debug log", "CKPT_WATCH_LOG", "debug");
    let outcome = verbose.run()?;
    let Some(line) = report::scan_line(&outcome.stderr) else {
        println!("  phases: ckpt-watch with a debug log printed no `scan btf=…` line");
        return Ok(());
    };
    println!(
        "  phases (ckpt-watch --json with CKPT_WATCH_LOG=debug, one run, {} wall): {line}",
        report::duration(outcome.wall)
    );
    let judged = report::judged_line(&outcome.stderr);
    if let Some(judged) = &judged {
        println!("    {judged}");
    }
    // kallsyms is read on another thread alongside btf/load/iterate: its phase is the wait
    // for it after the walk, and the lookup.
    let serial: Duration = ["btf", "load", "iterate", "kallsyms", "refine", "procfs"]
        .iter()
        .filter_map(|key| report::phase(&line, key))
        .chain(
            ["resolve", "index", "judge"]
                .iter()
                .filter_map(|key| report::phase(judged.as_deref()?, key)),
        )
        .sum();
    println!(
        "    outside btf+load+iterate+kallsyms+refine+procfs+resolve+index+judge (exec, report, exit): {}",
        report::duration(outcome.wall.saturating_sub(serial))
    );
    Ok(())
}

/// ckpt-watch alone on growing load: the fitted per-fd cost, and what the fit predicts for the
/// shapes measured above.
fn linearity(
    shapes: &[Shape],
    ckpt: &Tool,
    runs: u32,
    measured: &[(Shape, usize, Duration)],
) -> anyhow::Result<()> {
    println!("\nlinearity: {} median of {runs}", ckpt.name);
    let mut points = Vec::new();
    for &shape in shapes {
        let shape = fit_nofile(shape)?;
        let load = Load::spawn(shape)?;
        let fds = proc_walk::count_host_fds()?;
        let median = measure_all(std::slice::from_ref(ckpt), runs)?[0].median;
        drop(load);
        println!(
            "  {:<14} {:>11} fds  {:>9}  {:>6.0} ns/fd",
            shape.to_string(),
            report::count(fds),
            report::duration(median),
            median.as_secs_f64() * 1e9 / fds as f64
        );
        points.push((fds as f64, median.as_secs_f64()));
    }
    let Some(fit) = report::Fit::of(&points) else {
        println!("  (a fit needs two different fd counts)");
        return Ok(());
    };
    println!(
        "  fit: {:.1} ms + {:.0} ns per fd (R² = {:.4})",
        fit.fixed * 1e3,
        fit.per_fd * 1e9,
        fit.r2
    );
    for &(shape, fds, median) in measured {
        let predicted = fit.predict(fds);
        println!(
            "  {shape} ({} fds): fit predicts {}, measured {} ({:+.0}%)",
            report::count(fds),
            report::duration(predicted),
            report::duration(median),
            (median.as_secs_f64() / predicted.as_secs_f64() - 1.0) * 100.0
        );
    }
    Ok(())
}
