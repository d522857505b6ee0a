//! The guest's whole userland, one uncompressed initramfs per kernel: busybox, the `/init`
//! script, the test binaries with the shared libraries `ldd` names (so they need not be
//! static), Debian's `criu` and `runc`, the list of files a container image is made of, and
//! the kernel's own modules that the suites need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::cpio::Archive;
use super::kernels::Kernel;

const INIT: &str = include_str!("init.sh");

/// Modules loaded in the guest, where the kernel builds them as modules (built-ins are
/// skipped; names a kernel lacks are reported, not fatal).
const MODULES: &[&str] = &[
    // First: nf_tables' libcrc32c needs a crc32c implementation as it loads (a module in the
    // generic flavour; without it nf_tables fails to load, and CRIU with it).
    "crc32c_generic",
    "crc32c_intel",
    // CRIU 3.17 needs the socket diag interfaces, tun/veth and nftables for network locking.
    "unix_diag",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "af_packet_diag",
    "netlink_diag",
    "tun",
    "veth",
    "nf_tables",
    "nft_compat",
    "nfnetlink",
    // Its network lock (iptables-restore, iptables-nft: a mark match through nft_compat).
    "xt_mark",
    // Dumping a net namespace reads its conntrack table. On a host the kernel loads this on
    // demand through modprobe; the guest has no modprobe, so it is loaded up front.
    "nf_conntrack_netlink",
    // The ext4 scratch disk the zoo lives on (virtio and ext4 are modules in some flavours).
    "virtio_pci",
    "virtio_blk",
    "ext4",
    // fdzoo cases: FUSE, overlayfs, vsock, SCTP and AF_ALG sockets.
    "fuse",
    "overlay",
    "vsock",
    "vsock_loopback",
    "sctp",
    "af_alg",
    "algif_hash",
];

/// The guest files a container's image is made of (with their libraries).
const IMAGE: &[&str] = &["/bin/busybox", "/bin/fdzoo", "/bin/fdctl"];

/// Tools CRIU executes during a dump.
const CRIU_TOOLS: &[&str] = &[
    "iptables",
    "ip6tables",
    "iptables-restore",
    "iptables-save",
    "ip6tables-restore",
    "ip6tables-save",
];
const XTABLES_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// What goes into every guest, whatever the kernel.
pub struct Userland {
    /// Guest path → host file (binaries and the libraries they load).
    files: BTreeMap<String, PathBuf>,
    /// The guest paths of the container image's files, one a line.
    image: String,
}

impl Userland {
    /// Collects busybox, the runner (this very xtask binary), ckpt-watch, fdzoo, fdctl, criu,
    /// runc and the daemon suite (told by the runner to find fdctl and ckpt-watch in /bin).
    pub fn collect(target: &Path, daemon_suite: &Path) -> anyhow::Result<Self> {
        let release = target.join("release");
        let runner = std::env::current_exe().context("locating the xtask binary")?;
        let mut files = BTreeMap::new();
        let mut image = String::new();
        for (guest, host) in [
            ("/bin/busybox", which("busybox")?),
            ("/bin/xtask", runner),
            ("/bin/ckpt-watch", release.join("ckpt-watch")),
            ("/bin/fdzoo", release.join("fdzoo")),
            ("/bin/fdctl", release.join("fdctl")),
            ("/usr/sbin/criu", which("criu")?),
            ("/usr/sbin/runc", which("runc")?),
            ("/usr/sbin/ip", which("ip")?),
            // CRIU dumps a container's tmpfs mounts with GNU tar's options, which busybox's
            // tar lacks; it must come before /bin on PATH.
            ("/usr/bin/tar", which("tar")?),
            (super::guest::DAEMON_SUITE, daemon_suite.to_path_buf()),
        ] {
            let added = add_with_libraries(&mut files, guest, &host)?;
            if IMAGE.contains(&guest) {
                image.extend(added.into_iter().map(|path| path + "\n"));
            }
        }
        // CRIU runs these to lock the network and to dump a net namespace; iptables-nft is
        // one binary that acts by the name it is called under, and loads its matches from
        // plugin files.
        for tool in CRIU_TOOLS {
            add_with_libraries(
                &mut files,
                &format!("/usr/sbin/{tool}"),
                &which(tool)?.canonicalize()?,
            )?;
        }
        for plugin in std::fs::read_dir(XTABLES_PLUGINS)
            .with_context(|| format!("reading {XTABLES_PLUGINS}"))?
        {
            let path = plugin?.path();
            files.insert(path.to_string_lossy().into_owned(), path);
        }
        Ok(Userland { files, image })
    }

    /// Writes the initramfs for `kernel` to `out`; returns the modules it could not find.
    pub fn write(&self, kernel: &Kernel, out: &Path) -> anyhow::Result<Vec<String>> {
        let mut archive = Archive::default();
        for dir in [
            "/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/srv/zoo", "/etc",
        ] {
            archive.dir(dir);
        }
        archive.file("/init", 0o755, INIT.as_bytes());
        archive.file(super::guest::IMAGE_MANIFEST, 0o644, self.image.as_bytes());
        for (guest, host) in &self.files {
            let data =
                std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
            archive.file(guest, 0o755, &data);
        }
        let (modules, missing) = modules(&kernel.modules)?;
        let mut order = String::new();
        for (name, path) in &modules {
            archive.file(
                &format!("/lib/modules/{name}.ko"),
                0o644,
                &decompressed(path)?,
            );
            order.push_str(name);
            order.push('\n');
        }
        archive.file("/etc/modules.load", 0o644, order.as_bytes());
        std::fs::write(out, archive.finish())?;
        Ok(missing)
    }
}

/// The host path of a tool on PATH.
fn which(tool: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .with_context(|| format!("{tool} not found"))
}

/// Adds a binary and, at their own paths, the libraries and loader `ldd` lists for it;
/// returns the guest paths of all of them.
fn add_with_libraries(
    files: &mut BTreeMap<String, PathBuf>,
    guest: &str,
    host: &Path,
) -> anyhow::Result<Vec<String>> {
    if !host.is_file() {
        bail!("{} is missing", host.display());
    }
    files.insert(guest.to_string(), host.to_path_buf());
    let mut added = vec![guest.to_string()];
    // `ldd` fails ("not a dynamic executable") for static binaries: nothing to add then.
    let listing = Command::new("ldd")
        .arg(host)
        .output()
        .context("running ldd")?;
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(lib) = path.filter(|p| p.starts_with('/')) {
            files.insert(lib.to_string(), PathBuf::from(lib));
            added.push(lib.to_string());
        }
    }
    Ok(added)
}

/// A module to load: its name and its file in the kernel package.
type Module = (String, PathBuf);

/// The wanted modules and their dependencies, dependencies first, as (name, file); and the
/// wanted names that are neither a module file nor built in.
fn modules(dir: &Path) -> anyhow::Result<(Vec<Module>, Vec<String>)> {
    let index = module_index(&dir.join("kernel"))?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let (mut order, mut missing) = (Vec::new(), Vec::new());
    for name in MODULES {
        if index.contains_key(*name) {
            add_module(name, &index, &mut order)?;
        } else if !builtin.iter().any(|b| b == name) {
            missing.push(name.to_string());
        }
    }
    Ok((order, missing))
}

/// Post-order walk: a module's dependencies are loaded before it.
fn add_module(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    order: &mut Vec<Module>,
) -> anyhow::Result<()> {
    if order.iter().any(|(n, _)| n == name) {
        return Ok(());
    }
    let Some(path) = index.get(name) else {
        bail!("module dependency {name} not found in the kernel package");
    };
    for dep in depends(&decompressed(path)?) {
        add_module(&dep, index, order)?;
    }
    order.push((name.to_string(), path.clone()));
    Ok(())
}

/// Module name → file, over the `kernel/` tree of one release.
fn module_index(root: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.to_str().filter(|p| p.contains(".ko")) {
                index.insert(module_name(name), path.clone());
            }
        }
    }
    Ok(index)
}

/// `kernel/fs/ext4/ext4.ko.xz` → `ext4`; the kernel treats `-` and `_` alike in names.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The `depends=` entry of a module's `.modinfo` section.
fn depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = module.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &module[at + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

/// A module's ELF bytes: busybox `insmod` cannot load compressed modules, so they are
/// decompressed here, with the host's tools.
fn decompressed(path: &Path) -> anyhow::Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return std::fs::read(path).with_context(|| format!("reading {}", path.display())),
    };
    let output = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running {tool} (is it installed?)"))?;
    if !output.status.success() {
        bail!("{tool} -dc {} failed", path.display());
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_module_names_and_dependencies() {
        assert_eq!(module_name("kernel/net/ipv4/tcp_diag.ko.xz"), "tcp_diag");
        assert_eq!(
            module_name("kernel/crypto/crc32c-generic.ko"),
            "crc32c_generic"
        );
        let modinfo = b"\x7fELF...\0license=GPL\0depends=inet_diag,nf-tables\0vermagic=6.1\0";
        assert_eq!(depends(modinfo), ["inet_diag", "nf_tables"]);
        assert!(depends(b"\0depends=\0").is_empty());
    }
}
