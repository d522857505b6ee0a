//! The kernel matrix: which Debian kernels, fetched with apt and cached under `target/vm/`.
//!
//! Debian 12's own kernels come through the machine's apt. Older and newer suites come through
//! a private apt configuration (its own sources list, lists and cache under `target/vm/apt/`)
//! whose mirror is read from the machine's sources at run time, so no registry host is written
//! into the repository and the machine's apt state is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::vmlinux;

/// One kernel of the matrix, named by a meta-package that follows the newest build.
pub struct Spec {
    /// `None`: the machine's own apt (Debian 12 here); else a suite through the private apt.
    pub suite: Option<&'static str>,
    pub meta: &'static str,
    /// Whether Debian's CRIU 3.17 runs as the second oracle in this guest.
    pub oracle: bool,
    /// Whether the container suite checkpoints runc containers (with CRIU 3.17) here.
    pub containers: bool,
    /// Whether the daemon suite runs once per install-event backend here, or only with fentry:
    /// the oracle guests carry CRIU 3.17 on every case and the containers, so 6.1 and 6.12
    /// cloud run fentry and 5.10, 6.12 generic and 7.x every backend.
    pub every_backend: bool,
}

/// Longest guests first, so that the parallel slots finish close together: on this kind of
/// machine, three at a time, those that run the daemon suite with every backend (7.2 ~1,700 s,
/// 6.12 ~1,300 s, 5.10 ~1,150 s) outlast the oracle guests (~950 s: the zoo ~500 s, the
/// containers ~200 s, one daemon suite ~250 s).
pub const MATRIX: &[Spec] = &[
    // Linux 7.x: anonymous pipes have their own table (pipeanon_fops). CRIU 3.17 cannot dump
    // here (its vDSO check fails), so there are no containers to checkpoint.
    Spec {
        suite: Some("sid"),
        meta: "linux-image-cloud-amd64",
        oracle: false,
        containers: false,
        every_backend: true,
    },
    // The generic flavour builds ext4 as a module: its ops table is a module symbol. Its
    // containers are those of the 6.12 cloud guest, which runs them; it runs every backend
    // for 6.12 instead, the oracle guests carrying the oracle and the containers.
    Spec {
        suite: None,
        meta: "linux-image-6.12-amd64",
        oracle: false,
        containers: false,
        every_backend: true,
    },
    // No containers: runc 1.1 cannot start one in this guest (its nsexec fails to re-exec a
    // cloned binary), and 5.10 has no iter/task_vma for ckpt-watch to see mappings with.
    Spec {
        suite: Some("bullseye"),
        meta: "linux-image-cloud-amd64",
        oracle: false,
        containers: false,
        every_backend: true,
    },
    Spec {
        suite: None,
        meta: "linux-image-6.12-cloud-amd64",
        oracle: true,
        containers: true,
        every_backend: false,
    },
    Spec {
        suite: None,
        meta: "linux-image-cloud-amd64",
        oracle: true,
        containers: true,
        every_backend: false,
    },
];

/// A kernel unpacked and ready to boot.
pub struct Kernel {
    /// The package name without `linux-image-`, e.g. `6.1.0-56-cloud-amd64`.
    pub name: String,
    /// What QEMU boots: the extracted ELF, else the bzImage itself (slower, same result).
    pub boot_image: PathBuf,
    /// `lib/modules/<release>` of the unpacked package.
    pub modules: PathBuf,
    pub oracle: bool,
    pub containers: bool,
    pub every_backend: bool,
}

/// apt, either the machine's or a private configuration for one suite (also CRIU 4's
/// packages, `crate::criu4`).
pub(crate) struct Apt {
    options: Vec<String>,
}

impl Apt {
    pub(crate) fn for_suite(vm_dir: &Path, suite: Option<&str>) -> anyhow::Result<Self> {
        let Some(suite) = suite else {
            return Ok(Apt {
                options: vec!["-o".into(), "APT::Sandbox::User=root".into()],
            });
        };
        let dir = vm_dir.join("apt").join(suite);
        let lists = dir.join("lists");
        std::fs::create_dir_all(lists.join("partial"))?;
        std::fs::create_dir_all(dir.join("cache/archives/partial"))?;
        let sources = dir.join("sources.list");
        let (uri, keyring) = machine_mirror()?;
        std::fs::write(
            &sources,
            format!("deb [signed-by={keyring}] {uri} {suite} main\n"),
        )?;
        let opt = |k: &str, v: &Path| ["-o".to_string(), format!("{k}={}", v.display())];
        let mut options = Vec::new();
        options.extend(opt("Dir::Etc::sourcelist", &sources));
        options.extend(opt("Dir::Etc::sourceparts", Path::new("-")));
        options.extend(opt("Dir::State::Lists", &lists));
        options.extend(opt("Dir::Cache", &dir.join("cache")));
        // Package lists only: translations and AppStream metadata are not needed here.
        options.extend(
            [
                "-o",
                "Acquire::Languages=none",
                "-o",
                "APT::Sandbox::User=root",
            ]
            .map(String::from),
        );
        options.extend(
            [
                "-o",
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
            ]
            .map(String::from),
        );
        let apt = Apt { options };
        if !lists
            .read_dir()?
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains("_Packages")))
        {
            apt.update()?;
        }
        Ok(apt)
    }

    pub(crate) fn update(&self) -> anyhow::Result<()> {
        self.run("apt-get", &["update", "-q"], None).map(drop)
    }

    pub(crate) fn run(
        &self,
        tool: &str,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> anyhow::Result<String> {
        let mut cmd = Command::new(tool);
        cmd.args(&self.options).args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let out = cmd.output().with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The concrete `linux-image-*` package a meta-package currently points to.
    fn resolve_meta(&self, meta: &str) -> anyhow::Result<String> {
        let text = self.run("apt-cache", &["depends", "--important", meta], None)?;
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|d| d.starts_with("linux-image-"))
            .map(str::to_string)
            .with_context(|| format!("{meta} depends on no linux-image package"))
    }
}

/// The Debian mirror the machine's apt uses (first non-security `main` entry) and its keyring.
fn machine_mirror() -> anyhow::Result<(String, String)> {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|e| e == "sources" || e == "list")
            {
                texts.push(std::fs::read_to_string(path).unwrap_or_default());
            }
        }
    }
    let uri = texts.iter().find_map(|t| mirror_in(t)).context(
        "no Debian mirror (a `main` entry that is not -security) in /etc/apt/sources.list*",
    )?;
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg".to_string();
    Ok((uri, keyring))
}

/// The first Debian archive URI in one sources file, one-line or deb822 format.
fn mirror_in(text: &str) -> Option<String> {
    // A Debian archive (…/debian, also on snapshot mirrors), not its security archive
    // nor a third-party repository.
    let wanted = |uri: &str, suites: &str| {
        uri.trim_end_matches('/').ends_with("/debian")
            && suites.split_whitespace().any(|s| !s.contains('-'))
    };
    for line in text.lines().map(str::trim) {
        let mut words = line
            .split_whitespace()
            .filter(|w| !w.starts_with('[') && !w.ends_with(']'));
        if words.next() == Some("deb")
            && let (Some(uri), Some(suite)) = (words.next(), words.next())
            && wanted(uri, suite)
            && words.any(|c| c == "main")
        {
            return Some(uri.to_string());
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if let (Some(uri), Some(suites), Some(comps)) =
            (field("URIs:"), field("Suites:"), field("Components:"))
            && wanted(&uri, &suites)
            && comps.split_whitespace().any(|c| c == "main")
            && field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
        {
            return uri.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

/// Fetches (or finds cached) every kernel of the matrix whose name contains `pattern`.
/// Errors name the package or tool that is missing.
pub fn fetch(vm_dir: &Path, pattern: Option<&str>) -> anyhow::Result<Vec<Kernel>> {
    let mut kernels = Vec::new();
    for spec in MATRIX {
        let apt = Apt::for_suite(vm_dir, spec.suite)?;
        let package = apt.resolve_meta(spec.meta).with_context(|| {
            format!(
                "resolving {} ({})",
                spec.meta,
                spec.suite.unwrap_or("the machine's apt")
            )
        })?;
        let name = package.trim_start_matches("linux-image-").to_string();
        if pattern.is_some_and(|p| !name.contains(p)) {
            continue;
        }
        let dir = vm_dir.join("kernels").join(&name);
        if !dir.join(".unpacked").exists() {
            download(&apt, vm_dir, &package, &dir)?;
        }
        kernels.push(prepare(name, &dir, spec)?);
    }
    if kernels.is_empty() {
        bail!(
            "no kernel of the matrix matches {:?}",
            pattern.unwrap_or("")
        );
    }
    Ok(kernels)
}

/// Downloads the image package and the packages that carry its binary and modules (split
/// out in Debian 14), and unpacks them into `dir`.
fn download(apt: &Apt, vm_dir: &Path, package: &str, dir: &Path) -> anyhow::Result<()> {
    let debs = vm_dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    eprintln!("vm-test: downloading {package}");
    let mut packages = vec![package.to_string()];
    let mut files = vec![download_one(apt, &debs, package)?];
    let depends = run_text(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&files[0])
            .arg("Depends"),
    )?;
    for dep in depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
    {
        if dep.starts_with("linux-binary-") || dep.starts_with("linux-modules-") {
            packages.push(dep.to_string());
            files.push(download_one(apt, &debs, dep)?);
        }
    }
    std::fs::create_dir_all(dir)?;
    for file in &files {
        run_text(Command::new("dpkg-deb").arg("-x").arg(file).arg(dir))?;
    }
    std::fs::write(dir.join(".unpacked"), packages.join("\n"))?;
    Ok(())
}

/// `apt-get download` into `debs`; on failure (stale lists) updates once and retries.
fn download_one(apt: &Apt, debs: &Path, package: &str) -> anyhow::Result<PathBuf> {
    if apt
        .run("apt-get", &["download", "-q", package], Some(debs))
        .is_err()
    {
        apt.update()?;
        apt.run("apt-get", &["download", "-q", package], Some(debs))
            .with_context(|| format!("the kernel package {package} is not available from apt"))?;
    }
    let prefix = format!("{package}_");
    std::fs::read_dir(debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))
}

/// Finds the bzImage and modules in an unpacked kernel and extracts its ELF (once).
fn prepare(name: String, dir: &Path, spec: &Spec) -> anyhow::Result<Kernel> {
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .filter_map(|m| std::fs::read_dir(dir.join(m)).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .find(|p| p.join("kernel").is_dir())
        .with_context(|| format!("no lib/modules/<release>/kernel in {}", dir.display()))?;
    let bzimage = [dir.join("boot"), modules.clone()]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .with_context(|| format!("no vmlinuz in {}", dir.display()))?;
    let elf = dir.join("vmlinux");
    let boot_image = if elf.exists() {
        elf
    } else {
        match vmlinux::extract(&bzimage, &elf) {
            Ok(()) => elf,
            Err(e) => {
                eprintln!("vm-test: {name}: booting the bzImage (slower): {e:#}");
                bzimage
            }
        }
    };
    Ok(Kernel {
        name,
        boot_image,
        modules,
        oracle: spec.oracle,
        containers: spec.containers,
        every_backend: spec.every_backend,
    })
}

/// Runs a host command, returning stdout; failures carry stderr.
pub fn run_text(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::mirror_in;

    #[test]
    fn finds_the_main_mirror_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                      Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://m.example/debian")
        );
        let one_line = "deb [arch=amd64] http://m.example/debian bookworm main contrib\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            mirror_in("deb https://x.example/node nodistro main\n"),
            None
        );
    }
}
