//! Thin, checked wrappers over the raw syscalls that every family of cases needs.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a case could not be set up.
#[derive(Debug)]
pub enum Error {
    /// The kernel or machine lacks the feature: reported as `UNSUPPORTED` (exit 77).
    Unsupported(String),
    /// A syscall failed: reported as `ERROR` (exit 1).
    Os { what: String, errno: i32 },
    /// Anything else that failed: reported as `ERROR` (exit 1).
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The error of the syscall `what` that has just failed.
    pub fn last(what: impl Into<String>) -> Self {
        Self::from_errno(what, io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    pub fn from_errno(what: impl Into<String>, errno: i32) -> Self {
        Error::Os {
            what: what.into(),
            errno,
        }
    }

    /// Turns a syscall failure with one of `errnos` into `Unsupported`.
    pub fn unsupported_on(self, errnos: &[i32]) -> Self {
        match self {
            Error::Os { errno, .. } if errnos.contains(&errno) => {
                Error::Unsupported(self.to_string())
            }
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported(why) | Error::Other(why) => f.write_str(why),
            Error::Os { what, errno } => {
                write!(f, "{what}: {}", io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

/// Return values of syscalls that signal failure with -1.
pub trait SysRet: Copy {
    fn failed(self) -> bool;
}

macro_rules! sys_ret {
    ($($t:ty),*) => {$(impl SysRet for $t { fn failed(self) -> bool { self == -1 } })*};
}
sys_ret!(i32, i64, isize);

/// Checks a syscall's return value, naming the call in the error.
pub fn cvt<T: SysRet>(ret: T, what: &str) -> Result<T> {
    if ret.failed() {
        Err(Error::last(what))
    } else {
        Ok(ret)
    }
}

/// Takes ownership of an fd returned by a checked syscall.
pub fn own<T: SysRet + TryInto<RawFd>>(ret: T, what: &str) -> Result<OwnedFd> {
    let fd = cvt(ret, what)?
        .try_into()
        .map_err(|_| Error::Other(format!("{what}: fd out of range")))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Other(format!("{}: path contains NUL", path.display())))
}

pub fn open(path: impl AsRef<Path>, flags: i32) -> Result<OwnedFd> {
    let path = path.as_ref();
    let c = cstring(path)?;
    // SAFETY: `c` is a valid C string; the mode is used only with O_CREAT.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    own(fd, &format!("open({})", path.display()))
}

pub fn write_all(fd: &impl AsRawFd, mut buf: &[u8], what: &str) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        buf = &buf[cvt(n, what)? as usize..];
    }
    Ok(())
}

pub fn fstat(fd: RawFd) -> Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd, &mut st) }, "fstat")?;
    Ok(st)
}

pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds.
    cvt(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    )?;
    Ok((own(fds[0], "pipe2")?, own(fds[1], "pipe2")?))
}

pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    own(
        unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) },
        "pidfd_open",
    )
}

/// Closes every fd from `lowest` up, except those in `keep`.
pub fn close_all_from(lowest: RawFd, keep: &[RawFd]) {
    let mut next = lowest;
    let mut keep = keep
        .iter()
        .copied()
        .filter(|&k| k >= lowest)
        .collect::<Vec<_>>();
    keep.sort_unstable();
    for k in keep.into_iter().chain([RawFd::MAX]) {
        if k > next {
            // SAFETY: closing fds we may not own is the point: the process drops everything.
            unsafe { libc::syscall(libc::SYS_close_range, next, k - 1, 0) };
        }
        next = k.saturating_add(1);
    }
}

/// Makes `fd` refer to /dev/null.
pub fn to_dev_null(fd: RawFd) -> Result<()> {
    let null = open("/dev/null", libc::O_RDWR)?;
    // SAFETY: dup2 onto a standard fd number.
    cvt(
        unsafe { libc::dup2(null.as_raw_fd(), fd) },
        "dup2(/dev/null)",
    )?;
    Ok(())
}

/// Sets the signal mask of the calling thread.
pub fn set_sigmask(how: i32, signals: &[i32]) {
    // SAFETY: an empty sigset is valid; sigaddset/sigprocmask get valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// Blocks until the process behind `pidfd` exits, or until `other` becomes readable
/// (then returns true).
pub fn wait_exit_or_readable(pidfd: &OwnedFd, other: Option<RawFd>) -> bool {
    let mut fds = vec![libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    fds.extend(other.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
    loop {
        // SAFETY: `fds` is a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        if fds[0].revents != 0 {
            return false;
        }
        if fds.get(1).is_some_and(|p| p.revents != 0) {
            return true;
        }
    }
}
