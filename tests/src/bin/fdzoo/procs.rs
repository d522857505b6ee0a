//! Other processes a case needs: peers outside the subject's tree, children inside it,
//! and the janitor that cleans up after a subject killed with SIGKILL.
//!
//! Peers and the janitor are double-forked, so they are reparented away from the subject,
//! and each watches the subject through a pidfd: they exit when it exits.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::ctx::{Cleanup, Ctx};
use crate::sys::{self, Error, Result, cvt};

/// Handle a peer's body gets: the subject's pidfd and the channel to report readiness.
pub struct Peer {
    subject: OwnedFd,
    report: Option<OwnedFd>,
}

impl Peer {
    /// Tells the subject that the peer is set up (done anyway when the body returns).
    pub fn ready(&mut self) {
        if let Some(fd) = self.report.take() {
            // SAFETY: getpid cannot fail.
            let pid = unsafe { libc::getpid() };
            let _ = sys::write_all(&fd, format!("+{pid}").as_bytes(), "write");
        }
    }

    /// Blocks until the subject exits (false) or `fd` becomes readable (true).
    pub fn wait_subject_or(&self, fd: RawFd) -> bool {
        sys::wait_exit_or_readable(&self.subject, Some(fd))
    }

    fn fail(&mut self, err: &Error) {
        if let Some(fd) = self.report.take() {
            let tag = if matches!(err, Error::Unsupported(_)) {
                '?'
            } else {
                '!'
            };
            let _ = sys::write_all(&fd, format!("{tag}{err}").as_bytes(), "write");
        }
    }
}

/// Starts a peer process outside the subject's tree that keeps the fds `keep` (closing
/// all others, stdio to /dev/null), runs `body`, then lives until the subject
/// exits. Returns once the peer is ready; its pid is recorded in `ctx.peers`.
pub fn spawn_peer(
    ctx: &mut Ctx,
    keep: &[RawFd],
    body: impl FnOnce(&mut Peer) -> Result<()>,
) -> Result<libc::pid_t> {
    let (rx, tx) = sys::pipe()?;
    let subject = ctx.pid;
    let child = fork()?;
    if child == 0 {
        // Middle process: fork the peer and exit so that it is reparented.
        if fork().is_ok_and(|pid| pid == 0) {
            drop(rx);
            let mut keep = keep.to_vec();
            keep.push(tx.as_raw_fd());
            become_helper(&keep);
            let code = match sys::pidfd_open(subject) {
                Ok(pidfd) => {
                    let mut peer = Peer {
                        subject: pidfd,
                        report: Some(tx),
                    };
                    match body(&mut peer) {
                        Ok(()) => {
                            peer.ready();
                            sys::wait_exit_or_readable(&peer.subject, None);
                            0
                        }
                        Err(e) => {
                            peer.fail(&e);
                            1
                        }
                    }
                }
                Err(_) => 1,
            };
            exit(code);
        }
        exit(0);
    }
    drop(tx);
    reap(child);
    let mut report = String::new();
    std::fs::File::from(rx)
        .read_to_string(&mut report)
        .map_err(|e| Error::Other(format!("reading the peer's report: {e}")))?;
    let (tag, rest) = report.split_at(report.chars().next().map_or(0, char::len_utf8));
    match tag {
        "+" => {
            let pid = rest
                .parse()
                .map_err(|_| Error::Other(format!("peer said {report:?}")))?;
            ctx.peers.push(pid);
            Ok(pid)
        }
        "?" => Err(Error::Unsupported(format!("peer: {rest}"))),
        "!" => Err(Error::Other(format!("peer: {rest}"))),
        _ => Err(Error::Other("peer died before it was ready".into())),
    }
}

/// Starts a child of the subject (inside its tree) that keeps only the fds `keep` (not
/// even stdio) and lives until the subject exits.
pub fn spawn_child(ctx: &Ctx, keep: &[RawFd]) -> Result<libc::pid_t> {
    let pid = fork()?;
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } != ctx.pid {
            exit(0);
        }
        sys::set_sigmask(libc::SIG_SETMASK, &[]);
        sys::close_all_from(0, keep);
        loop {
            // SAFETY: pause just sleeps.
            unsafe { libc::pause() };
        }
    }
    Ok(pid)
}

/// Starts the janitor: a process outside the tree, in its own session, that runs
/// `cleanup` once the subject is gone, however it died.
pub fn spawn_janitor(ctx: &Ctx) -> Result<()> {
    let cleanup: Cleanup = ctx.cleanup.clone();
    let pidfd = sys::pidfd_open(ctx.pid)?;
    let child = fork()?;
    if child == 0 {
        if fork().is_ok_and(|pid| pid == 0) {
            become_helper(&[pidfd.as_raw_fd()]);
            // SAFETY: setsid and chdir with a valid C string.
            unsafe {
                libc::setsid();
                libc::chdir(c"/".as_ptr());
            }
            sys::wait_exit_or_readable(&pidfd, None);
            cleanup.run();
        }
        exit(0);
    }
    reap(child);
    Ok(())
}

/// Common start of a helper process: default signals, only `keep` open, stdio on
/// /dev/null (so that the test's pipes see EOF as soon as the subject is gone).
fn become_helper(keep: &[RawFd]) {
    sys::set_sigmask(libc::SIG_SETMASK, &[]);
    sys::close_all_from(3, keep);
    for fd in 0..=2 {
        let _ = sys::to_dev_null(fd);
    }
}

pub fn fork() -> Result<libc::pid_t> {
    // SAFETY: the subject is single-threaded, so the child may run arbitrary code.
    cvt(unsafe { libc::fork() }, "fork")
}

fn reap(pid: libc::pid_t) {
    // SAFETY: waitpid on our own child with a null status pointer.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
}

/// Leaves a forked process without running the parent's destructors or atexit hooks.
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}
