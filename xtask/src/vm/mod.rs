//! `cargo xtask vm-test`: the kernel matrix (issue 6). The same ckpt-watch binary runs inside
//! Debian's own kernels, booted with QEMU's TCG, where the ops tables are exported as data
//! symbols (CONFIG_KALLSYMS_ALL) and where Debian's CRIU 3.17 works as a second oracle.
//!
//! Host side: fetch and cache the kernels (`target/vm/`), build one initramfs per kernel,
//! boot two guests at a time, judge their records, print the agreement table, and fail on any
//! failure. Guest side (`--guest`, started by the guest's /init): the `guest` module.

mod cpio;
mod guest;
mod initramfs;
pub(crate) mod kernels;
mod qemu;
mod records;
mod report;
mod vmlinux;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use initramfs::Userland;
use kernels::Kernel;
use report::GuestReport;

/// Guests at once on this machine's two cores. The daemon suite mostly waits (settle windows
/// and quiet periods, stretched ×5 under TCG): 7.2's took 309 s alone and 322 s beside another
/// guest. Two at a time the matrix took 2,650 s, its last guest alone for ten minutes; three
/// at a time, 2,177 s.
const PARALLEL_GUESTS: usize = 3;

/// A guest still running after this long is hung, not slow: 1.5 × the slowest guest yet (7.2,
/// every backend, 2,380 s beside two others).
pub const HANG_SECS: u64 = 3600;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the kernels whose package name contains PATTERN (e.g. `6.1.0`, `cloud`).
    #[arg(long, value_name = "PATTERN")]
    pub kernel: Option<String>,
    /// The install-event backend the daemon suite runs with in each guest (`all`: each in
    /// turn).
    #[arg(long, value_enum, default_value_t = Backend::All)]
    pub backend: Backend,
    /// Only these suites (repeatable; default: all of them).
    #[arg(long = "suite", value_enum, value_name = "SUITE")]
    pub suites: Vec<Suite>,
    /// Seconds a guest may run before it counts as hung (the 7.2 guest, every backend, took
    /// 1,694 to 2,380 s under TCG beside two others).
    #[arg(long, default_value_t = HANG_SECS)]
    pub timeout: u64,
    /// Run as the test runner inside a guest (what the guest's /init starts).
    #[arg(long, hide = true)]
    pub guest: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Backend {
    Fentry,
    Kprobe,
    Tracepoint,
    All,
}

/// What a guest runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Every fdzoo case: resolver agreement and, where CRIU 3.17 runs, its oracle.
    Zoo,
    /// Real runc containers checkpointed, where CRIU 3.17 runs.
    Containers,
    /// The daemon's integration tests, once per `--backend`.
    Daemon,
}

impl Suite {
    const ALL: [Suite; 3] = [Suite::Zoo, Suite::Containers, Suite::Daemon];

    /// The name the guest reads in `CKPT_VM_SUITES`.
    fn name(self) -> &'static str {
        match self {
            Suite::Zoo => "zoo",
            Suite::Containers => "containers",
            Suite::Daemon => "daemon",
        }
    }
}

impl Args {
    fn runs(&self, suite: Suite) -> bool {
        self.suites.is_empty() || self.suites.contains(&suite)
    }

    /// The backends the daemon suite runs with in `kernel`'s guest: none when it does not run.
    fn backends(&self, kernel: &Kernel) -> Vec<&'static str> {
        match (self.runs(Suite::Daemon), self.backend) {
            (false, _) => Vec::new(),
            (true, Backend::All) if !kernel.every_backend => Backend::Fentry.names(),
            (true, chosen) => chosen.names(),
        }
    }
}

impl Backend {
    /// The backends' names as `ckpt-watch daemon --backend` takes them.
    fn names(self) -> Vec<&'static str> {
        match self {
            Backend::Fentry => vec!["fentry"],
            Backend::Kprobe => vec!["kprobe"],
            Backend::Tracepoint => vec!["tracepoint"],
            Backend::All => vec!["fentry", "kprobe", "tracepoint"],
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.guest {
        return guest::run();
    }
    let started = Instant::now();
    require_host_tools()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let target = workspace.join(target);
    // As `./x test` builds them (see main.rs): after it, nothing here compiles again.
    crate::cargo(&["build", "--release", "--workspace", "--all-targets"])?;
    let daemon_suite = build_daemon_suite()?;
    let vm_dir = target.join("vm");
    let kernels = kernels::fetch(&vm_dir, args.kernel.as_deref())?;
    let userland = Userland::collect(&target, &daemon_suite)?;
    let disk = scratch_disk(&vm_dir)?;
    let reports = run_guests(args, &vm_dir, &kernels, &userland, &disk)?;
    print_summary(&reports, &vm_dir)?;
    let failed = reports.iter().filter(|r| !r.failures.is_empty()).count();
    eprintln!(
        "vm-test: {} kernels in {:.0?}",
        reports.len(),
        started.elapsed()
    );
    if failed > 0 {
        bail!("vm-test: {failed} of {} guests failed", reports.len());
    }
    Ok(())
}

/// Builds the daemon integration tests (`tests/tests/daemon.rs`) and returns the test binary,
/// which the guests run as they are.
fn build_daemon_suite() -> anyhow::Result<PathBuf> {
    let out = Command::new(env!("CARGO"))
        // The workspace's features, as the host's tests were built with (see package.rs).
        .args(["test", "--release", "--workspace", "--test", "daemon"])
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the daemon suite failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "daemon")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo named no executable for the daemon suite")
}

/// Fails with the packages to install when a host tool is missing.
fn require_host_tools() -> anyhow::Result<()> {
    let tools = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("criu", "criu"),
        ("runc", "runc"),
        ("iptables-restore", "iptables"),
        ("ip", "iproute2"),
        ("mkfs.ext4", "e2fsprogs"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("zstd", "zstd"),
        ("lz4", "lz4"),
        ("xz", "xz-utils"),
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |tool: &str| {
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file())
    };
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !found(tool))
        .map(|(tool, package)| format!("{tool} (apt package {package})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "vm-test needs: {} — scripts/bootstrap.sh installs them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// An empty ext4 image the zoo's files live on (the oracle table's cases are on ext4); the
/// guests attach it copy-on-write, so one image serves all.
fn scratch_disk(vm_dir: &Path) -> anyhow::Result<PathBuf> {
    let disk = vm_dir.join("zoo-ext4.img");
    if !disk.exists() {
        std::fs::create_dir_all(vm_dir)?;
        kernels::run_text(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "zoo"])
                .arg(&disk)
                .arg("64M"),
        )?;
    }
    Ok(disk)
}

/// Boots every kernel, at most PARALLEL_GUESTS at once, and judges each.
fn run_guests(
    args: &Args,
    vm_dir: &Path,
    kernels: &[Kernel],
    userland: &Userland,
    disk: &Path,
) -> anyhow::Result<Vec<GuestReport>> {
    let queue = Mutex::new(kernels.iter());
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL_GUESTS)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        // A statement of its own: the lock must not be held while the guest runs.
                        let next = queue.lock().expect("queue").next();
                        let Some(kernel) = next else { break };
                        let report = run_guest(args, vm_dir, kernel, userland, disk)?;
                        eprintln!("vm-test: {}", report.headline());
                        reports.lock().expect("reports").push(report);
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("guest worker panicked"))
    })?;
    let mut reports = reports.into_inner().expect("reports");
    reports.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    Ok(reports)
}

fn run_guest(
    args: &Args,
    vm_dir: &Path,
    kernel: &Kernel,
    userland: &Userland,
    disk: &Path,
) -> anyhow::Result<GuestReport> {
    let dir = vm_dir.join("runs").join(&kernel.name);
    std::fs::create_dir_all(&dir)?;
    let initrd = dir.join("initramfs.cpio");
    let missing = userland.write(kernel, &initrd)?;
    let suites: Vec<&str> = Suite::ALL
        .into_iter()
        .filter(|s| args.runs(*s))
        .map(Suite::name)
        .collect();
    let backends = args.backends(kernel);
    eprintln!(
        "vm-test: booting {} (oracle: {}, containers: {}, backends: {})",
        kernel.name,
        kernel.oracle,
        kernel.containers,
        backends.join(",")
    );
    let outcome = qemu::boot(&qemu::Boot {
        kernel: &kernel.boot_image,
        initrd: &initrd,
        disk,
        env: vec![
            format!("CKPT_VM_BACKENDS={}", backends.join(",")),
            format!("CKPT_VM_ORACLE={}", u8::from(kernel.oracle)),
            format!("CKPT_VM_CONTAINERS={}", u8::from(kernel.containers)),
            format!("CKPT_VM_SUITES={}", suites.join(",")),
        ],
        dir,
        timeout: Duration::from_secs(args.timeout),
    })?;
    Ok(GuestReport::judge(
        &kernel.name,
        outcome,
        &missing,
        &backends,
    ))
}

/// Prints each guest's headline, notes and failures, and the agreement tables (also written
/// to `target/vm/agreement.md`).
fn print_summary(reports: &[GuestReport], vm_dir: &Path) -> anyhow::Result<()> {
    let mut tables = String::new();
    for r in reports {
        if let Some(table) = r.agreement_table() {
            tables.push_str(&table);
            tables.push('\n');
        }
    }
    std::fs::write(vm_dir.join("agreement.md"), &tables)?;
    println!("{tables}");
    println!("kernel matrix:");
    for r in reports {
        println!("  {}", r.headline());
        for note in &r.notes {
            println!("    note: {note}");
        }
        for failure in &r.failures {
            println!("    FAIL: {failure}");
        }
    }
    Ok(())
}
