//! `cargo xtask package`: from one release build, the Debian package
//! `<target>/debian/ckpt-watch_<version>_<arch>.deb` and the OCI image archive
//! `<target>/oci/ckpt-watch.tar`.
//!
//! The package holds the binary, the link CRIU runs as its action script (`criu-hook`), a man
//! page per command and the bash, zsh and fish completions (made by
//! `ckpt-user/examples/gen-docs.rs` from the clap definitions behind `--help`), the systemd unit
//! and its documented defaults (`deploy/`), the changelog and the deployment examples; `dpkg-deb` builds it, `dpkg-shlibdeps` names its dependencies. The image is written
//! here as an OCI layout, offline and from scratch: one layer with the binary and exactly the
//! libraries `ldd` names, no base image. `podman load -i` takes it as
//! `localhost/ckpt-watch:<version>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::json;

use crate::vm::kernels::run_text;

pub const NAME: &str = "ckpt-watch";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The name `podman load` gives the image (the DaemonSet's `image:`).
pub const IMAGE_REF: &str = concat!("localhost/ckpt-watch:", env!("CARGO_PKG_VERSION"));
/// Where the package puts the binary (the unit's `ExecStart=`) and where the image does.
const BIN: &str = "usr/bin/ckpt-watch";
/// The link CRIU runs as its action script (`action-script /usr/lib/ckpt-watch/criu-hook`).
const HOOK: &str = "usr/lib/ckpt-watch/criu-hook";

/// What was written.
pub struct Built {
    pub deb: PathBuf,
    pub image: PathBuf,
}

pub fn run() -> anyhow::Result<()> {
    let built = build()?;
    println!("{}", built.deb.display());
    println!("{}", built.image.display());
    Ok(())
}

pub fn build() -> anyhow::Result<Built> {
    let target = crate::target_dir()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    // The workspace's features, as `./x test` builds them: selecting one package would
    // unify its dependencies' features otherwise and compile them again.
    crate::cargo(&[
        "build",
        "--release",
        "--workspace",
        "--bin",
        NAME,
        "--example",
        "gen-docs",
    ])?;
    let release = target.join("release");
    let work = target.join("package");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let docs = work.join("docs");
    run_text(Command::new(release.join("examples/gen-docs")).arg(&docs))?;
    let binary = work.join(NAME);
    run_text(
        Command::new("strip")
            .arg("--strip-unneeded")
            .arg("-o")
            .arg(&binary)
            .arg(release.join(NAME)),
    )?;
    let epoch = source_date_epoch(&root);
    let deb = debian(&root, &work, &binary, &docs, &target.join("debian"), epoch)?;
    let image = oci(&root, &work, &binary, &target.join("oci"), epoch)?;
    Ok(Built { deb, image })
}

/// The commit's time, so that two packagings of one commit are byte for byte the same.
fn source_date_epoch(root: &Path) -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| {
            run_text(
                Command::new("git")
                    .args(["log", "-1", "--format=%ct"])
                    .current_dir(root),
            )
            .ok()
        })
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn git_commit(root: &Path) -> String {
    run_text(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(root),
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|_| "unknown".into())
}

/// Copies `from` to `root/to` with `mode`, making the directories.
fn install(from: &Path, root: &Path, to: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dest = root.join(to);
    std::fs::create_dir_all(dest.parent().context("a file's directory")?)?;
    std::fs::copy(from, &dest)
        .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `gzip -9n` of `from` into `root/to` (no name or time inside: reproducible).
fn install_gz(from: &Path, root: &Path, to: &str) -> anyhow::Result<()> {
    let dest = root.join(to);
    std::fs::create_dir_all(dest.parent().context("a file's directory")?)?;
    let file = std::fs::File::create(&dest)?;
    let status = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(from)
        .stdout(file)
        .status()
        .context("running gzip")?;
    if !status.success() {
        bail!("gzip {} failed", from.display());
    }
    Ok(())
}

fn write(root: &Path, to: &str, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dest = root.join(to);
    std::fs::create_dir_all(dest.parent().context("a file's directory")?)?;
    std::fs::write(&dest, text)?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Every regular file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path().strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

const POSTINST: &str = "#!/bin/sh
# The unit is installed, not enabled: `systemctl enable --now ckpt-watch` starts the daemon
# (options in /etc/default/ckpt-watch).
set -e
if [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
fi
";

const PRERM: &str = "#!/bin/sh
set -e
if [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then
\tdeb-systemd-invoke stop ckpt-watch.service >/dev/null 2>&1 || systemctl stop ckpt-watch.service || true
fi
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
fi
";

fn debian(
    root: &Path,
    work: &Path,
    binary: &Path,
    docs: &Path,
    out_dir: &Path,
    epoch: u64,
) -> anyhow::Result<PathBuf> {
    let arch = run_text(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let stage = work.join("deb");
    install(binary, &stage, BIN, 0o755)?;
    // CRIU's action script (`ckpt-watch criu-hook`): CRIU passes no arguments, so the binary
    // takes the command from the link's name; the path is the one `criu-hook --help` gives.
    let hook = stage.join(HOOK);
    std::fs::create_dir_all(hook.parent().context("the hook's directory")?)?;
    std::os::unix::fs::symlink("../../bin/ckpt-watch", &hook)?;
    let mut pages = 0;
    for page in std::fs::read_dir(docs.join("man"))? {
        let page = page?.path();
        let name = page.file_name().context("a man page")?.to_string_lossy();
        install_gz(&page, &stage, &format!("usr/share/man/man1/{name}.gz"))?;
        pages += 1;
    }
    if pages < 2 {
        bail!("gen-docs wrote {pages} man pages: expected one per command");
    }
    let completions = docs.join("completions");
    for (file, to) in [
        (
            "ckpt-watch.bash",
            "usr/share/bash-completion/completions/ckpt-watch",
        ),
        (
            "_ckpt-watch",
            "usr/share/zsh/vendor-completions/_ckpt-watch",
        ),
        (
            "ckpt-watch.fish",
            "usr/share/fish/vendor_completions.d/ckpt-watch.fish",
        ),
    ] {
        install(&completions.join(file), &stage, to, 0o644)?;
    }
    let deploy = root.join("deploy");
    install(
        &deploy.join("ckpt-watch.service"),
        &stage,
        "lib/systemd/system/ckpt-watch.service",
        0o644,
    )?;
    install(
        &deploy.join("ckpt-watch.default"),
        &stage,
        "etc/default/ckpt-watch",
        0o644,
    )?;
    let doc = "usr/share/doc/ckpt-watch";
    install_gz(
        &root.join("CHANGELOG.md"),
        &stage,
        &format!("{doc}/changelog.gz"),
    )?;
    install_gz(
        &root.join("README.md"),
        &stage,
        &format!("{doc}/README.md.gz"),
    )?;
    for example in [
        "daemonset.yaml",
        "servicemonitor.yaml",
        "prometheus-rules.yaml",
    ] {
        install(
            &deploy.join(example),
            &stage,
            &format!("{doc}/examples/{example}"),
            0o644,
        )?;
    }
    write(
        &stage,
        &format!("{doc}/copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: ckpt-watch\n\n\
         Files: *\n\
         License: MIT or Apache-2.0\n \
         On Debian systems the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.\n",
        0o644,
    )?;

    // Dependencies: dpkg-shlibdeps reads the binary's symbol versions (it wants a
    // debian/control beside it, any will do).
    let shlib = work.join("shlibdeps");
    std::fs::create_dir_all(shlib.join("debian"))?;
    std::fs::write(shlib.join("debian/control"), "")?;
    let depends = run_text(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(stage.join(BIN))
            .current_dir(&shlib),
    )?;
    let depends = depends
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?
        .trim()
        .to_string();
    let files = files_under(&stage)?;
    let mut bytes = 0u64;
    let mut md5sums = String::new();
    for f in &files {
        bytes += std::fs::metadata(stage.join(f))?.len();
        let sum = run_text(Command::new("md5sum").arg(f).current_dir(&stage))?;
        md5sums.push_str(&sum);
    }
    let control = format!(
        "Package: ckpt-watch\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: ckpt-watch developers <ckpt-watch@localhost>\n\
         Installed-Size: {}\n\
         Depends: {depends}\n\
         Suggests: criu\n\
         Section: admin\n\
         Priority: optional\n\
         Description: would this process survive a CRIU checkpoint right now?\n \
         ckpt-watch reads every open file and file-backed mapping of every task with BPF\n \
         iterators, names each file's kernel ops table, and judges it against a profile of\n \
         what the checkpointer (CRIU 3.17 or 4.x, alone or under runc, podman, CRI-O, LXC)\n \
         can dump: per process, process tree, container, systemd unit or session, with the\n \
         file that blocks and the options that would make the dump pass.\n \
         .\n \
         Includes the daemon (ckpt-watch.service: live alerts, Prometheus metrics), the\n \
         CRIU action script /usr/lib/ckpt-watch/criu-hook (stops a dump that would fail\n \
         before the tree is frozen), man pages and bash, zsh and fish completions.\n",
        bytes.div_ceil(1024)
    );
    write(&stage, "DEBIAN/control", &control, 0o644)?;
    write(
        &stage,
        "DEBIAN/conffiles",
        "/etc/default/ckpt-watch\n",
        0o644,
    )?;
    write(&stage, "DEBIAN/md5sums", &md5sums, 0o644)?;
    write(&stage, "DEBIAN/postinst", POSTINST, 0o755)?;
    write(&stage, "DEBIAN/prerm", PRERM, 0o755)?;
    write(&stage, "DEBIAN/postrm", POSTRM, 0o755)?;

    std::fs::create_dir_all(out_dir)?;
    let deb = out_dir.join(format!("{NAME}_{VERSION}_{arch}.deb"));
    run_text(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    )?;
    Ok(deb)
}

/// `sha256:<hex>` of a file.
fn digest(path: &Path) -> anyhow::Result<String> {
    let out = run_text(Command::new("sha256sum").arg(path))?;
    let hex = out.split_whitespace().next().context("sha256sum output")?;
    Ok(format!("sha256:{hex}"))
}

/// `tar` of everything under `dir`, the same bytes for the same files: sorted, owned by root,
/// with the commit's time.
fn tar(dir: &Path, to: &Path, epoch: u64) -> anyhow::Result<()> {
    run_text(
        Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--format=posix",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            ])
            .arg(format!("--mtime=@{epoch}"))
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(to)
            .arg("."),
    )?;
    Ok(())
}

/// Adds a file to an OCI layout's blobs; returns its descriptor's digest and size.
fn blob(layout: &Path, from: &Path) -> anyhow::Result<(String, u64)> {
    let digest = digest(from)?;
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(from, dir.join(digest.trim_start_matches("sha256:")))?;
    Ok((digest, std::fs::metadata(from)?.len()))
}

fn blob_json(
    layout: &Path,
    work: &Path,
    value: &serde_json::Value,
) -> anyhow::Result<(String, u64)> {
    let file = work.join("blob.json");
    std::fs::write(&file, serde_json::to_vec(value)?)?;
    let out = blob(layout, &file);
    std::fs::remove_file(&file)?;
    out
}

/// An RFC 3339 UTC time from seconds since the epoch (the commit's time).
fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    // Howard Hinnant's days_from_civil, inverted.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn oci(
    root: &Path,
    work: &Path,
    binary: &Path,
    out_dir: &Path,
    epoch: u64,
) -> anyhow::Result<PathBuf> {
    // The root filesystem: the binary, the libraries ldd names (the loader's link followed to
    // the file), and the mount points a runtime expects.
    let rootfs = work.join("rootfs");
    install(binary, &rootfs, BIN, 0o755)?;
    let ldd = run_text(Command::new("ldd").arg(binary))?;
    let libs: Vec<&str> = ldd
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .collect();
    if libs.is_empty() {
        bail!("ldd {} named no libraries: {ldd}", binary.display());
    }
    for lib in libs {
        install(Path::new(lib), &rootfs, lib.trim_start_matches('/'), 0o755)?;
    }
    for dir in ["proc", "sys", "dev", "etc", "run", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    }
    let layer_tar = work.join("layer.tar");
    tar(&rootfs, &layer_tar, epoch)?;
    let diff_id = digest(&layer_tar)?;
    let layer_gz = work.join("layer.tar.gz");
    run_text(Command::new("gzip").args(["-9n", "-k"]).arg(&layer_tar))?;

    let layout = work.join("oci");
    let (layer_digest, layer_size) = blob(&layout, &layer_gz)?;
    let created = rfc3339(epoch);
    let commit = git_commit(root);
    let labels = json!({
        "org.opencontainers.image.title": NAME,
        "org.opencontainers.image.description":
            "ckpt-watch: would this process survive a CRIU checkpoint right now?",
        "org.opencontainers.image.version": VERSION,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
        "org.opencontainers.image.created": created,
    });
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [format!("/{BIN}")],
            // A container has its own network namespace: listen on it (IPv6 and IPv4).
            "Cmd": ["daemon", "--format=json", "--listen=[::]:9782"],
            "Env": ["PATH=/usr/bin"],
            "ExposedPorts": {"9782/tcp": {}},
            "Labels": labels,
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "cargo xtask package (from scratch)"}],
    });
    let (config_digest, config_size) = blob_json(&layout, work, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_size,
        }],
        "annotations": labels,
    });
    let (manifest_digest, manifest_size) = blob_json(&layout, work, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": IMAGE_REF},
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        layout.join("oci-layout"),
        serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"}))?,
    )?;
    std::fs::create_dir_all(out_dir)?;
    let archive = out_dir.join(format!("{NAME}.tar"));
    tar(&layout, &archive, epoch)?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_times() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_764_723_661), "2025-12-03T01:01:01Z");
    }
}
