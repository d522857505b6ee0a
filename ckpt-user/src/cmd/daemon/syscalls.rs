//! Which syscalls create or close fds, by number, for the tracepoint backend. Numbers are
//! per architecture; only x86_64 is listed (the BPF side reads x86_64 `pt_regs` too), with its
//! compat ABI, i386, which any process can call through int 0x80: its numbers mean other
//! syscalls (3 is read, not close), and its arguments come in other registers.

use ckpt_common::syscall_kind::{
    CLOSE, CLOSE_RANGE, FCNTL, FCNTL_LOCKS, FLOCK, IGNORE, IOCTL, MMAP, PAIR_ARG0, PAIR_ARG3,
    PTRACE, RECVMMSG, RECVMSG, REFRESH_SELF, RESCAN, RET_FD, SOCKET_STATE, SOCKETCALL,
    SOCKETCALL_STATE,
};
use ckpt_common::{MAX_SYSCALLS, syscall_kinds};

/// (number, name, how the fds are found).
type Entry = (u32, &'static str, u8);

/// The native syscalls.
#[cfg(target_arch = "x86_64")]
const TABLE: &[Entry] = &[
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
    (16, "ioctl", IOCTL),
    (9, "mmap", MMAP),
    (240, "mq_open", RET_FD),
    (317, "seccomp", RET_FD),
    (467, "open_tree_attr", RET_FD),
    (47, "recvmsg", RECVMSG),
    (299, "recvmmsg", RECVMMSG),
    (3, "close", CLOSE),
    (436, "close_range", CLOSE_RANGE),
    (112, "setsid", REFRESH_SELF),
    (101, "ptrace", PTRACE),
    (73, "flock", FLOCK),
    (42, "connect", SOCKET_STATE),
    (50, "listen", SOCKET_STATE),
];

/// The compat syscalls (arch/x86/entry/syscalls/syscall_32.tbl). Their `msghdr` is i386's,
/// which the program does not read: fds received or paired through it ask for a rescan.
#[cfg(target_arch = "x86_64")]
const COMPAT_TABLE: &[Entry] = &[
    (5, "open", RET_FD),
    (295, "openat", RET_FD),
    (437, "openat2", RET_FD),
    (8, "creat", RET_FD),
    (342, "open_by_handle_at", RET_FD),
    (359, "socket", RET_FD),
    (364, "accept4", RET_FD),
    (360, "socketpair", PAIR_ARG3),
    (102, "socketcall", SOCKETCALL),
    (42, "pipe", PAIR_ARG0),
    (331, "pipe2", PAIR_ARG0),
    (323, "eventfd", RET_FD),
    (328, "eventfd2", RET_FD),
    (254, "epoll_create", RET_FD),
    (329, "epoll_create1", RET_FD),
    (321, "signalfd", RET_FD),
    (327, "signalfd4", RET_FD),
    (322, "timerfd_create", RET_FD),
    (291, "inotify_init", RET_FD),
    (332, "inotify_init1", RET_FD),
    (338, "fanotify_init", RET_FD),
    (356, "memfd_create", RET_FD),
    (447, "memfd_secret", RET_FD),
    (336, "perf_event_open", RET_FD),
    (357, "bpf", RET_FD),
    (374, "userfaultfd", RET_FD),
    (425, "io_uring_setup", RET_FD),
    (434, "pidfd_open", RET_FD),
    (438, "pidfd_getfd", RET_FD),
    (430, "fsopen", RET_FD),
    (432, "fsmount", RET_FD),
    (433, "fspick", RET_FD),
    (428, "open_tree", RET_FD),
    (444, "landlock_create_ruleset", RET_FD),
    (41, "dup", RET_FD),
    (63, "dup2", RET_FD),
    (330, "dup3", RET_FD),
    (55, "fcntl", FCNTL),
    (221, "fcntl64", FCNTL),
    (54, "ioctl", IOCTL),
    (192, "mmap2", MMAP),
    (90, "mmap", RESCAN),
    (277, "mq_open", RET_FD),
    (354, "seccomp", RET_FD),
    (467, "open_tree_attr", RET_FD),
    (372, "recvmsg", RESCAN),
    (337, "recvmmsg", RESCAN),
    (417, "recvmmsg_time64", RESCAN),
    (6, "close", CLOSE),
    (436, "close_range", CLOSE_RANGE),
    (66, "setsid", REFRESH_SELF),
    (26, "ptrace", PTRACE),
    (143, "flock", FLOCK),
    (362, "connect", SOCKET_STATE),
    (363, "listen", SOCKET_STATE),
];

#[cfg(not(target_arch = "x86_64"))]
const TABLE: &[Entry] = &[];
#[cfg(not(target_arch = "x86_64"))]
const COMPAT_TABLE: &[Entry] = &[];

/// What the fd_install backends still need from sys_exit: closes, session and tracer
/// changes, locks, sockets' connects and listens, mapped sockets, and the fds dup2 and dup3
/// place, which never pass through fd_install (`do_dup2` stores the file itself, over
/// whatever the fd held; fcntl's and socketcall's new fds come through fd_install).
fn beside_fd_install(table: &'static [Entry]) -> impl Iterator<Item = Entry> {
    table.iter().filter_map(|&(nr, name, kind)| match kind {
        CLOSE | CLOSE_RANGE | REFRESH_SELF | PTRACE | FLOCK | SOCKET_STATE | MMAP => {
            Some((nr, name, kind))
        }
        RET_FD if matches!(name, "dup2" | "dup3") => Some((nr, name, kind)),
        // i386's old mmap passes its arguments in memory: a mapping no backend reads.
        RESCAN if name == "mmap" => Some((nr, name, kind)),
        FCNTL => Some((nr, name, FCNTL_LOCKS)),
        SOCKETCALL => Some((nr, name, SOCKETCALL_STATE)),
        _ => None,
    })
}

/// The `SYSCALL_KIND` elements to set, by number: every syscall the tracepoint backend
/// watches, or only those the fd_install backends still need (`fd_install`).
pub fn kinds(fd_install: bool) -> Vec<(u32, u16)> {
    let pick = |table: &'static [Entry]| -> Vec<Entry> {
        if fd_install {
            beside_fd_install(table).collect()
        } else {
            table.to_vec()
        }
    };
    let mut by_nr = vec![(IGNORE, IGNORE); MAX_SYSCALLS as usize];
    for (nr, _, kind) in pick(TABLE) {
        by_nr[nr as usize].0 = kind;
    }
    for (nr, _, kind) in pick(COMPAT_TABLE) {
        by_nr[nr as usize].1 = kind;
    }
    (0..MAX_SYSCALLS)
        .zip(by_nr)
        .filter(|(_, k)| *k != (IGNORE, IGNORE))
        .map(|(nr, (native, compat))| (nr, syscall_kinds(native, compat)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_fit_the_map() {
        for table in [TABLE, COMPAT_TABLE] {
            let mut seen = std::collections::BTreeSet::new();
            for (nr, name, _) in table {
                assert!(*nr < MAX_SYSCALLS, "{name}");
                assert!(seen.insert(nr), "{name} listed twice");
            }
        }
    }

    /// The numbers that differ between the ABIs are where a hostile process could make one
    /// syscall pass for another: i386's read is 3, x86_64's close.
    #[test]
    fn each_abi_has_its_own_kind_for_a_number() {
        let all: std::collections::BTreeMap<u32, u16> = kinds(false).into_iter().collect();
        assert_eq!(all[&3], syscall_kinds(CLOSE, IGNORE), "close; i386's read");
        assert_eq!(all[&6], syscall_kinds(IGNORE, CLOSE), "lstat; i386's close");
        assert_eq!(all[&5], syscall_kinds(IGNORE, RET_FD), "fstat; i386's open");
        assert_eq!(
            all[&425],
            syscall_kinds(RET_FD, RET_FD),
            "io_uring_setup in both"
        );
        assert_eq!(
            all[&47],
            syscall_kinds(RECVMSG, IGNORE),
            "i386's 47 is getgid"
        );
        assert_eq!(all[&372], syscall_kinds(IGNORE, RESCAN));
        assert_eq!(
            all[&16],
            syscall_kinds(IOCTL, IGNORE),
            "ioctl; i386's lchown"
        );
        assert_eq!(
            all[&54],
            syscall_kinds(IGNORE, IOCTL),
            "setsockopt; i386's ioctl"
        );
        assert!(!all.contains_key(&0), "read; i386's restart_syscall");
        let beside: std::collections::BTreeMap<u32, u16> = kinds(true).into_iter().collect();
        assert_eq!(beside[&3], syscall_kinds(CLOSE, IGNORE));
        assert_eq!(beside[&6], syscall_kinds(IGNORE, CLOSE));
        assert_eq!(
            beside[&55],
            syscall_kinds(IGNORE, FCNTL_LOCKS),
            "i386's fcntl"
        );
        assert!(!beside.contains_key(&5), "i386's open");
        assert_eq!(beside[&63], syscall_kinds(IGNORE, RET_FD), "i386's dup2");
        assert_eq!(beside[&330], syscall_kinds(IGNORE, RET_FD), "i386's dup3");
        assert!(!beside.contains_key(&32), "dup: fd_install");
        assert_eq!(
            beside[&102],
            syscall_kinds(IGNORE, SOCKETCALL_STATE),
            "i386's socketcall: its connect and listen"
        );
        assert_eq!(
            all[&42],
            syscall_kinds(SOCKET_STATE, PAIR_ARG0),
            "connect; i386's pipe"
        );
        assert_eq!(
            beside[&362],
            syscall_kinds(IGNORE, SOCKET_STATE),
            "i386's connect"
        );
        assert_eq!(all[&9], syscall_kinds(MMAP, IGNORE), "mmap; i386's link");
        assert_eq!(beside[&9], syscall_kinds(MMAP, IGNORE));
        assert_eq!(beside[&192], syscall_kinds(IGNORE, MMAP), "i386's mmap2");
        assert_eq!(
            beside[&90],
            syscall_kinds(IGNORE, RESCAN),
            "i386's old mmap"
        );
        assert!(!beside.contains_key(&372), "i386's recvmsg");
    }

    #[test]
    fn fd_install_backends_still_watch_dups_closes_sessions_tracers_locks_sockets_and_mappings() {
        let watched: Vec<(&str, u8)> = beside_fd_install(TABLE).map(|(_, n, k)| (n, k)).collect();
        assert_eq!(
            watched,
            [
                ("dup2", RET_FD),
                ("dup3", RET_FD),
                ("fcntl", FCNTL_LOCKS),
                ("mmap", MMAP),
                ("close", CLOSE),
                ("close_range", CLOSE_RANGE),
                ("setsid", REFRESH_SELF),
                ("ptrace", PTRACE),
                ("flock", FLOCK),
                ("connect", SOCKET_STATE),
                ("listen", SOCKET_STATE),
            ]
        );
    }
}
