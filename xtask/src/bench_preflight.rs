//! `cargo xtask bench preflight`: `ckpt-watch preflight` of one 10-process container on a host
//! with 2,000 other processes, and `--pid ROOT --tree` of the same tree, against a whole-host
//! scan in the same run. A container's
//! preflight must cost in proportion to the container (the kernel side filters by cgroup), so
//! the targets are a ratio, preflight ≤ 0.2 × host scan, and a fixed start-up (what any scan
//! pays before it walks anything) of ≤ 30 ms (issue 14).
//!
//! The load and the container are plain `fork()`s of this process holding a few fds each and
//! paused; the container is a real tree (a session leader with 9 children) in a cgroup v2
//! directory named like Docker's. A guard kills and reaps everything and removes the cgroup, on
//! errors too; `PR_SET_PDEATHSIG` covers the bench dying without unwinding.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const OTHER_PROCS: usize = 2000;
const CONTAINER_PROCS: usize = 10;
const RUNS: usize = 21;
const TARGET_RATIO: f64 = 0.2;
const TARGET_START_UP: Duration = Duration::from_millis(30);

/// Everything the bench started; dropping it cleans up.
struct Load {
    pids: Vec<libc::pid_t>,
    cgroup: Option<PathBuf>,
    cgroup_mount: PathBuf,
}

impl Drop for Load {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: kill/waitpid on our own children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(dir) = &self.cgroup {
            // The container's grandchildren die with their parent (PDEATHSIG); move any
            // straggler out so the directory can go.
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(self.cgroup_mount.join("cgroup.procs"), pid);
                }
            }
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// Fds a load process holds besides stdio: a file, /dev/null, a pipe, a unix socket pair.
fn hold_fds(file: &CString, null: &CString) {
    // SAFETY: only async-signal-safe calls on memory prepared before fork().
    unsafe {
        libc::open(file.as_ptr(), libc::O_RDONLY);
        libc::open(null.as_ptr(), libc::O_RDWR);
        let mut fds = [0; 2];
        libc::pipe(fds.as_mut_ptr());
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr());
    }
}

/// Forks a paused process holding a few fds; with `children`, it leads a session and forks
/// that many paused children of its own first.
fn fork_paused(file: &CString, null: &CString, children: usize) -> anyhow::Result<libc::pid_t> {
    // SAFETY: the child only makes async-signal-safe calls and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid);
    }
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if children > 0 {
            libc::setsid();
            for _ in 0..children {
                if libc::fork() == 0 {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    hold_fds(file, null);
                    loop {
                        libc::pause();
                    }
                }
            }
        }
        hold_fds(file, null);
        loop {
            libc::pause();
        }
    }
}

fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?;
            right.starts_with("cgroup2 ").then(|| PathBuf::from(mount))
        })
        .context("no cgroup2 hierarchy is mounted")
}

fn children_of(pid: libc::pid_t, want: usize) -> anyhow::Result<Vec<u32>> {
    for _ in 0..500 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
        let kids: Vec<u32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.len() >= want {
            return Ok(kids);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("container root {pid} did not fork its {want} children")
}

impl Load {
    fn start() -> anyhow::Result<Load> {
        let cgroup_mount = cgroup2_mount()?;
        let mut load = Load {
            pids: Vec::with_capacity(OTHER_PROCS + 1),
            cgroup: None,
            cgroup_mount,
        };
        let file = CString::new("/etc/hostname")?;
        let null = CString::new("/dev/null")?;
        for _ in 0..OTHER_PROCS {
            load.pids.push(fork_paused(&file, &null, 0)?);
        }
        // A 64-hex id, as Docker names its scopes; unique enough for one bench run.
        let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
        let id = format!("{:016x}", seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4);
        let dir = load
            .cgroup_mount
            .join(format!("ckpt-bench-{}.slice", std::process::id()))
            .join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        load.cgroup = Some(dir.clone());
        let root = fork_paused(&file, &null, CONTAINER_PROCS - 1)?;
        load.pids.push(root);
        let mut members = vec![root as u32];
        members.extend(children_of(root, CONTAINER_PROCS - 1)?);
        for pid in members {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("moving {pid} into {}", dir.display()))?;
        }
        Ok(load)
    }
}

/// Wall time of one ckpt-watch run; exit 2 is its error.
fn time_run(ckpt: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new(ckpt).args(args).output()?;
    let took = t.elapsed();
    if out.status.code() == Some(2) || out.status.code().is_none() {
        bail!(
            "ckpt-watch {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// `iterate` + `procfs` from ckpt-watch's `-v` phase line: the part of a scan that grows with
/// what is scanned (the rest — BTF, BPF load, kallsyms — is the same for any scope).
fn scoped_part(ckpt: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let out = Command::new(ckpt).args(args).arg("-v").output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Drop the log's colour codes: `\x1b[3miterate\x1b[0m\x1b[2m=\x1b[0m1.2ms`.
    let mut plain = String::with_capacity(stderr.len());
    let mut in_escape = false;
    for c in stderr.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    let phase = |name: &str| -> anyhow::Result<Duration> {
        let value = plain
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("no {name}= in ckpt-watch -v output: {plain}"))?;
        let split = value
            .find(|c: char| c.is_alphabetic() || c == 'µ')
            .unwrap_or(value.len());
        let (n, unit) = value.split_at(split);
        let n: f64 = n.parse().with_context(|| format!("phase {name}={value}"))?;
        let secs = match unit {
            "ns" => n / 1e9,
            "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            _ => bail!("phase {name}={value}: unknown unit"),
        };
        Ok(Duration::from_secs_f64(secs))
    };
    Ok(phase("iterate")? + phase("procfs")?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn run() -> anyhow::Result<()> {
    crate::cargo(&["build", "--release", "-p", "ckpt-user"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let ckpt = target.join("release/ckpt-watch");
    let t = Instant::now();
    let load = Load::start()?;
    let dir = load.cgroup.clone().expect("made by Load::start");
    let host_procs = std::fs::read_dir("/proc")?
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .count();
    println!(
        "ckpt-watch preflight benchmark — {CONTAINER_PROCS}-process container, {OTHER_PROCS} other processes started ({host_procs} on the host), ready in {}",
        ms(t.elapsed())
    );
    println!("  container cgroup: {}", dir.display());
    let cgroup = dir.to_str().context("cgroup path is UTF-8")?;
    let preflight_args = ["preflight", "--cgroup", cgroup, "--json"];
    let root = load
        .pids
        .last()
        .context("the container's root was started last")?
        .to_string();
    let tree_args = ["--pid", &root, "--tree", "--json"];
    let host_args = ["--json"];
    // (label, arguments, whether held to the target ratio)
    let runs: [(&str, &[&str], bool); 3] = [
        ("preflight --cgroup (container)", &preflight_args, true),
        ("--pid ROOT --tree (same tree)", &tree_args, true),
        ("whole-host scan", &host_args, false),
    ];
    // Warm the page cache and the BPF loader once each, then interleave the runs.
    for (_, args, _) in runs {
        time_run(&ckpt, args)?;
    }
    let mut times: Vec<Vec<Duration>> = vec![vec![]; runs.len()];
    for _ in 0..RUNS {
        for ((_, args, _), t) in runs.iter().zip(&mut times) {
            t.push(time_run(&ckpt, args)?);
        }
    }
    let mins: Vec<Duration> = times.iter().map(|t| *t.iter().min().unwrap()).collect();
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let (pre_med, host_med) = (medians[0], medians[runs.len() - 1]);
    println!("  {:<34} {:>10} {:>10}", "", "median", "min");
    for ((label, _, _), (med, min)) in runs.iter().zip(medians.iter().zip(&mins)) {
        println!("  {label:<34} {:>10} {:>10}", ms(*med), ms(*min));
    }
    for ((label, _, held), med) in runs.iter().zip(&medians) {
        if !held {
            continue;
        }
        let ratio = med.as_secs_f64() / host_med.as_secs_f64();
        println!(
            "  ratio {label} / host scan: {ratio:.3} (target ≤ {TARGET_RATIO}): {}",
            if ratio <= TARGET_RATIO {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    let (pre_scoped, host_scoped) = (
        scoped_part(&ckpt, &preflight_args)?,
        scoped_part(&ckpt, &host_args)?,
    );
    println!(
        "  scoped part (iterate + /proc; one -v run each): preflight {}, host {}, ratio {:.3}",
        ms(pre_scoped),
        ms(host_scoped),
        pre_scoped.as_secs_f64() / host_scoped.as_secs_f64()
    );
    let start_up = pre_med.saturating_sub(pre_scoped);
    println!(
        "  the rest of either run is the same fixed start-up (BTF, BPF load, kallsyms): ~{} (target ≤ {}): {}",
        ms(start_up),
        ms(TARGET_START_UP),
        if start_up <= TARGET_START_UP {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(load);
    Ok(())
}
