//! Helper processes forked from the bench (the latency subject, the churn helper), detached the
//! way a real service is: a session of its own, stdio on `/dev/null`, none of the bench's fds
//! but the ones it is given. Otherwise the daemon would judge the bench's pipes, sockets and
//! terminal as the helper's, and its verdicts would not be the helper's own.
//!
//! A helper dies with the bench (`PR_SET_PDEATHSIG`), and dropping its guard kills and reaps it.

use std::io;

use anyhow::Context;
use libc::c_int;

pub struct Forked {
    pid: libc::pid_t,
}

impl Forked {
    /// Forks a child that keeps the fds `keep` (at the same numbers), runs `body` and exits.
    ///
    /// # Safety
    ///
    /// The bench has other threads (the daemon's output reader), so the child may only make
    /// async-signal-safe calls: `body` must not allocate, lock or print.
    pub unsafe fn spawn<const N: usize>(
        keep: [c_int; N],
        body: impl FnOnce(),
    ) -> anyhow::Result<Forked> {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child only makes raw syscalls before running `body`, which the caller
        // vouches for, and never returns into the bench's code.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()).context("fork"),
            0 => {
                // SAFETY: raw syscalls in the child; it exits without unwinding.
                unsafe {
                    if detach(parent, keep) {
                        // An unwinding panic would run the bench's guards in this copy of it,
                        // killing the daemon and the load: stop it here.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
                    }
                    libc::_exit(0)
                }
            }
            pid => Ok(Forked { pid }),
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// In the child: dies with the bench, leads a new session, stdio on `/dev/null`, every other fd
/// closed but `keep`. False when the bench is already gone or a call failed.
///
/// # Safety
///
/// Only in a freshly forked child: it closes fds other code of the bench may think it owns.
unsafe fn detach<const N: usize>(parent: libc::pid_t, mut keep: [c_int; N]) -> bool {
    // SAFETY: raw syscalls on a C string literal and fd numbers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 || libc::getppid() != parent {
            return false;
        }
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null == -1 {
            return false;
        }
        for stdio in 0..3 {
            libc::dup2(null, stdio);
        }
        keep.sort_unstable();
        // Close the gaps between the kept fds, and everything above the last.
        let mut first: c_int = 3;
        for fd in keep.into_iter().chain([c_int::MAX]) {
            if fd > first {
                libc::close_range(first as u32, fd as u32 - 1, 0);
            }
            first = first.max(fd.saturating_add(1));
        }
    }
    true
}
