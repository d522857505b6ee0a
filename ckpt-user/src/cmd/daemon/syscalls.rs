//! Which syscalls create or close fds, by number, for the tracepoint backend. Numbers are
//! per architecture; only x86_64 is listed (the BPF side reads x86_64 `pt_regs` too).

use ckpt_common::syscall_kind::{
    CLOSE, CLOSE_RANGE, FCNTL, FCNTL_LOCKS, FLOCK, PAIR_ARG0, PAIR_ARG3, PTRACE, RECVMMSG, RECVMSG,
    REFRESH_SELF, RET_FD,
};

/// (number, name, how the fds are found).
#[cfg(target_arch = "x86_64")]
pub const TABLE: &[(u32, &str, u8)] = &[
    (2, "open", RET_FD),
    (257, "openat", RET_FD),
    (437, "openat2", RET_FD),
    (85, "creat", RET_FD),
    (304, "open_by_handle_at", RET_FD),
    (41, "socket", RET_FD),
    (43, "accept", RET_FD),
    (288, "accept4", RET_FD),
    (53, "socketpair", PAIR_ARG3),
    (22, "pipe", PAIR_ARG0),
    (293, "pipe2", PAIR_ARG0),
    (284, "eventfd", RET_FD),
    (290, "eventfd2", RET_FD),
    (213, "epoll_create", RET_FD),
    (291, "epoll_create1", RET_FD),
    (282, "signalfd", RET_FD),
    (289, "signalfd4", RET_FD),
    (283, "timerfd_create", RET_FD),
    (253, "inotify_init", RET_FD),
    (294, "inotify_init1", RET_FD),
    (300, "fanotify_init", RET_FD),
    (319, "memfd_create", RET_FD),
    (447, "memfd_secret", RET_FD),
    (298, "perf_event_open", RET_FD),
    (321, "bpf", RET_FD),
    (323, "userfaultfd", RET_FD),
    (425, "io_uring_setup", RET_FD),
    (434, "pidfd_open", RET_FD),
    (438, "pidfd_getfd", RET_FD),
    (430, "fsopen", RET_FD),
    (432, "fsmount", RET_FD),
    (433, "fspick", RET_FD),
    (428, "open_tree", RET_FD),
    (444, "landlock_create_ruleset", RET_FD),
    (32, "dup", RET_FD),
    (33, "dup2", RET_FD),
    (292, "dup3", RET_FD),
    (72, "fcntl", FCNTL),
    (47, "recvmsg", RECVMSG),
    (299, "recvmmsg", RECVMMSG),
    (3, "close", CLOSE),
    (436, "close_range", CLOSE_RANGE),
    (112, "setsid", REFRESH_SELF),
    (101, "ptrace", PTRACE),
    (73, "flock", FLOCK),
];

#[cfg(not(target_arch = "x86_64"))]
pub const TABLE: &[(u32, &str, u8)] = &[];

/// What the fd_install backends still need from sys_exit: closes, session and tracer
/// changes, and locks (fcntl's new fds come through fd_install).
pub fn beside_fd_install() -> impl Iterator<Item = (u32, &'static str, u8)> {
    TABLE.iter().filter_map(|&(nr, name, kind)| match kind {
        CLOSE | CLOSE_RANGE | REFRESH_SELF | PTRACE | FLOCK => Some((nr, name, kind)),
        FCNTL => Some((nr, name, FCNTL_LOCKS)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_common::MAX_SYSCALLS;

    #[test]
    fn numbers_are_unique_and_fit_the_map() {
        let mut seen = std::collections::BTreeSet::new();
        for (nr, name, _) in TABLE {
            assert!(*nr < MAX_SYSCALLS, "{name}");
            assert!(seen.insert(nr), "{name} listed twice");
        }
    }

    #[test]
    fn fd_install_backends_still_watch_closes_sessions_tracers_and_locks() {
        let watched: Vec<(&str, u8)> = beside_fd_install().map(|(_, n, k)| (n, k)).collect();
        assert_eq!(
            watched,
            [
                ("fcntl", FCNTL_LOCKS),
                ("close", CLOSE),
                ("close_range", CLOSE_RANGE),
                ("setsid", REFRESH_SELF),
                ("ptrace", PTRACE),
                ("flock", FLOCK),
            ]
        );
    }
}
