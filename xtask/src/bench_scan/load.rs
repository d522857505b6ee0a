//! Synthetic load: N processes, each holding M open fds of a realistic mix (regular files,
//! `/dev/null`, a directory, pipes, unix socket pairs, eventfds, epoll, TCP listeners), paused
//! until the bench is done with them.
//!
//! The processes are plain `fork()`s of the bench itself: nothing to exec, so 2,000 of them are
//! ready in about a second. They share one process group, which the [`Load`] guard kills and reaps
//! when dropped, on errors too; `PR_SET_PDEATHSIG` covers the bench dying without unwinding.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libc::c_int;

use super::Shape;

/// Regular files the load processes open, round robin.
const FILES: usize = 16;
/// TCP listeners per process ("a few": the ephemeral port range holds ~28k).
const TCP_LISTENERS: usize = 2;
/// Fds a load process needs beyond its M: stdio and the readiness pipe.
pub const NOFILE_SLACK: usize = 8;

/// What a load process opens, one step at a time; pipes and socket pairs take two fds.
#[derive(Clone, Copy)]
enum Kind {
    File,
    DevNull,
    Dir,
    Pipe,
    SocketPair,
    EventFd,
    Epoll,
    TcpListener,
}

impl Kind {
    fn width(self) -> usize {
        match self {
            Kind::Pipe | Kind::SocketPair => 2,
            _ => 1,
        }
    }
}

/// One cycle of the mix, 20 fds: 8 regular files, `/dev/null`, a directory, 2 pipes (4 fds),
/// 2 unix socket pairs (4 fds), an eventfd and an epoll instance.
const CYCLE: [Kind; 16] = [
    Kind::File,
    Kind::File,
    Kind::File,
    Kind::File,
    Kind::File,
    Kind::File,
    Kind::File,
    Kind::File,
    Kind::DevNull,
    Kind::Dir,
    Kind::Pipe,
    Kind::Pipe,
    Kind::SocketPair,
    Kind::SocketPair,
    Kind::EventFd,
    Kind::Epoll,
];

/// Exactly `fds` fds: the TCP listeners first, then the cycle; a pair that would overshoot
/// becomes a regular file.
fn plan(fds: usize) -> Vec<Kind> {
    let mut kinds = Vec::new();
    let mut used = 0;
    let mix =
        std::iter::repeat_n(Kind::TcpListener, TCP_LISTENERS).chain(CYCLE.into_iter().cycle());
    for kind in mix {
        if used == fds {
            break;
        }
        let kind = if used + kind.width() > fds {
            Kind::File
        } else {
            kind
        };
        used += kind.width();
        kinds.push(kind);
    }
    kinds
}

/// Everything a load process needs, prepared before `fork()` so the child never allocates.
struct Recipe {
    /// Processes this one forks once its fds are open, sharing them (the forked mix).
    forks: usize,
    kinds: Vec<Kind>,
    dir: CString,
    files: Vec<CString>,
    nofile: libc::rlim_t,
}

/// The running load. Dropping it kills and reaps every process and removes the temp dir.
pub struct Load {
    pgid: libc::pid_t,
    pids: Vec<libc::pid_t>,
    dir: PathBuf,
    pub ready_in: Duration,
}

impl Load {
    /// Forks `shape.procs` processes holding `shape.fds` fds each (plus stdio), and returns once
    /// every one of them has opened all of its fds.
    pub fn spawn(shape: Shape) -> anyhow::Result<Load> {
        let t = Instant::now();
        let dir = std::env::temp_dir().join(format!("ckpt-bench-scan.{}", std::process::id()));
        let mut load = Load {
            pgid: 0,
            pids: Vec::with_capacity(shape.procs),
            dir,
            ready_in: Duration::ZERO,
        };
        let recipe = load.prepare(shape)?;
        let (ready_rx, ready_tx) = pipe()?;
        let parent = std::process::id() as libc::pid_t;
        // Forked: one process opens the fds and forks the rest, who share its open files.
        let opening = if shape.forked { 1 } else { shape.procs };
        for _ in 0..opening {
            // SAFETY: the bench is single-threaded here, and the child only makes raw syscalls
            // on memory prepared before the fork, then pauses or exits.
            match unsafe { libc::fork() } {
                -1 => return Err(io::Error::last_os_error()).context("fork"),
                0 => child(parent, load.pgid, ready_tx.as_raw_fd(), &recipe),
                pid => load.adopt(pid)?,
            }
        }
        // Only the children's write ends are left, so EOF means every child reported or died.
        drop(ready_tx);
        let mut reports = Vec::with_capacity(shape.procs);
        File::from(ready_rx)
            .take(shape.procs as u64)
            .read_to_end(&mut reports)
            .context("reading the load processes' reports")?;
        check_reports(&reports, shape.procs)?;
        load.ready_in = t.elapsed();
        Ok(load)
    }

    /// Creates the files the children open and the recipe they follow.
    fn prepare(&self, shape: Shape) -> anyhow::Result<Recipe> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let files = (0..FILES)
            .map(|i| {
                let path = self.dir.join(format!("file-{i}"));
                std::fs::write(&path, format!("synthetic load file {i}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(CString::new(path.as_os_str().as_bytes())?)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Recipe {
            forks: if shape.forked { shape.procs - 1 } else { 0 },
            kinds: plan(shape.fds),
            dir: CString::new(self.dir.as_os_str().as_bytes())?,
            files,
            nofile: (shape.fds + NOFILE_SLACK) as libc::rlim_t,
        })
    }

    /// Puts a new child in the load's process group (the first child leads it). Both sides call
    /// setpgid, so the child is in the group whichever runs first.
    fn adopt(&mut self, pid: libc::pid_t) -> anyhow::Result<()> {
        self.pids.push(pid);
        if self.pgid == 0 {
            self.pgid = pid;
        }
        // SAFETY: plain syscall on our own child.
        if unsafe { libc::setpgid(pid, self.pgid) } == -1 {
            let err = io::Error::last_os_error();
            // EACCES: the child got there first, which is fine.
            if err.raw_os_error() != Some(libc::EACCES) {
                return Err(err).with_context(|| format!("setpgid({pid}, {})", self.pgid));
            }
        }
        Ok(())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // SAFETY: plain syscalls on our own children. killpg(0) would signal the bench's own
        // group, hence the guard; the per-pid kill catches a child that never joined the group.
        unsafe {
            if self.pgid > 0 {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
            for &pid in &self.pids {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The readiness pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid [c_int; 2].
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One byte per child: 0 once all its fds are open, else the errno that stopped it; fewer
/// bytes than children when some died before reporting.
fn check_reports(reports: &[u8], procs: usize) -> anyhow::Result<()> {
    if let Some(&errno) = reports.iter().find(|&&r| r != 0) {
        bail!(
            "a load process could not open its fds: {}",
            io::Error::from_raw_os_error(errno.into())
        );
    }
    if reports.len() < procs {
        bail!(
            "only {} of {procs} load processes became ready",
            reports.len()
        );
    }
    Ok(())
}

/// The child: join the group, open the fds, fork the sharers (if any), report, pause until
/// killed.
fn child(parent: libc::pid_t, pgid: libc::pid_t, ready: c_int, recipe: &Recipe) -> ! {
    let report =
        match open_fds(parent, pgid, ready, recipe).and_then(|()| fork_sharers(ready, recipe)) {
            Ok(()) => 0,
            Err(errno) => errno.clamp(1, 255) as u8,
        };
    report_and_pause(ready, report)
}

/// The forked mix: `recipe.forks` processes that inherit every open file, each reporting
/// ready at once; they die with this one.
fn fork_sharers(ready: c_int, recipe: &Recipe) -> Result<(), i32> {
    let me = std::process::id() as libc::pid_t;
    for _ in 0..recipe.forks {
        // SAFETY: raw syscalls only, in the child as in the parent.
        match unsafe { libc::fork() } {
            -1 => return Err(errno()),
            0 => unsafe {
                let armed = libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0;
                let report = if armed && libc::getppid() == me { 0 } else { 1 };
                report_and_pause(ready, report)
            },
            _ => {}
        }
    }
    Ok(())
}

/// Writes this process's readiness byte and pauses until killed (exits on failure).
fn report_and_pause(ready: c_int, report: u8) -> ! {
    // SAFETY: raw syscalls on our own fds; nothing here allocates or unwinds.
    unsafe {
        libc::write(ready, (&raw const report).cast(), 1);
        libc::close(ready);
        if report != 0 {
            libc::_exit(1);
        }
        loop {
            libc::pause();
        }
    }
}

/// errno of the last failed call, without allocating.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(r: c_int) -> Result<c_int, i32> {
    if r == -1 { Err(errno()) } else { Ok(r) }
}

fn open_fds(
    parent: libc::pid_t,
    pgid: libc::pid_t,
    ready: c_int,
    recipe: &Recipe,
) -> Result<(), i32> {
    // SAFETY: raw syscalls with valid arguments; see each call.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        // The bench died before PDEATHSIG was armed: nobody would ever kill us.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        check(libc::setpgid(0, pgid))?;
        // Start from stdio alone: whatever else the bench had open is not this process's load.
        if ready > 3 {
            check(libc::close_range(3, ready as u32 - 1, 0))?;
        }
        check(libc::close_range(ready as u32 + 1, u32::MAX, 0))?;
        let mut limit: libc::rlimit = std::mem::zeroed();
        check(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit))?;
        limit.rlim_cur = limit.rlim_cur.max(recipe.nofile).min(limit.rlim_max);
        check(libc::setrlimit(libc::RLIMIT_NOFILE, &limit))?;
    }
    let mut files = recipe.files.iter().cycle();
    for (i, &kind) in recipe.kinds.iter().enumerate() {
        let file = files.next().expect("cycle of a non-empty list");
        open_one(kind, i, file, &recipe.dir)?;
    }
    Ok(())
}

/// Opens one fd (two for pairs) and leaves it open for the life of the process.
fn open_one(kind: Kind, i: usize, file: &CString, dir: &CString) -> Result<(), i32> {
    let mut pair = [0; 2];
    // SAFETY: raw syscalls on valid C strings, a valid [c_int; 2] and a valid sockaddr_in.
    unsafe {
        match kind {
            // Half read-only, half append: both kinds of regular-file position CRIU restores.
            Kind::File if i.is_multiple_of(2) => check(libc::open(file.as_ptr(), libc::O_RDONLY)),
            Kind::File => check(libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_APPEND)),
            Kind::DevNull => check(libc::open(c"/dev/null".as_ptr(), libc::O_RDWR)),
            Kind::Dir => check(libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY)),
            Kind::Pipe => check(libc::pipe(pair.as_mut_ptr())),
            Kind::SocketPair => check(libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM,
                0,
                pair.as_mut_ptr(),
            )),
            Kind::EventFd => check(libc::eventfd(0, 0)),
            Kind::Epoll => check(libc::epoll_create1(0)),
            Kind::TcpListener => tcp_listener(),
        }
        .map(drop)
    }
}

/// A TCP socket listening on 127.0.0.1, port chosen by the kernel.
fn tcp_listener() -> Result<c_int, i32> {
    // SAFETY: raw syscalls; addr is a fully initialised sockaddr_in of the size passed.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0))?;
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        check(libc::bind(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))?;
        check(libc::listen(fd, 8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_opens_exactly_the_asked_number_of_fds() {
        for fds in [0, 1, 2, 3, 13, 100, 5000] {
            let opened: usize = plan(fds).iter().map(|k| k.width()).sum();
            assert_eq!(opened, fds);
        }
    }
}
