//! inotify and fanotify marks as CRIU dumps them (criu/fsnotify.c, criu/irmap.c). CRIU saves
//! each watched inode as a file handle and must reopen it (`open_by_handle_at` on the
//! filesystem's mount, as ckpt-watch tries too); where the filesystem cannot decode handles
//! (overlayfs unless mounted with `nfs_export=on`: every container's root; procfs; sysfs) it
//! falls back to finding the inode by path: first under `--irmap-scan-path` directories, then under
//! its hints (`/etc`, `/var/spool`, `/var/log`, dbus and polkit directories, `/lib/udev`,
//! recursively, and `/` itself), all relative to the dumped task's root. A watch found by
//! neither fails the dump: `fsnotify: Can't dump that handle`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::facts::FileFact;

/// CRIU's irmap hints, scanned recursively (criu/irmap.c `hints`); `/` itself is also a hint,
/// without its children.
const HINTS: [&str; 7] = [
    "etc",
    "var/spool",
    "var/log",
    "usr/share/dbus-1/system-services",
    "var/lib/polkit-1/localauthority",
    "usr/share/polkit-1/actions",
    "lib/udev",
];

/// How many directory entries one search may visit: a process under judgement must not make
/// the scan walk forever. What is not found within it counts as not found (never `ok`).
const SCAN_LIMIT: usize = 200_000;

/// Whether CRIU can dump the marks of one inotify/fanotify fd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reach", rename_all = "kebab-case")]
pub enum Watches {
    /// Every watched inode reopens by handle or lies where irmap looks.
    Reachable,
    /// A watched inode CRIU finds only when told where: `--irmap-scan-path PATH`.
    ScanPath { ino: u64, path: String },
    /// A watched inode CRIU cannot reopen and no path under the task's root leads to.
    Lost { ino: u64 },
    /// A mark the kernel shows without a file handle (kernels before 6.6 on an overlay):
    /// CRIU cannot even parse the fdinfo line (criu/proc_parse.c wants `fhandle-bytes`).
    NoHandle { ino: u64 },
}

impl Watches {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Reachable => "reachable",
            Self::ScanPath { .. } => "scan-path",
            Self::Lost { .. } => "lost",
            Self::NoHandle { .. } => "no-handle",
        }
    }

    /// The watched inode CRIU cannot reopen, if any.
    pub fn ino(&self) -> Option<u64> {
        match self {
            Self::Reachable => None,
            Self::ScanPath { ino, .. } | Self::Lost { ino } | Self::NoHandle { ino } => Some(*ino),
        }
    }

    pub fn scan_path(&self) -> Option<&str> {
        match self {
            Self::ScanPath { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// One inode mark of an fdinfo text: `inotify wd:1 ino:98e185 sdev:28 ...` or
/// `fanotify ino:... sdev:...` (mount and filesystem marks carry no inode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub ino: u64,
    /// The kernel's `s_dev` (major << 20 | minor).
    pub sdev: u64,
    /// Whether the line carries a file handle (`fhandle-bytes:`).
    pub handle: bool,
    /// That handle: its type and bytes, as `open_by_handle_at` takes them.
    pub fh: Option<(i32, Vec<u8>)>,
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn parse_marks(fdinfo: &str) -> Vec<Mark> {
    fdinfo
        .lines()
        .filter(|l| l.starts_with("inotify ") || l.starts_with("fanotify "))
        .filter_map(|l| {
            let field = |key: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .and_then(|v| u64::from_str_radix(v, 16).ok())
            };
            let word = |key: &str| l.split_whitespace().find_map(|w| w.strip_prefix(key));
            let fh = word("fhandle-type:")
                .and_then(|t| i32::from_str_radix(t, 16).ok())
                .zip(word("f_handle:").and_then(hex_bytes));
            Some(Mark {
                ino: field("ino:")?,
                sdev: field("sdev:")?,
                handle: l.contains(" fhandle-bytes:"),
                fh,
            })
        })
        .collect()
}

/// A filesystem as the task's mountinfo shows it: type, super options, and where it is mounted
/// (relative to the task's root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filesystem {
    pub fs: String,
    pub options: String,
    pub mount_points: Vec<String>,
}

/// The filesystems of a mountinfo text, by `major:minor`.
pub fn filesystems(mountinfo: &str) -> HashMap<(u64, u64), Filesystem> {
    let mut out: HashMap<(u64, u64), Filesystem> = HashMap::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split(' ');
        let (Some(dev), Some(mount_point)) = (l.nth(2), l.nth(1)) else {
            continue;
        };
        let Some((Ok(major), Ok(minor))) = dev.split_once(':').map(|(a, b)| (a.parse(), b.parse()))
        else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fs), Some(_source)) = (r.next(), r.next()) else {
            continue;
        };
        let entry = out.entry((major, minor)).or_default();
        entry.fs = fs.to_string();
        entry.options = r.next().unwrap_or("").to_string();
        entry.mount_points.push(mount_point.replace("\\040", " "));
    }
    out
}

/// Whether `open_by_handle_at` fails on this filesystem, when it cannot be tried: overlayfs
/// decodes handles only with `nfs_export=on`; procfs and sysfs have no export operations.
fn handles_fail(f: &Filesystem) -> bool {
    (f.fs == "overlay" && !f.options.split(',').any(|o| o == "nfs_export=on"))
        || f.fs == "proc"
        || f.fs == "sysfs"
}

/// Whether the mark's handle reopens the way CRIU reopens it (criu/fsnotify.c open_handle():
/// `open_by_handle_at` on a mount of its filesystem); `None` when that cannot be tried here
/// (no handle, no CAP_DAC_READ_SEARCH, no mount point to open).
fn handle_reopens(root: &Path, fs: &Filesystem, fh: &(i32, Vec<u8>)) -> Option<bool> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (fh_type, bytes) = fh;
    // The mount fd may not be O_PATH (EBADF); only directories are opened, never a device or
    // FIFO a mount point might be.
    let mfd = fs.mount_points.iter().find_map(|mount_point| {
        let path = root.join(mount_point.trim_start_matches('/'));
        let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
            .ok()?;
        // SAFETY: `c` is a valid C string.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        (fd >= 0).then_some(fd)
    })?;
    // SAFETY: `mfd` was just opened and is owned here.
    let mfd = unsafe { OwnedFd::from_raw_fd(mfd) };
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    let mut buf = Vec::with_capacity(8 + bytes.len());
    buf.extend_from_slice(&(bytes.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&fh_type.to_ne_bytes());
    buf.extend_from_slice(bytes);
    // SAFETY: `buf` holds a complete struct file_handle; the kernel reads it only.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mfd.as_raw_fd(),
            buf.as_mut_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel returned a new fd, owned and closed here.
        drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        return Some(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // Not allowed to try (no CAP_DAC_READ_SEARCH): judge by the filesystem.
        Some(libc::EPERM) => None,
        _ => Some(false),
    }
}

/// Depth-first search for (dev, ino) under `dir` as CRIU's irmap scans a hint, within the
/// shared entry budget. Symlinks are not followed (CRIU stats with AT_SYMLINK_NOFOLLOW).
fn find(dir: &Path, dev: u64, ino: u64, budget: &mut usize) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    if meta.dev() == dev && meta.ino() == ino {
        return true;
    }
    if !meta.is_dir() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if find(&entry.path(), dev, ino, budget) {
            return true;
        }
    }
    false
}

/// Breadth-first search for (dev, ino) under a mount of that filesystem, never leaving it:
/// the path to propose for `--irmap-scan-path`.
fn locate(top: &Path, dev: u64, ino: u64, budget: &mut usize) -> Option<PathBuf> {
    let mut queue = std::collections::VecDeque::from([top.to_path_buf()]);
    while let Some(dir) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != dev {
                continue;
            }
            if meta.ino() == ino {
                return Some(entry.path());
            }
            if meta.is_dir() {
                queue.push_back(entry.path());
            }
        }
    }
    None
}

/// Whether CRIU's irmap finds the inode under the task's `root`, or the path a scan path would
/// need, searched under the filesystem's mount points.
fn reach(root: &Path, mount_points: &[String], dev: u64, ino: u64) -> Watches {
    let mut budget = SCAN_LIMIT;
    let root_is_it =
        std::fs::symlink_metadata(root).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
    if root_is_it
        || HINTS
            .iter()
            .any(|h| find(&root.join(h), dev, ino, &mut budget))
    {
        return Watches::Reachable;
    }
    let mut budget = SCAN_LIMIT;
    let found = mount_points.iter().find_map(|mp| {
        let top = root.join(mp.trim_start_matches('/'));
        let top_is_it = std::fs::symlink_metadata(&top).is_ok_and(|m| m.ino() == ino);
        if top_is_it {
            Some(top)
        } else {
            locate(&top, dev, ino, &mut budget)
        }
    });
    match found.and_then(|p| {
        p.strip_prefix(root)
            .ok()
            .map(|r| format!("/{}", r.display()))
    }) {
        Some(path) => Watches::ScanPath { ino, path },
        None => Watches::Lost { ino },
    }
}

/// An inotify or fanotify fd.
pub fn wants_a_look(f: &FileFact) -> bool {
    f.fd.is_some()
        && f.fs_type == "anon_inodefs"
        && matches!(f.name.as_str(), "inotify" | "[fanotify]")
}

/// Judges the marks of every inotify and fanotify fd the way CRIU will dump them. `which`:
/// indices into `files`, a superset of those fds.
pub fn see_watches_as_criu(files: &mut [FileFact], which: &[usize]) {
    let mut mounts: HashMap<u32, HashMap<(u64, u64), Filesystem>> = HashMap::new();
    super::each_fdinfo(files, which, wants_a_look, |f, info| {
        let fss = mounts.entry(f.pid).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{}/mountinfo", f.pid))
                .map(|t| filesystems(&t))
                .unwrap_or_default()
        });
        let root = PathBuf::from(format!("/proc/{}/root", f.pid));
        let mut verdict = Watches::Reachable;
        for m in parse_marks(info) {
            if !m.handle {
                verdict = Watches::NoHandle { ino: m.ino };
                break;
            }
            let (major, minor) = (m.sdev >> 20, m.sdev & 0xfffff);
            let Some(fs) = fss.get(&(major, minor)) else {
                continue;
            };
            let fails =
                m.fh.as_ref()
                    .and_then(|fh| handle_reopens(&root, fs, fh))
                    .map_or_else(|| handles_fail(fs), |reopens| !reopens);
            if !fails {
                continue;
            }
            let dev = libc::makedev(major as u32, minor as u32);
            match reach(&root, &fs.mount_points, dev, m.ino) {
                Watches::Reachable => {}
                scan @ Watches::ScanPath { .. } => {
                    if verdict == Watches::Reachable {
                        verdict = scan;
                    }
                }
                lost => {
                    verdict = lost;
                    break;
                }
            }
        }
        f.watches = Some(Box::new(verdict));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_from_fdinfo() {
        let info = "pos:\t0\nflags:\t00\nmnt_id:\t17\n\
            inotify wd:2 ino:3c4a7 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n\
            inotify wd:1 ino:98e185 sdev:28 mask:2 ignored_mask:0 fhandle-bytes:20 fhandle-type:f8 f_handle:00\n\
            fanotify mnt_id:22 mflags:0 mask:1 ignored_mask:0\n\
            fanotify ino:10 sdev:800001 mflags:0 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:00\n";
        assert_eq!(
            parse_marks(info),
            [
                Mark {
                    ino: 0x3c4a7,
                    sdev: 0xfe00000,
                    handle: true,
                    fh: Some((1, vec![0xa7, 0xc4, 0x03, 0, 0, 0, 0, 0])),
                },
                Mark {
                    ino: 0x98e185,
                    sdev: 0x28,
                    handle: true,
                    fh: Some((0xf8, vec![0])),
                },
                Mark {
                    ino: 0x10,
                    sdev: 0x800001,
                    handle: true,
                    fh: Some((1, vec![0])),
                },
            ]
        );
    }

    /// Before Linux 6.6 an overlay inode gets no handle in fdinfo.
    #[test]
    fn a_mark_without_a_handle_is_seen() {
        let info = "inotify wd:1 ino:98e185 sdev:28 mask:2 ignored_mask:0\n";
        assert_eq!(
            parse_marks(info),
            [Mark {
                ino: 0x98e185,
                sdev: 0x28,
                handle: false,
                fh: None,
            }]
        );
    }

    #[test]
    fn overlay_handles_fail_unless_exported() {
        let fss = filesystems(
            "47 27 0:40 / /m rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n\
             48 27 0:41 / /n rw - overlay overlay rw,lowerdir=/l,nfs_export=on\n\
             49 27 254:0 / / rw - ext4 /dev/vda rw\n",
        );
        assert!(handles_fail(&fss[&(0, 40)]));
        assert_eq!(fss[&(0, 40)].mount_points, ["/m"]);
        assert!(!handles_fail(&fss[&(0, 41)]));
        assert!(!handles_fail(&fss[&(254, 0)]));
    }

    /// A tree laid out as a container root: a file under a hint is reachable, one elsewhere
    /// needs a scan path, an inode nowhere is lost.
    #[test]
    fn reach_follows_crius_hints() {
        let tmp = tempfile::Builder::new()
            .prefix("ckpt-irmap-")
            .tempdir()
            .unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("etc/app")).unwrap();
        std::fs::create_dir_all(root.join("srv/data")).unwrap();
        std::fs::write(root.join("etc/app/conf"), "x").unwrap();
        std::fs::write(root.join("srv/data/file"), "x").unwrap();
        let id = |p: &str| {
            let m = std::fs::metadata(root.join(p)).unwrap();
            (m.dev(), m.ino())
        };
        let at_root = ["/".to_string()];
        let (dev, ino) = id("etc/app/conf");
        assert_eq!(reach(root, &at_root, dev, ino), Watches::Reachable);
        let (dev, ino) = id("srv/data/file");
        assert_eq!(
            reach(root, &at_root, dev, ino),
            Watches::ScanPath {
                ino,
                path: "/srv/data/file".into()
            }
        );
        // Only under the filesystem's own mount points.
        assert_eq!(
            reach(root, &["/etc".into()], dev, ino),
            Watches::Lost { ino }
        );
        let (dev, ino) = id("srv/data");
        assert!(matches!(
            reach(root, &at_root, dev, ino),
            Watches::ScanPath { .. }
        ));
        assert_eq!(
            reach(root, &at_root, dev, u64::MAX),
            Watches::Lost { ino: u64::MAX }
        );
        let (dev, ino) = id("");
        assert_eq!(reach(root, &at_root, dev, ino), Watches::Reachable);
    }
}
