//! What a case gets to work with (its directory, its cleanup list, its peers) and what
//! it hands back (the fds to hold).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::sys::{self, Error, Result, cvt};

/// Something under the case directory to undo at exit, in reverse order of registration.
#[derive(Clone)]
enum Undo {
    /// A file or socket to unlink.
    File(PathBuf),
    /// A directory to remove with everything in it.
    Tree(PathBuf),
    /// A directory to rmdir, not to empty (a cgroup).
    EmptyDir(PathBuf),
    /// A mount to detach.
    Mount(PathBuf),
}

/// Everything the subject created outside its own memory.
#[derive(Clone, Default)]
pub struct Cleanup {
    undo: Vec<Undo>,
    /// The temp dir fdzoo made itself (no `--dir`): removed whole at the end.
    own_dir: Option<PathBuf>,
}

impl Cleanup {
    /// Undoes everything; safe to run twice (the subject on SIGTERM, then its janitor).
    pub fn run(&self) {
        for undo in self.undo.iter().rev() {
            // Errors are ignored: the thing may be gone already.
            let _ = match undo {
                Undo::File(p) => fs::remove_file(p),
                Undo::Tree(p) => fs::remove_dir_all(p),
                Undo::EmptyDir(p) => fs::remove_dir(p),
                Undo::Mount(p) => {
                    if let Ok(c) = sys::cstring(p) {
                        // SAFETY: `c` is a valid C string.
                        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                    }
                    Ok(())
                }
            };
        }
        if let Some(dir) = &self.own_dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// The state a case function works in.
pub struct Ctx {
    /// Directory where every file of the case lives.
    pub dir: PathBuf,
    /// The subject's pid.
    pub pid: libc::pid_t,
    pub cleanup: Cleanup,
    /// Processes outside the subject's tree that the case started.
    pub peers: Vec<libc::pid_t>,
}

impl Ctx {
    /// Uses `dir`, or makes a fresh temp dir that is removed at exit.
    pub fn new(dir: Option<PathBuf>) -> Result<Self> {
        let mut cleanup = Cleanup::default();
        let dir = match dir {
            Some(dir) => dir,
            None => {
                let dir = make_temp_dir()?;
                cleanup.own_dir = Some(dir.clone());
                dir
            }
        };
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        Ok(Ctx {
            dir,
            pid,
            cleanup,
            peers: Vec::new(),
        })
    }

    /// `DIR/name`, to be unlinked at exit.
    pub fn file(&mut self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        self.cleanup.undo.push(Undo::File(path.clone()));
        path
    }

    /// Creates `DIR/name` with `len` bytes of content, mode 0644.
    pub fn create_file(&mut self, name: &str, len: usize) -> Result<PathBuf> {
        let path = self.file(name);
        fill_file(&path, len)?;
        Ok(path)
    }

    /// Creates the directory `DIR/name` (mode 0755), removed with its content at exit.
    pub fn subdir(&mut self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        self.cleanup.undo.push(Undo::Tree(path.clone()));
        fs::create_dir_all(&path)
            .map_err(|e| Error::Other(format!("mkdir {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Registers a mount at `target` to detach at exit (before its directory goes).
    pub fn will_mount(&mut self, target: &Path) {
        self.cleanup.undo.push(Undo::Mount(target.to_path_buf()));
    }

    /// mount(2) of a filesystem that needs no device, detached at exit.
    pub fn mount(&mut self, fstype: &str, target: &Path, data: &str) -> Result<()> {
        self.will_mount(target);
        mount(fstype, target, fstype, data)
    }

    /// A fresh, empty cgroup v2 directory `fdzoo.N` under the cgroup2 mount, removed at exit.
    pub fn cgroup_dir(&mut self) -> Result<PathBuf> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::Other(format!("/proc/self/mountinfo: {e}")))?;
        // Fields: id parent major:minor root mount-point options... - fstype source options
        let root = mountinfo
            .lines()
            .find(|line| {
                line.split(" - ")
                    .nth(1)
                    .is_some_and(|tail| tail.starts_with("cgroup2 "))
            })
            .and_then(|line| line.split(' ').nth(4))
            .ok_or_else(|| Error::Unsupported("no cgroup2 filesystem mounted".into()))?;
        let dir = Path::new(root).join(self.numbered("fdzoo"));
        fs::create_dir(&dir).map_err(|e| Error::Other(format!("mkdir {}: {e}", dir.display())))?;
        self.cleanup.undo.push(Undo::EmptyDir(dir.clone()));
        Ok(dir)
    }

    /// The path that identifies this subject in names shared by all (`*.N`).
    pub fn numbered(&self, prefix: &str) -> String {
        format!("{prefix}.{}", self.pid)
    }
}

pub fn mount(source: &str, target: &Path, fstype: &str, data: &str) -> Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(|_| Error::Other("NUL in mount".into()));
    let (source, fstype, data) = (c(source)?, c(fstype)?, c(data)?);
    let target_c = sys::cstring(target)?;
    // SAFETY: all pointers are valid C strings.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    cvt(
        ret,
        &format!("mount -t {} {}", fstype.to_string_lossy(), target.display()),
    )
    .map_err(|e| e.unsupported_on(&[libc::ENODEV]))?;
    Ok(())
}

/// Creates (or truncates) `path` with `len` bytes of content.
pub fn fill_file(path: &Path, len: usize) -> Result<OwnedFd> {
    let fd = sys::open(path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC)?;
    sys::write_all(&fd, &vec![b'z'; len], "write")?;
    Ok(fd)
}

fn make_temp_dir() -> Result<PathBuf> {
    let mut template = *b"/tmp/fdzoo.XXXXXX\0";
    // SAFETY: `template` is a writable NUL-terminated buffer.
    let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(Error::last("mkdtemp"));
    }
    let dir = PathBuf::from(std::str::from_utf8(&template[..template.len() - 1]).unwrap_or("/"));
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::Other(format!("chmod {}: {e}", dir.display())))?;
    Ok(dir)
}

/// What a case leaves the subject holding.
#[derive(Default)]
pub struct Held {
    /// The fds, in the order they must end up numbered.
    pub fds: Vec<OwnedFd>,
    /// The number of the first fd (3 unless the table says otherwise).
    pub first: RawFd,
    /// Runs on the first fd once it has its final number: for state that closing any other
    /// fd of the same file would undo (POSIX locks belong to the process, not the fd).
    pub after_place: Option<fn(RawFd) -> Result<()>>,
}

impl Held {
    /// No fds: the case left only mappings or process state behind.
    pub fn nothing() -> Result<Self> {
        Ok(Held {
            first: 3,
            ..Held::default()
        })
    }

    pub fn fds(fds: impl IntoIterator<Item = OwnedFd>) -> Result<Self> {
        Ok(Held {
            fds: fds.into_iter().collect(),
            first: 3,
            after_place: None,
        })
    }

    pub fn one(fd: OwnedFd) -> Result<Self> {
        Self::fds([fd])
    }

    /// Numbers the fds from `first` on.
    pub fn at(mut self, first: RawFd) -> Self {
        self.first = first;
        self
    }

    /// Moves the fds to `first, first+1, ...` and checks that no other fd is open above 2.
    /// Returns the inode to report: the first fd's, if it is a socket, pipe or FIFO.
    pub fn place(self) -> Result<Option<u64>> {
        let targets: Vec<RawFd> = (self.first..).take(self.fds.len()).collect();
        // Park every fd far away first, so that no move clobbers another held fd.
        let parked = self
            .fds
            .into_iter()
            .map(|fd| {
                // SAFETY: F_DUPFD on an fd we own.
                let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 512) };
                sys::own(ret, "fcntl(F_DUPFD)")
            })
            .collect::<Result<Vec<_>>>()?;
        for (fd, &target) in parked.into_iter().zip(&targets) {
            // SAFETY: dup2 of an owned fd onto its final number; the target is then leaked
            // on purpose: the subject holds it until it dies.
            cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) }, "dup2")?;
        }
        if let (Some(hook), Some(&fd)) = (self.after_place, targets.first()) {
            hook(fd)?;
        }
        check_no_strays(&targets)?;
        let Some(&fd) = targets.first() else {
            return Ok(None);
        };
        let st = sys::fstat(fd)?;
        let kind = st.st_mode & libc::S_IFMT;
        Ok((kind == libc::S_IFSOCK || kind == libc::S_IFIFO).then_some(st.st_ino))
    }
}

/// Fails if any fd other than 0-2 and `held` is open.
fn check_no_strays(held: &[RawFd]) -> Result<()> {
    let listed: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::Other(format!("/proc/self/fd: {e}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd is closed by now, so F_GETFD fails on it.
    // SAFETY: F_GETFD only queries.
    let open = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    let strays: Vec<RawFd> = listed
        .into_iter()
        .filter(|&fd| fd > 2 && !held.contains(&fd) && open(fd))
        .collect();
    if strays.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!("stray fds {strays:?} (bug in fdzoo)")))
    }
}
