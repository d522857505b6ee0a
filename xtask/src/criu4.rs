//! `cargo xtask criu4`: a CRIU that runs on this host's kernel, for the container oracle
//! (`tests/tests/containers.rs`).
//!
//! Debian 12's CRIU 3.17 dies in kerndat on kernels that map `[vvar_vclock]` (6.15+). Debian
//! unstable's CRIU 4.x does not, but needs unstable's libc. So its package and the closure of
//! its dependencies are fetched through the kernel matrix's private apt (`target/vm/apt/sid`)
//! and unpacked into one directory, where CRIU runs through that directory's own loader and
//! libraries; the machine's packages are not touched. `DIR/bin/criu` is a wrapper script:
//! with `DIR/bin` first on PATH, runc (and podman through it) dump with CRIU 4.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::vm::kernels::{Apt, run_text};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to unpack CRIU and write `bin/criu` (default: `<target>/criu4`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const LIB: &str = "usr/lib/x86_64-linux-gnu";
/// Marks a complete unpack; lists the packages.
const DONE: &str = ".unpacked";

pub fn run(args: &Args) -> anyhow::Result<()> {
    let target = crate::target_dir()?;
    let dir = match &args.dir {
        Some(d) => std::env::current_dir()?.join(d),
        None => target.join("criu4"),
    };
    let wrapper = ensure(&target.join("vm"), &dir)?;
    println!("{}", wrapper.parent().unwrap_or(&dir).display());
    Ok(())
}

/// Fetches and unpacks CRIU 4 into `dir` unless done already, checks it with `criu check`,
/// and returns the wrapper script's path.
pub fn ensure(vm_dir: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let root = dir.join("root");
    if !dir.join(DONE).exists() {
        let apt = Apt::for_suite(vm_dir, Some("sid"))?;
        let debs = dir.join("debs");
        // A half-done earlier run leaves files of other versions: start clean.
        let _ = std::fs::remove_dir_all(&root);
        let packages = match download(&apt, &debs) {
            Ok(packages) => packages,
            // Stale lists name versions the mirror no longer has.
            Err(_) => {
                apt.update()?;
                download(&apt, &debs).context("downloading CRIU 4 from Debian unstable")?
            }
        };
        for deb in std::fs::read_dir(&debs)?.flatten() {
            run_text(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb.path())
                    .arg(&root),
            )?;
        }
        std::fs::remove_dir_all(&debs)?;
        std::fs::write(dir.join(DONE), packages.join("\n") + "\n")?;
    }
    let wrapper = write_wrapper(dir, &root)?;
    check(&wrapper)?;
    Ok(wrapper)
}

/// Downloads the closure into a fresh `debs`; returns the package names.
fn download(apt: &Apt, debs: &Path) -> anyhow::Result<Vec<String>> {
    let packages = closure(apt)?;
    let _ = std::fs::remove_dir_all(debs);
    std::fs::create_dir_all(debs)?;
    eprintln!("criu4: downloading {}", packages.join(" "));
    let mut args = vec!["download", "-q"];
    args.extend(packages.iter().map(String::as_str));
    apt.run("apt-get", &args, Some(debs))?;
    Ok(packages)
}

/// `criu` and every package it depends on, recursively (recommends and the like left out).
fn closure(apt: &Apt) -> anyhow::Result<Vec<String>> {
    let text = apt.run(
        "apt-cache",
        &[
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            "criu",
        ],
        None,
    )?;
    // Package names start a line; `<name>` lines are virtual packages, provided by others.
    let mut packages: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '<']) && !l.is_empty())
        .map(str::to_string)
        .collect();
    packages.sort();
    packages.dedup();
    if !packages.iter().any(|p| p == "libc6") {
        bail!("Debian unstable's criu depends on no libc6: {packages:?}");
    }
    Ok(packages)
}

/// `DIR/bin/criu`: runs the unpacked CRIU through the unpacked loader and libraries.
fn write_wrapper(dir: &Path, root: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = std::path::absolute(root)?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let wrapper = bin.join("criu");
    let lib = root.join(LIB);
    let text = format!(
        "#!/bin/sh\n\
         # Debian unstable's CRIU with its own libc (written by `cargo xtask criu4`).\n\
         exec '{loader}' --library-path '{lib}' '{criu}' \"$@\"\n",
        loader = lib.join("ld-linux-x86-64.so.2").display(),
        lib = lib.display(),
        criu = root.join("usr/sbin/criu").display(),
    );
    std::fs::write(&wrapper, text)?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(wrapper)
}

/// `criu --version` must be 4.x and `criu check` must say `Looks good.`.
fn check(wrapper: &Path) -> anyhow::Result<()> {
    let version = run_text(Command::new(wrapper).arg("--version"))?;
    if !version.contains("Version: 4.") {
        bail!("{} is not CRIU 4: {}", wrapper.display(), version.trim());
    }
    let out = Command::new(wrapper).arg("check").output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("Looks good.") {
        bail!("{} check failed: {}", wrapper.display(), text.trim());
    }
    eprintln!(
        "criu4: {} ({}): Looks good.",
        wrapper.display(),
        version.trim().replace('\n', ", ")
    );
    Ok(())
}
