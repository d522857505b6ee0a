//! `cargo xtask`: build, run, test and benchmark ckpt-watch.

mod audit;
mod bench_daemon;
mod bench_preflight;
mod bench_scan;
mod criu4;
mod package;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build everything, the BPF object included (release).
    Build,
    /// Build and run ckpt-watch (default: a whole-host scan).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the whole test suite: formatting, lints, unit, BPF and integration tests.
    Test,
    /// Boot Debian kernels under QEMU and run the suites inside them (the kernel matrix).
    VmTest(vm::Args),
    /// Fetch Debian unstable's CRIU 4 into `<target>/criu4` (`bin/criu` runs it): the CRIU
    /// the container tests checkpoint with.
    Criu4(criu4::Args),
    /// The Debian package (`<target>/debian/ckpt-watch_<version>_<arch>.deb`) and the OCI image
    /// archive (`<target>/oci/ckpt-watch.tar`), from one release build.
    Package,
    /// Benchmarks, each printing ratios against its baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Whole-host scan vs lsof and a /proc walk on synthetic load.
    Scan(bench_scan::Args),
    /// `ckpt-watch audit` vs the seed script on linux-source-6.12.
    Audit,
    /// Preflight of a 10-process container vs a whole-host scan.
    Preflight,
    /// The daemon: added cost to an fd storm, alert latency, RSS and CPU under fd churn.
    Daemon(bench_daemon::Args),
}

/// The workspace's target directory: `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    Ok(workspace.join(
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target")),
    ))
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Xtask::parse().command {
        Cmd::Build => cargo(&["build", "--release", "--workspace"]),
        Cmd::Run { args } => {
            cargo(&["build", "--release", "-p", "ckpt-user"])?;
            let status = Command::new("target/release/ckpt-watch")
                .args(&args)
                .status()
                .context("running target/release/ckpt-watch")?;
            std::process::exit(status.code().unwrap_or(2));
        }
        Cmd::Test => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            // The BPF crate is outside the workspace (another target), so `--all` skips it.
            cargo(&[
                "fmt",
                "--manifest-path",
                "ckpt-ebpf/Cargo.toml",
                "--",
                "--check",
            ])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            // Release: the daemon's tests assert alert latency and shutdown time, which an
            // unoptimised build under CI load would not show truthfully. Every target of the
            // workspace at once: cargo unifies features per invocation, and each later one
            // (the package, the tests, the guests' daemon suite) selects the workspace with
            // its dev-dependencies too, so none compiles a dependency again.
            cargo(&["build", "--release", "--workspace", "--all-targets"])?;
            // The container tests checkpoint real containers with it.
            let target = target_dir()?;
            criu4::ensure(&target.join("vm"), &target.join("criu4"))?;
            // tests/tests/packaging.rs installs and runs what `./x package` ships.
            package::build()?;
            cargo(&["test", "--release", "--workspace", "--", "--test-threads=2"])?;
            // The kernel matrix: the same binary on Debian 5.10, 6.1, 6.12 and 7.2 kernels
            // under QEMU, with Debian's CRIU 3.17 as a second oracle, alone and under runc.
            vm::run(&vm::Args {
                kernel: None,
                backend: vm::Backend::All,
                suites: Vec::new(),
                // vm-test's own default: a hang, not a slow guest beside two others.
                timeout: vm::HANG_SECS,
                guest: false,
            })
        }
        Cmd::VmTest(args) => vm::run(&args),
        Cmd::Criu4(args) => criu4::run(&args),
        Cmd::Package => package::run(),
        Cmd::Bench { which } => match which {
            Bench::Scan(args) => bench_scan::run(&args),
            Bench::Audit => audit::bench(),
            Bench::Preflight => bench_preflight::run(),
            Bench::Daemon(args) => bench_daemon::run(&args),
        },
    }
}
