//! Helpers the real-tree test and `cargo xtask bench audit` share: Debian's linux-source-6.12,
//! fetched and unpacked once into the workspace's `target/linux-source/`, and the seed script.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The Debian package holding the tree the audit is measured on.
pub const PACKAGE: &str = "linux-source-6.12";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The unpacked linux-source-6.12 tree, downloaded with `apt-get download` (after an
/// `apt-get update` if the first try fails) and cached between runs.
pub fn linux_source_tree() -> anyhow::Result<PathBuf> {
    let cache = workspace().join("target").join("linux-source");
    let tree = cache.join(PACKAGE);
    if tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let deb = |c: &Path| -> Option<PathBuf> {
        std::fs::read_dir(c)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "deb")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(PACKAGE))
            })
    };
    if deb(&cache).is_none()
        && sh(Command::new("apt-get")
            .arg("download")
            .arg(PACKAGE)
            .current_dir(&cache))
        .is_err()
    {
        sh(Command::new("apt-get").arg("update").arg("-qq"))?;
        sh(Command::new("apt-get")
            .arg("download")
            .arg(PACKAGE)
            .current_dir(&cache))?;
    }
    let deb = deb(&cache).context("apt-get download left no .deb")?;
    // Unpack beside the final place and rename, so an interrupted run never leaves half a tree.
    let partial = cache.join(format!("partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial)?;
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO ./usr/src/{PACKAGE}.tar.xz | tar -xJ -C '{}'",
        deb.display(),
        partial.display()
    );
    sh(Command::new("sh").arg("-c").arg(&script))?;
    if let Err(e) = std::fs::rename(partial.join(PACKAGE), &tree)
        && !tree.join("Makefile").is_file()
    {
        return Err(e).context("moving the unpacked tree into place");
    }
    let _ = std::fs::remove_dir_all(&partial);
    Ok(tree)
}

/// The seed script (`shared/seed/check_fsop.sh`, beside the workspace).
pub fn seed_script() -> PathBuf {
    workspace().join("../shared/seed/check_fsop.sh")
}

/// Runs the seed script in `dir` with `args`; returns its output lines and wall time. The script
/// always exits 23, so its status is not checked.
pub fn run_seed(dir: &Path, args: &[&str]) -> anyhow::Result<(Vec<String>, Duration)> {
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(seed_script())
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running the seed script in {}", dir.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((text.lines().map(str::to_string).collect(), start.elapsed()))
}

/// One entry of the seed script's output: `./fs/ext4/file.c:930+20`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedEntry {
    pub file: String,
    pub line: u32,
    pub len: u32,
}

pub fn parse_seed_line(l: &str) -> Option<SeedEntry> {
    let (file, rest) = l.rsplit_once(':')?;
    let (line, len) = rest.split_once('+')?;
    Some(SeedEntry {
        file: file.to_string(),
        line: line.parse().ok()?,
        len: len.trim_end_matches(':').parse().ok()?,
    })
}
