//! Types shared by the BPF programs and user space: the records the iterators write, and the
//! kernel offsets user space hands to them. `#[repr(C)]`, padding-free, no logic.
#![no_std]

/// Record tags: every record in an iterator's output starts with one of these as its first `u32`.
pub const TAG_FILE: u32 = 0x4649_4c45; // "FILE"
pub const TAG_OPS: u32 = 0x4f50_5321; // "OPS!"
pub const TAG_VMA: u32 = 0x564d_4121; // "VMA!"
pub const TAG_TASK: u32 = 0x5441_534b; // "TASK"
pub const TAG_PROC: u32 = 0x5052_4f43; // "PROC"
pub const TAG_TABLE: u32 = 0x5442_4c21; // "TBL!"
/// A [`FileFacts`] of a file that is no socket, written by an iterator without its socket
/// members: its first [`FILE_FACTS_NO_SOCK_LEN`] bytes. The kernel's walk slows with every byte
/// written per file: beside 214,000 fds, 8 of a scan's ~140 ms of iteration (measured).
pub const TAG_FILE_NO_SOCK: u32 = 0x4649_4c2d; // "FIL-"

/// Offset value meaning "this field does not exist on the running kernel".
pub const ABSENT: u32 = u32::MAX;

/// `KernelOffsets::flags`: only tasks whose tgid is in the `TARGET_TGIDS` map are reported.
pub const FLAG_FILTER_TGIDS: u32 = 1;
/// `KernelOffsets::flags`: `cgroup_ancestors` is `ancestor_ids[]` (before 6.0), not `ancestors[]`.
pub const FLAG_CGROUP_ANCESTOR_IDS: u32 = 2;
/// [`KernelOffsets::udp_cork`] is `udp_sock.udp_flags` (Linux 6.5+, cork is bit 0), not the
/// older `int corkflag`.
pub const FLAG_UDP_FLAGS: u32 = 4;
/// `KernelOffsets::flags`: the kernel has `bpf_get_current_task_btf` (5.11+), so a tracing
/// program may hold the current task as a BTF-typed pointer and load its members directly.
pub const FLAG_CURRENT_TASK_BTF: u32 = 8;
/// `KernelOffsets::flags`: the kernel has `bpf_sock_from_file` (5.11+), so an iterator may hold
/// a socket file's `struct socket` as a BTF-typed pointer and load its members directly.
pub const FLAG_SOCK_FROM_FILE: u32 = 16;
/// `KernelOffsets::flags`: the file walk is the daemon's, which starts the watch of the TCP
/// sockets it finds in a state their kind is ok in, as their installs do.
pub const FLAG_WATCH_SOCKETS: u32 = 32;

pub const FS_TYPE_LEN: usize = 16;
pub const NAME_LEN: usize = 48;

/// The ops-table members whose function addresses are reported once per distinct `f_op`.
/// The order is the index into [`OpsRecord::members`] and [`KernelOffsets::fop_members`].
pub const OPS_MEMBERS: [&str; 14] = [
    "llseek",
    "read",
    "write",
    "read_iter",
    "write_iter",
    "poll",
    "unlocked_ioctl",
    "mmap",
    "open",
    "flush",
    "release",
    "fsync",
    "splice_read",
    "show_fdinfo",
];
pub const N_OPS_MEMBERS: usize = OPS_MEMBERS.len();

/// Bits of [`FileFacts::known`]: which facts the kernel side could read. A fact whose bit is clear
/// is unknown (field absent on this kernel, or the object was not of that kind).
pub mod known {
    pub const INODE: u32 = 1 << 0;
    pub const SUPER: u32 = 1 << 1;
    pub const NAME: u32 = 1 << 2;
    pub const SOCKET: u32 = 1 << 3;
    pub const UNIX_PEER: u32 = 1 << 4;
    pub const LOCKS: u32 = 1 << 5;
    pub const MOUNT: u32 = 1 << 6;
    pub const PIDFD: u32 = 1 << 7;
    pub const TTY: u32 = 1 << 8;
    pub const BACKLOG: u32 = 1 << 9;
    /// [`FileFacts::aux`] holds a BPF map's type.
    pub const BPF_MAP: u32 = 1 << 10;
    /// A socket's filter, queue lengths and UDP cork were read ([`flags::SK_FILTER`],
    /// [`flags::SK_FILTER_EBPF`], [`flags::UDP_CORKED`], `sk_wqueue`, `sk_rqueue`).
    pub const SOCK_EXTRA: u32 = 1 << 11;
    /// Whether a pidfd's process is gone was read ([`flags::PIDFD_DEAD`]).
    pub const PIDFD_ALIVE: u32 = 1 << 12;
}

/// Bits of [`FileFacts::flags`]: boolean facts.
pub mod flags {
    /// The file holds a flock or a POSIX lock owned by this task, or its inode has more locks
    /// than the kernel side walks (so it may: [`LOCKS_UNWALKED`]).
    pub const LOCKED: u32 = 1 << 0;
    /// The opened name was unlinked (dentry unhashed), whatever the link count.
    pub const UNLINKED: u32 = 1 << 1;
    /// The file's mount belongs to the task's mount namespace (it can be found in mountinfo).
    pub const MOUNT_VISIBLE: u32 = 1 << 2;
    /// A unix socket whose peer pointer is set.
    pub const HAS_PEER: u32 = 1 << 3;
    /// That peer is bound to a name (`unix_sock.addr` set).
    pub const PEER_NAMED: u32 = 1 << 4;
    /// A socket filter is attached (`sk->sk_filter`).
    pub const SK_FILTER: u32 = 1 << 5;
    /// That filter is an eBPF program (SO_ATTACH_BPF): it has no classic original, so
    /// SO_GET_FILTER cannot read it back.
    pub const SK_FILTER_EBPF: u32 = 1 << 6;
    /// A UDP socket with UDP_CORK set.
    pub const UDP_CORKED: u32 = 1 << 7;
    /// The process a pidfd refers to has exited and been reaped (no task left on its pid).
    pub const PIDFD_DEAD: u32 = 1 << 8;
    /// The inode has more locks than the kernel side walked, none of them this task's so far:
    /// [`LOCKED`] is a guess for user space to settle.
    pub const LOCKS_UNWALKED: u32 = 1 << 9;
    /// An event's: the task has just mapped this file (mmap), and user space looks for its
    /// mappings.
    pub const MAPPED: u32 = 1 << 10;
    /// A TCP socket in a state its kind is ok in, whose changes of state the daemon's kernel
    /// side could not watch (its map of watched sockets is full): it may connect unseen.
    pub const UNWATCHED: u32 = 1 << 11;
}

/// One open file of one task, as `iter/task_file` sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub tag: u32,
    pub tgid: u32,
    pub tid: u32,
    pub fd: u32,
    pub f_op: u64,
    pub ino: u64,
    pub size: u64,
    /// Allocated 512-byte blocks (`i_blocks`): what CRIU ≥ 3.18 holds against --ghost-limit.
    pub blocks: u64,
    pub s_magic: u64,
    /// `inode->i_rdev` in the kernel's encoding (major << 20 | minor).
    pub rdev: u32,
    /// `sb->s_dev` in the kernel's encoding.
    pub dev: u32,
    pub mode: u32,
    pub nlink: u32,
    pub f_flags: u32,
    pub known: u32,
    pub flags: u32,
    pub mnt_id: u32,
    /// Target of a pidfd (global pid number), the tty index of a tty, or the type of a BPF
    /// map (`enum bpf_map_type`); [`known`] says which.
    pub aux: u64,
    pub fs_type: [u8; FS_TYPE_LEN],
    /// The dentry name: `[eventfd]`, `bpf-map`, `memfd:x`, a file's base name.
    pub name: [u8; NAME_LEN],
    // The socket members, last: a [`TAG_FILE_NO_SOCK`] record ends before them.
    pub sk_family: u16,
    pub sk_type: u16,
    pub sk_protocol: u16,
    pub sk_state: u16,
    /// Unaccepted connections of a listening socket.
    pub sk_backlog: u32,
    /// `sk_state` of the unix peer (TCP_CLOSE once the peer was released).
    pub peer_state: u32,
    pub peer_ino: u64,
    /// Bytes in a socket's write queue (`sk_wmem_alloc` - 1, as sock_diag reports it).
    pub sk_wqueue: u32,
    /// Bytes in a socket's receive queue (`sk_rmem_alloc`).
    pub sk_rqueue: u32,
    /// When an event program saw the change (`bpf_ktime_get_ns`, CLOCK_MONOTONIC); 0 from the
    /// iterator. Last, so that a [`TAG_FILE_NO_SOCK`] record still ends at the socket members.
    pub time: u64,
}

/// Bytes of a [`TAG_FILE_NO_SOCK`] record: every member before the socket ones, which are all
/// zero in a file that is no socket.
pub const FILE_FACTS_NO_SOCK_LEN: usize = core::mem::offset_of!(FileFacts, sk_family);

/// The function members of one ops table, emitted the first time an `f_op` is seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpsRecord {
    pub tag: u32,
    pub _pad: u32,
    pub f_op: u64,
    pub members: [u64; N_OPS_MEMBERS],
}

/// One file-backed mapping, as `iter/task_vma` sees it (consecutive VMAs of one file are merged).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmaFacts {
    pub tag: u32,
    pub tgid: u32,
    pub start: u64,
    pub end: u64,
    pub vm_flags: u64,
    pub pgoff: u64,
    pub f_op: u64,
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub s_magic: u64,
    pub rdev: u32,
    pub dev: u32,
    pub mode: u32,
    pub nlink: u32,
    pub known: u32,
    pub flags: u32,
    pub fs_type: [u8; FS_TYPE_LEN],
    pub name: [u8; NAME_LEN],
}

/// What happened to a task, in [`TaskEvent::kind`].
pub mod task_event {
    /// A new process (not a thread): `arg` is the child's pid; it inherited the parent's fds.
    pub const FORK: u32 = 1;
    /// The process exec'd: close-on-exec fds are gone.
    pub const EXEC: u32 = 2;
    /// The process exited.
    pub const EXIT: u32 = 3;
    /// A tracked fd (`arg`) was closed or replaced.
    pub const CLOSE: u32 = 4;
    /// `close_range(arg, arg2)` succeeded.
    pub const CLOSE_RANGE: u32 = 5;
    /// The task's session or tracer changed (setsid, ptrace attach/detach): re-read it.
    pub const REFRESH: u32 = 6;
}

/// Bits of [`ProcFacts::known`]: which namespaces were read (a process that is exiting has
/// none left).
pub mod proc_known {
    pub const NETNS: u32 = 1 << 0;
    pub const IPCNS: u32 = 1 << 1;
    pub const PIDNS: u32 = 1 << 2;
}

/// One process (a thread-group leader with an address space: no kernel thread, no zombie,
/// none of which holds files) as `/proc/PID/status` and `/proc/PID/ns/{net,ipc,pid}` tell it
/// to a reader in the initial namespaces, written by `iter/task` for a host scan.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcFacts {
    pub tag: u32,
    pub pid: u32,
    pub ppid: u32,
    pub sid: u32,
    pub pgid: u32,
    /// The tracing thread's id, 0 when not traced.
    pub tracer_pid: u32,
    /// Real, effective and saved ids.
    pub uid: [u32; 3],
    pub gid: [u32; 3],
    pub netns: u32,
    pub ipcns: u32,
    pub pidns: u32,
    /// [`proc_known`] bits.
    pub known: u32,
    /// `task->comm`, NUL-padded.
    pub comm: [u8; 16],
}

/// The fd table (`files_struct` address) of process `tgid`, written by the daemon's table
/// walk (`iter/task`), whether any fd is open in it or none. Two processes with one table
/// (`clone(CLONE_FILES)` without `CLONE_THREAD`) each hold every fd the other installs, which
/// the events report for the installer only.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRecord {
    pub tag: u32,
    pub tgid: u32,
    pub files: u64,
}

/// A lifecycle event from the tracepoints, beside the [`FileFacts`] of installed fds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    pub tag: u32,
    pub kind: u32,
    pub tgid: u32,
    pub arg: u32,
    pub arg2: u32,
    pub _pad: u32,
    /// When the program saw it (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub time: u64,
}

/// How the install-event program finds the fds a syscall created, indexed by syscall number
/// in a map user space fills for its architecture.
pub mod syscall_kind {
    pub const IGNORE: u8 = 0;
    /// The return value is the new fd (open*, socket, accept*, eventfd*, dup*, ...).
    pub const RET_FD: u8 = 1;
    /// Two fds written to the `int[2]` at argument 0 (pipe, pipe2).
    pub const PAIR_ARG0: u8 = 2;
    /// Two fds written to the `int[2]` at argument 3 (socketpair).
    pub const PAIR_ARG3: u8 = 3;
    /// fcntl: the return value is an fd for F_DUPFD and F_DUPFD_CLOEXEC; the locking commands
    /// (F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW, F_SETLEASE) changed the locks on fd arg0.
    pub const FCNTL: u8 = 4;
    /// close(arg0).
    pub const CLOSE: u8 = 5;
    /// close_range(arg0, arg1).
    pub const CLOSE_RANGE: u8 = 6;
    /// The calling task's session changed (setsid).
    pub const REFRESH_SELF: u8 = 7;
    /// ptrace(request, pid): the tracee (arg1) may have gained or lost a tracer.
    pub const PTRACE: u8 = 8;
    /// recvmsg(fd, msghdr, flags): fds received in its SCM_RIGHTS control message.
    pub const RECVMSG: u8 = 9;
    /// recvmmsg(fd, mmsghdr[], n, ...): the same for the first message returned.
    pub const RECVMMSG: u8 = 10;
    /// flock(fd, operation): the locks on fd arg0 changed.
    pub const FLOCK: u8 = 11;
    /// fcntl where `fd_install` reports the fds it creates: its locking commands only.
    pub const FCNTL_LOCKS: u8 = 12;
    /// Fds came in a way the program does not read (a compat recvmsg's control message, whose
    /// layout is i386's): user space is asked to rescan.
    pub const RESCAN: u8 = 13;
    /// i386's socketcall(call, args): socket, accept and accept4 return the new fd; the calls
    /// that pass fds in memory (socketpair, recvmsg, recvmmsg) ask for a rescan.
    pub const SOCKETCALL: u8 = 14;
    /// connect(fd, ...) and listen(fd, ...): socket arg0 may have left the states its kind is
    /// ok in, unwatched if a rescan found it there; a unix one has a peer now. Judged again,
    /// whatever the call returned: a connect that failed may still be in progress.
    pub const SOCKET_STATE: u8 = 15;
    /// socketcall where `fd_install` reports the fds it creates: its connect and listen only.
    pub const SOCKETCALL_STATE: u8 = 16;
    /// ioctl(fd, request, ...): the return value is a new fd for the requests in
    /// [`IOCTL_FD_REQUESTS`](super::IOCTL_FD_REQUESTS).
    pub const IOCTL: u8 = 17;
    /// mmap(addr, len, prot, flags, fd, off) and i386's mmap2: a socket fd mapped is reported
    /// whatever its kind, [`flags::MAPPED`](super::flags::MAPPED): a socket ok as an fd is not
    /// as a mapping (CRIU dumps only a packet socket's ring, beside its socket).
    pub const MMAP: u8 = 18;
}

/// ioctl requests that return a new fd, as x86_64 and i386 encode them (the same here): the
/// tracepoint backend reads their fds as it reads open's. A request listed wrongly would only
/// have the fd of its return value judged again. What returns an fd in memory (DRM's PRIME
/// handles) or into another process (seccomp's ADDFD) is left to rescans.
pub const IOCTL_FD_REQUESTS: [u32; 23] = [
    0xaa00,      // USERFAULTFD_IOC_NEW: /dev/userfaultfd
    0xae01,      // KVM_CREATE_VM
    0xae41,      // KVM_CREATE_VCPU
    0xaece,      // KVM_GET_STATS_FD
    0xc040_aed4, // KVM_CREATE_GUEST_MEMFD
    0x3b6a,      // VFIO_GROUP_GET_DEVICE_FD
    0x894c,      // SIOCGSKNS: a socket's network namespace
    0x54e3,      // TUNGETDEVNETNS
    0x5441,      // TIOCGPTPEER: a pty master's peer
    0xb701,      // NS_GET_USERNS
    0xb702,      // NS_GET_PARENT
    0x8010_b70b, // NS_MNT_GET_NEXT
    0x8010_b70c, // NS_MNT_GET_PREV
    0xff01,      // PIDFD_GET_CGROUP_NAMESPACE
    0xff02,      // PIDFD_GET_IPC_NAMESPACE
    0xff03,      // PIDFD_GET_MNT_NAMESPACE
    0xff04,      // PIDFD_GET_NET_NAMESPACE
    0xff05,      // PIDFD_GET_PID_NAMESPACE
    0xff06,      // PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE
    0xff07,      // PIDFD_GET_TIME_NAMESPACE
    0xff08,      // PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE
    0xff09,      // PIDFD_GET_USER_NAMESPACE
    0xff0a,      // PIDFD_GET_UTS_NAMESPACE
];
/// What `OK_FOPS` knows about an ops table whose files are always ok: the file type
/// (`S_IFMT >> 12`) and, for devices, the device number they were judged with.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OkFops {
    pub file_type: u32,
    /// Kernel-encoded `i_rdev`, or [`ANY_RDEV`].
    pub rdev: u32,
    /// Nonzero: ok only when plain (a host scan's walk checks, the daemon's installs never
    /// drop such files): on a mount of the task's namespace, unlocked, linked, and still under
    /// the name it was opened by.
    pub only_plain: u32,
    pub _pad: u32,
}

/// A kind of socket whose files are ok (`OK_SOCKS`). Every socket file has the one ops table
/// (`socket_file_ops`), so its family, type and protocol say what it is; keyed without the
/// table, a kind can be offered before any socket's table was seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OkSock {
    pub family: u16,
    pub sk_type: u16,
    pub protocol: u16,
    pub _pad: u16,
}

/// [`OkFops::rdev`] for tables judged without regard to the device number.
pub const ANY_RDEV: u32 = u32::MAX;

/// The daemon's `OK_SOCKS` value for socket kinds ok whatever their state; any other value is
/// the mask (`1 << state`) of the TCP states they are ok in.
pub const ANY_STATE: u32 = u32::MAX;

/// Syscall numbers fit below this, native and compat alike (the `SYSCALL_KIND` array's size).
pub const MAX_SYSCALLS: u32 = 512;

/// A `SYSCALL_KIND` element: the [`syscall_kind`] of the native (x86_64) syscall of that
/// number, and of the compat (i386: int 0x80, sysenter) one, which a 64-bit process can make
/// too. One lookup for both keeps the exit of every other syscall cheap.
pub const fn syscall_kinds(native: u8, compat: u8) -> u16 {
    native as u16 | (compat as u16) << 8
}

/// Kernel struct member offsets in bytes, read from the running kernel's BTF at load time and
/// passed to the programs as `.rodata` so the verifier sees constants. [`ABSENT`] marks a member
/// the kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub file_f_op: u32,
    pub file_f_inode: u32,
    pub file_f_flags: u32,
    pub file_f_path_mnt: u32,
    pub file_f_path_dentry: u32,
    pub file_private_data: u32,
    pub inode_i_mode: u32,
    pub inode_i_rdev: u32,
    pub inode_i_sb: u32,
    pub inode_i_ino: u32,
    pub inode_i_nlink: u32,
    pub inode_i_size: u32,
    pub inode_i_blocks: u32,
    pub inode_i_flctx: u32,
    pub inode_i_private: u32,
    pub sb_s_magic: u32,
    pub sb_s_dev: u32,
    pub sb_s_type: u32,
    pub fstype_name: u32,
    pub dentry_d_name_name: u32,
    pub dentry_d_hash_pprev: u32,
    /// `offsetof(struct mount, mnt)`: to get from a `vfsmount *` back to its `struct mount`.
    pub mount_mnt: u32,
    pub mount_mnt_ns: u32,
    pub mount_mnt_id: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_nsproxy: u32,
    pub task_files: u32,
    /// `task_struct.group_leader`: whose fd table is the process's.
    pub task_group_leader: u32,
    pub nsproxy_mnt_ns: u32,
    pub socket_sk: u32,
    /// `offsetof(struct socket_alloc, vfs_inode)`: the inode of a `struct socket *`.
    pub socket_alloc_inode: u32,
    pub sock_family: u32,
    pub sock_state: u32,
    pub sock_type: u32,
    pub sock_protocol: u32,
    pub sock_ack_backlog: u32,
    pub sock_socket: u32,
    pub unix_peer: u32,
    pub unix_addr: u32,
    pub flctx_flock: u32,
    pub flctx_posix: u32,
    pub flctx_lease: u32,
    /// Offset of the `list_head` linking a lock into its context's list.
    pub lock_list: u32,
    pub lock_owner: u32,
    pub lock_file: u32,
    pub pid_numbers: u32,
    pub upid_nr: u32,
    pub tty_private_tty: u32,
    pub tty_index: u32,
    pub bpf_map_map_type: u32,
    pub vma_vm_start: u32,
    pub vma_vm_end: u32,
    pub vma_vm_flags: u32,
    pub vma_vm_pgoff: u32,
    pub vma_vm_file: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub regs_orig_ax: u32,
    pub regs_di: u32,
    pub regs_si: u32,
    pub regs_r10: u32,
    pub regs_r8: u32,
    /// The compat ABI's first two arguments (i386 passes bx, cx, dx, si, di, bp).
    pub regs_bx: u32,
    pub regs_cx: u32,
    /// The third argument in both ABIs (x86_64's rdx, i386's edx).
    pub regs_dx: u32,
    /// `thread_info.status` within `task_struct` (x86 keeps `thread_info` in the task), whose
    /// `TS_COMPAT` marks a compat syscall in progress.
    pub task_ti_status: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_level: u32,
    /// Offset of the cgroup's ancestors by depth: `ancestors[]` (pointers, since 6.0) or,
    /// before it, `ancestor_ids[]` (the ids themselves).
    pub cgroup_ancestors: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `offsetof(struct pid, tasks)`: `tasks[PIDTYPE_PID].first` is NULL once the task is gone.
    pub pid_tasks: u32,
    pub sock_sk_filter: u32,
    pub sk_filter_prog: u32,
    /// `struct bpf_prog.orig_prog`: set for classic filters, NULL for eBPF programs.
    pub bpf_prog_orig_prog: u32,
    pub sock_wmem_alloc: u32,
    /// `sock.sk_backlog.rmem_alloc` (`sk_rmem_alloc`).
    pub sock_rmem_alloc: u32,
    /// `udp_sock.udp_flags` or `udp_sock.corkflag` ([`FLAG_UDP_FLAGS`] says which).
    pub udp_cork: u32,
    /// What `iter/task` reads of a process (/proc/PID/status's ids, its namespaces).
    pub task_real_parent: u32,
    pub task_parent: u32,
    pub task_ptrace: u32,
    pub task_signal: u32,
    pub task_real_cred: u32,
    pub task_comm: u32,
    pub task_thread_pid: u32,
    /// `signal_struct.pids[]`, indexed by `enum pid_type`'s `PIDTYPE_PGID` and `PIDTYPE_SID`.
    pub signal_pids: u32,
    /// `signal_struct.live`: the process's threads not yet exiting; 0 once all are.
    pub signal_live: u32,
    pub pidtype_pgid: u32,
    pub pidtype_sid: u32,
    pub cred_uid: u32,
    pub cred_euid: u32,
    pub cred_suid: u32,
    pub cred_gid: u32,
    pub cred_egid: u32,
    pub cred_sgid: u32,
    pub nsproxy_net_ns: u32,
    pub nsproxy_ipc_ns: u32,
    /// `ns.inum` in `struct net`, `struct ipc_namespace` and `struct pid_namespace`.
    pub net_ns_inum: u32,
    pub ipc_ns_inum: u32,
    pub pidns_inum: u32,
    pub pid_level: u32,
    pub upid_ns: u32,
    /// `sizeof(struct upid)`: `pid.numbers[]` is indexed by the pid's level.
    pub upid_size: u32,
    /// `task_struct.mm`: NULL for kernel threads and exited tasks, which hold no files.
    pub task_mm: u32,
    pub fop_members: [u32; N_OPS_MEMBERS],
    /// [`FLAG_FILTER_TGIDS`] and [`FLAG_CGROUP_ANCESTOR_IDS`].
    pub flags: u32,
    /// Depth of `target_cgroup` in the cgroup v2 hierarchy (root = 0).
    pub target_cgroup_level: u32,
    /// ckpt-watch's own pid: it holds BPF fds of its own and its /proc reads would come back
    /// to the daemon as events, so it is never reported.
    pub ignore_tgid: u32,
    /// Only tasks in this cgroup v2 (its id, the directory's inode number) or below are
    /// reported; 0 reports every task.
    pub target_cgroup: u64,
}

impl KernelOffsets {
    /// Every offset absent: what the BPF object carries until user space fills it in.
    pub const fn absent() -> Self {
        Self {
            file_f_op: ABSENT,
            file_f_inode: ABSENT,
            file_f_flags: ABSENT,
            file_f_path_mnt: ABSENT,
            file_f_path_dentry: ABSENT,
            file_private_data: ABSENT,
            inode_i_mode: ABSENT,
            inode_i_rdev: ABSENT,
            inode_i_sb: ABSENT,
            inode_i_ino: ABSENT,
            inode_i_nlink: ABSENT,
            inode_i_size: ABSENT,
            inode_i_blocks: ABSENT,
            inode_i_flctx: ABSENT,
            inode_i_private: ABSENT,
            sb_s_magic: ABSENT,
            sb_s_dev: ABSENT,
            sb_s_type: ABSENT,
            fstype_name: ABSENT,
            dentry_d_name_name: ABSENT,
            dentry_d_hash_pprev: ABSENT,
            mount_mnt: ABSENT,
            mount_mnt_ns: ABSENT,
            mount_mnt_id: ABSENT,
            task_tgid: ABSENT,
            task_pid: ABSENT,
            task_nsproxy: ABSENT,
            task_files: ABSENT,
            task_group_leader: ABSENT,
            nsproxy_mnt_ns: ABSENT,
            socket_sk: ABSENT,
            socket_alloc_inode: ABSENT,
            sock_family: ABSENT,
            sock_state: ABSENT,
            sock_type: ABSENT,
            sock_protocol: ABSENT,
            sock_ack_backlog: ABSENT,
            sock_socket: ABSENT,
            unix_peer: ABSENT,
            unix_addr: ABSENT,
            flctx_flock: ABSENT,
            flctx_posix: ABSENT,
            flctx_lease: ABSENT,
            lock_list: ABSENT,
            lock_owner: ABSENT,
            lock_file: ABSENT,
            pid_numbers: ABSENT,
            upid_nr: ABSENT,
            tty_private_tty: ABSENT,
            tty_index: ABSENT,
            bpf_map_map_type: ABSENT,
            vma_vm_start: ABSENT,
            vma_vm_end: ABSENT,
            vma_vm_flags: ABSENT,
            vma_vm_pgoff: ABSENT,
            vma_vm_file: ABSENT,
            files_fdt: ABSENT,
            fdtable_fd: ABSENT,
            fdtable_max_fds: ABSENT,
            regs_orig_ax: ABSENT,
            regs_di: ABSENT,
            regs_si: ABSENT,
            regs_r10: ABSENT,
            regs_r8: ABSENT,
            regs_bx: ABSENT,
            regs_cx: ABSENT,
            regs_dx: ABSENT,
            task_ti_status: ABSENT,
            task_cgroups: ABSENT,
            css_set_dfl_cgrp: ABSENT,
            cgroup_level: ABSENT,
            cgroup_ancestors: ABSENT,
            cgroup_kn: ABSENT,
            kernfs_node_id: ABSENT,
            pid_tasks: ABSENT,
            sock_sk_filter: ABSENT,
            sk_filter_prog: ABSENT,
            bpf_prog_orig_prog: ABSENT,
            sock_wmem_alloc: ABSENT,
            sock_rmem_alloc: ABSENT,
            udp_cork: ABSENT,
            task_real_parent: ABSENT,
            task_parent: ABSENT,
            task_ptrace: ABSENT,
            task_signal: ABSENT,
            task_real_cred: ABSENT,
            task_comm: ABSENT,
            task_thread_pid: ABSENT,
            signal_pids: ABSENT,
            signal_live: ABSENT,
            pidtype_pgid: ABSENT,
            pidtype_sid: ABSENT,
            cred_uid: ABSENT,
            cred_euid: ABSENT,
            cred_suid: ABSENT,
            cred_gid: ABSENT,
            cred_egid: ABSENT,
            cred_sgid: ABSENT,
            nsproxy_net_ns: ABSENT,
            nsproxy_ipc_ns: ABSENT,
            net_ns_inum: ABSENT,
            ipc_ns_inum: ABSENT,
            pidns_inum: ABSENT,
            pid_level: ABSENT,
            upid_ns: ABSENT,
            upid_size: ABSENT,
            task_mm: ABSENT,
            fop_members: [ABSENT; N_OPS_MEMBERS],
            flags: 0,
            target_cgroup_level: 0,
            ignore_tgid: 0,
            target_cgroup: 0,
        }
    }

    /// Whether `iter/task` can read every fact of a [`ProcFacts`]: else /proc is read.
    pub fn can_read_processes(&self) -> bool {
        [
            self.task_tgid,
            self.task_pid,
            self.task_nsproxy,
            self.task_real_parent,
            self.task_parent,
            self.task_ptrace,
            self.task_signal,
            self.task_real_cred,
            self.task_comm,
            self.task_thread_pid,
            self.signal_pids,
            self.pidtype_pgid,
            self.pidtype_sid,
            self.pid_numbers,
            self.upid_nr,
            self.cred_uid,
            self.cred_euid,
            self.cred_suid,
            self.cred_gid,
            self.cred_egid,
            self.cred_sgid,
            self.nsproxy_net_ns,
            self.nsproxy_ipc_ns,
            self.net_ns_inum,
            self.ipc_ns_inum,
            self.pidns_inum,
            self.pid_level,
            self.upid_ns,
            self.upid_size,
            self.task_mm,
        ]
        .iter()
        .all(|o| *o != ABSENT)
    }

    /// Whether the BPF side can match a task's cgroup v2 ancestors against a target.
    pub fn can_filter_cgroups(&self) -> bool {
        let ancestry = [
            self.task_cgroups,
            self.css_set_dfl_cgrp,
            self.cgroup_level,
            self.cgroup_ancestors,
        ];
        let ids = self.flags & FLAG_CGROUP_ANCESTOR_IDS != 0
            || (self.cgroup_kn != ABSENT && self.kernfs_node_id != ABSENT);
        ancestry.iter().all(|o| *o != ABSENT) && ids
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all three are #[repr(C)], made of integers and byte arrays, with no padding (checked
    // by the layout tests), so any bit pattern is a valid value.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::FileFacts {}
    unsafe impl aya::Pod for super::VmaFacts {}
    unsafe impl aya::Pod for super::TaskEvent {}
    unsafe impl aya::Pod for super::OkFops {}
    unsafe impl aya::Pod for super::OkSock {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    /// `_IOC(dir, type, nr, size)` of include/uapi/asm-generic/ioctl.h, which x86 uses.
    const fn ioc(dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
        dir << 30 | size << 16 | (ty as u32) << 8 | nr as u32
    }
    const NONE: u32 = 0;
    const READ: u32 = 2;
    const READ_WRITE: u32 = 3;

    /// Each request as its header builds it, and none twice.
    #[test]
    fn ioctl_fd_requests_are_the_kernels_encodings() {
        let built = [
            ioc(NONE, 0xaa, 0x00, 0),        // USERFAULTFD_IOC_NEW, linux/userfaultfd.h
            ioc(NONE, 0xae, 0x01, 0),        // KVM_CREATE_VM, linux/kvm.h
            ioc(NONE, 0xae, 0x41, 0),        // KVM_CREATE_VCPU
            ioc(NONE, 0xae, 0xce, 0),        // KVM_GET_STATS_FD
            ioc(READ_WRITE, 0xae, 0xd4, 64), // KVM_CREATE_GUEST_MEMFD: kvm_create_guest_memfd
            ioc(NONE, b';', 100 + 6, 0),     // VFIO_GROUP_GET_DEVICE_FD, linux/vfio.h
            0x894c,                          // SIOCGSKNS, linux/sockios.h
            ioc(NONE, b'T', 227, 0),         // TUNGETDEVNETNS, linux/if_tun.h
            ioc(NONE, b'T', 0x41, 0),        // TIOCGPTPEER, asm-generic/ioctls.h
            ioc(NONE, 0xb7, 0x1, 0),         // NS_GET_USERNS, linux/nsfs.h
            ioc(NONE, 0xb7, 0x2, 0),         // NS_GET_PARENT
            ioc(READ, 0xb7, 11, 16),         // NS_MNT_GET_NEXT: mnt_ns_info
            ioc(READ, 0xb7, 12, 16),         // NS_MNT_GET_PREV
        ];
        assert_eq!(IOCTL_FD_REQUESTS[..built.len()], built);
        // PIDFD_GET_*_NAMESPACE, linux/pidfd.h: _IO(0xFF, 1..=10).
        let pidfd = IOCTL_FD_REQUESTS[built.len()..].iter().copied();
        assert!(pidfd.eq((1..=10).map(|nr| ioc(NONE, 0xff, nr, 0))));
        let mut unique = IOCTL_FD_REQUESTS;
        unique.sort_unstable();
        assert!(unique.windows(2).all(|w| w[0] != w[1]), "listed twice");
    }

    #[test]
    fn file_facts_layout_is_padding_free() {
        assert_eq!(size_of::<FileFacts>(), 200);
        assert_eq!(align_of::<FileFacts>(), 8);
        assert_eq!(offset_of!(FileFacts, f_op), 16);
        assert_eq!(offset_of!(FileFacts, rdev), 56);
        assert_eq!(offset_of!(FileFacts, aux), 88);
        assert_eq!(offset_of!(FileFacts, fs_type), 96);
        assert_eq!(offset_of!(FileFacts, name), 112);
        assert_eq!(offset_of!(FileFacts, sk_family), 160);
        assert_eq!(offset_of!(FileFacts, peer_ino), 176);
        assert_eq!(offset_of!(FileFacts, sk_wqueue), 184);
        assert_eq!(offset_of!(FileFacts, sk_rqueue), 188);
        assert_eq!(offset_of!(FileFacts, time), 192);
        // The short record keeps 8-byte alignment: records follow each other in one stream.
        assert_eq!(FILE_FACTS_NO_SOCK_LEN, 160);
    }

    #[test]
    fn ops_record_layout() {
        assert_eq!(size_of::<OpsRecord>(), 16 + 8 * N_OPS_MEMBERS);
        assert_eq!(offset_of!(OpsRecord, members), 16);
    }

    #[test]
    fn vma_facts_layout_is_padding_free() {
        assert_eq!(size_of::<VmaFacts>(), 168);
        assert_eq!(offset_of!(VmaFacts, rdev), 80);
        assert_eq!(offset_of!(VmaFacts, fs_type), 104);
        assert_eq!(offset_of!(VmaFacts, name), 120);
    }

    #[test]
    fn offsets_layout_has_no_padding() {
        // 110 u32 offsets and filters (an even count: no hole before the u64), the
        // member offsets, then the 8-aligned u64 cgroup id.
        assert_eq!(align_of::<KernelOffsets>(), 8);
        assert_eq!(
            offset_of!(KernelOffsets, target_cgroup),
            offset_of!(KernelOffsets, ignore_tgid) + 4
        );
        assert_eq!(
            offset_of!(KernelOffsets, target_cgroup),
            4 * (110 + N_OPS_MEMBERS)
        );
        assert_eq!(size_of::<KernelOffsets>(), 4 * (112 + N_OPS_MEMBERS));
    }

    #[test]
    fn proc_facts_layout_is_padding_free() {
        assert_eq!(size_of::<ProcFacts>(), 80);
        assert_eq!(align_of::<ProcFacts>(), 4);
        assert_eq!(offset_of!(ProcFacts, uid), 24);
        assert_eq!(offset_of!(ProcFacts, netns), 48);
        assert_eq!(offset_of!(ProcFacts, comm), 64);
    }

    #[test]
    fn ok_sock_layout_is_padding_free() {
        assert_eq!(size_of::<OkFops>(), 16);
        assert_eq!(offset_of!(OkFops, only_plain), 8);
        assert_eq!(size_of::<OkSock>(), 8);
        assert_eq!(offset_of!(OkSock, _pad), 6);
    }

    #[test]
    fn table_record_layout_is_padding_free() {
        assert_eq!(size_of::<TableRecord>(), 16);
        assert_eq!(offset_of!(TableRecord, tgid), 4);
        assert_eq!(offset_of!(TableRecord, files), 8);
    }

    #[test]
    fn task_event_layout() {
        assert_eq!(size_of::<TaskEvent>(), 32);
        assert_eq!(offset_of!(TaskEvent, time), 24);
        assert_eq!(offset_of!(TaskEvent, arg2), 16);
    }

    #[test]
    fn tags_are_distinct() {
        assert_ne!(TAG_FILE, TAG_OPS);
        assert_ne!(TAG_FILE, TAG_FILE_NO_SOCK);
        assert_ne!(TAG_FILE_NO_SOCK, TAG_OPS);
        assert_ne!(TAG_FILE_NO_SOCK, TAG_VMA);
        assert_ne!(TAG_FILE, TAG_VMA);
        assert_ne!(TAG_OPS, TAG_VMA);
        for tag in [TAG_FILE, TAG_FILE_NO_SOCK, TAG_OPS, TAG_VMA, TAG_TASK] {
            assert_ne!(tag, TAG_PROC);
            assert_ne!(tag, TAG_TABLE);
        }
        assert_ne!(TAG_PROC, TAG_TABLE);
    }

    #[test]
    fn cgroups_filter_by_ancestor_pointers_or_ids() {
        let mut k = KernelOffsets::absent();
        assert!(!k.can_filter_cgroups());
        k.task_cgroups = 0x10;
        k.css_set_dfl_cgrp = 0x20;
        k.cgroup_level = 0x30;
        k.cgroup_ancestors = 0x40;
        // Pointers (6.0 and later) need the kernfs id behind each.
        assert!(!k.can_filter_cgroups());
        k.cgroup_kn = 0x50;
        k.kernfs_node_id = 0x60;
        assert!(k.can_filter_cgroups());
        // Ids (before 6.0) are the answer themselves.
        k.cgroup_kn = ABSENT;
        k.flags = FLAG_CGROUP_ANCESTOR_IDS;
        assert!(k.can_filter_cgroups());
        k.cgroup_level = ABSENT;
        assert!(!k.can_filter_cgroups());
    }
}
