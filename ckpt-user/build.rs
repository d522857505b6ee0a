//! Builds `ckpt-ebpf` for `bpfel-unknown-none` with Debian's rustc (DESIGN.md §4) and puts the
//! object in OUT_DIR for `include_bytes_aligned!`. aya-build is not used: it runs `rustup run
//! nightly` or adds `-Z build-std`, both of which fail on a fresh machine of this kind.
//! Without the eBPF toolchain an empty object is written so `cargo check`/clippy still work; the
//! binary then refuses to scan and says how to build it properly.

use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().expect("crate inside the workspace");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("ckpt-ebpf.o");
    for dir in ["ckpt-ebpf/src", "ckpt-ebpf/Cargo.toml", "ckpt-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=CKPT_EBPF_OBJECT");
    git_commit(root);

    if let Ok(prebuilt) = std::env::var("CKPT_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &out)?;
        return Ok(());
    }
    match build_ebpf(root) {
        Ok(object) => {
            std::fs::copy(object, &out)?;
        }
        Err(why) => {
            println!("cargo:warning=eBPF programs not built ({why}); the binary cannot scan");
            std::fs::write(&out, [])?;
        }
    }
    Ok(())
}

/// The commit being built, for `ckpt_watch_build_info` ("unknown" outside a git checkout).
fn git_commit(root: &Path) {
    let git = root.join(".git");
    // HEAD names a branch whose ref moves with each commit: all are watched, those that exist
    // only (cargo reruns a script whose watched path is missing at every build).
    let branch = std::fs::read_to_string(git.join("HEAD"))
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| git.join(r.trim())));
    for path in [
        Some(git.join("HEAD")),
        branch,
        Some(git.join("packed-refs")),
    ]
    .into_iter()
    .flatten()
    .filter(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CKPT_GIT_COMMIT={commit}");
}

fn find_bpf_linker() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(home.map(|h| h.join(".cargo/bin")))
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
}

fn build_ebpf(root: &Path) -> Result<PathBuf, String> {
    if !Path::new(DEBIAN_RUSTC).exists() {
        return Err(format!(
            "{DEBIAN_RUSTC} missing: apt-get install rustc-web libstd-rust-web-dev-bpf"
        ));
    }
    let linker = find_bpf_linker().ok_or("bpf-linker missing: cargo install bpf-linker")?;
    let target_dir = root.join("target/ebpf");
    let mut cmd = Command::new(DEBIAN_CARGO);
    // A clean environment: the outer cargo's variables (RUSTC, RUSTFLAGS, CARGO_*, the host
    // target's settings) must not leak into the BPF build.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "aya_ebpf,ckpt_ebpf")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &linker)
        .args([
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "--manifest-path",
        ])
        .arg(root.join("ckpt-ebpf/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {DEBIAN_CARGO}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        return Err(format!("{DEBIAN_CARGO} build of ckpt-ebpf failed"));
    }
    Ok(target_dir.join("bpfel-unknown-none/release/ckpt-ebpf"))
}
