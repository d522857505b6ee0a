//! Live events for the daemon: every fd a task installs (from the best backend the kernel
//! allows: fentry or kprobe on `fd_install`, else the exits of fd-creating syscalls), closes of
//! tracked fds, files whose locks changed, and fork/exec/exit. Files whose ops table
//! (`OK_FOPS`) or, for sockets, whose family, type and protocol (`OK_SOCKS`) user space has
//! judged ok whatever their state are dropped here, so the ring buffer carries only what
//! matters; a TCP socket ok in its present state (a new one is CLOSE) is dropped too, and
//! reported when it leaves that state.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_RING_SIZE},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_task_btf, bpf_ktime_get_ns,
        bpf_probe_read_user,
    },
    macros::{btf_tracepoint, fentry, kprobe, map},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};
use ckpt_common::{
    ANY_STATE, FLAG_CURRENT_TASK_BTF, FileFacts, IOCTL_FD_REQUESTS, MAX_SYSCALLS, OkSock,
    OpsRecord, TAG_TASK, TaskEvent, flags, syscall_kind, task_event,
};

use crate::file_facts;
use crate::kread::{self, Mem, Probe, Typed, off, read, read_ptr};

/// Sized by user space (`--ring-buffer-size`) before load.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Events that did not fit in `EVENTS`, per CPU (counted atomically, see `count_at`). User
/// space sums them and rescans when the sum grows.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Installs dropped because of `OK_FOPS`, per CPU (a metric).
#[map]
static FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Kinds of socket that are ok in some states: the value is the mask of TCP states (`1 <<
/// state`) they are ok in, [`ANY_STATE`] for kinds ok whatever their state (UDP, netlink, ...).
#[map]
static OK_SOCKS: HashMap<OkSock, u32> = HashMap::with_max_entries(256, 0);

/// Sockets held in a state their kind is ok in (dropped when installed, or found so by a
/// rescan), by `struct sock` address: `[(tgid << 32) | fd, ok-state mask]`. When one leaves
/// those states it is reported then. An element lives until its socket leaves them or is
/// destroyed (`ckpt_tcp_destroy`), never evicted: an evicted socket could connect unseen (by
/// `sendto(MSG_FASTOPEN)` or io_uring, no connect syscall to follow). Full, a socket is
/// reported [`flags::UNWATCHED`] instead.
#[map]
static WATCHED_SOCKS: HashMap<u64, [u64; 2]> = HashMap::with_max_entries(65_536, 0);

/// Watches of sockets started ([`Watches::Started`]) and refused by a full `WATCHED_SOCKS`
/// ([`Watches::Refused`]), per CPU: metrics.
#[map]
static WATCHES: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

enum Watches {
    Started = 0,
    Refused = 1,
}

/// Changes no record could be made for, per CPU, by [`Unreported`] index: user space rescans
/// when any grows.
#[map]
static UNREPORTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(3, 0);

enum Unreported {
    /// Watched sockets that changed state in another process's context.
    Sockets = 0,
    /// Fds a compat syscall passed in memory laid out as i386's, or named there (socketcall's
    /// connect and listen).
    CompatFds = 1,
    /// Fds reported in a table other processes share ([`SHARED_TABLES`]), whose records name
    /// the installer only; and shared tables the map had no room for.
    SharedTables = 2,
}

/// Fd tables (`files_struct` addresses) that more than one process uses: `clone(CLONE_FILES)`
/// without `CLONE_THREAD` (the kernel's file walk lists such a table under each process, and
/// CRIU dumps it with whichever it is given). Valued by when they were seen so
/// (`bpf_ktime_get_ns`): marked by the fork that makes one, and by user space after each walk
/// of the tasks (`ckpt_fd_tables`, before each rescan's file walk), which drops the marks from
/// before it that it did not find again. Few, so allocated as they come.
#[map]
static SHARED_TABLES: HashMap<u64, u64> =
    HashMap::with_max_entries(65_536, file_facts::BPF_F_NO_PREALLOC);

/// `(tgid << 32) | fd` of fds user space tracks, so their closes are reported.
#[map]
static TRACKED: HashMap<u64, u8> = HashMap::with_max_entries(131_072, 0);

/// How to find the fds each syscall (by number) creates or closes, native and compat
/// (`ckpt_common::syscall_kinds`); see `syscall_kind`.
#[map]
static SYSCALL_KIND: Array<u16> = Array::with_max_entries(MAX_SYSCALLS, 0);

/// Records and caches are built per CPU in the [`Slot`] of the program building them.
#[map]
static EVENT_SCRATCH: PerCpuArray<FileFacts> = PerCpuArray::with_max_entries(Slot::COUNT, 0);
#[map]
static EVENT_OPS_SCRATCH: PerCpuArray<OpsRecord> = PerCpuArray::with_max_entries(Slot::COUNT, 0);
#[map]
static EVENT_FS_TYPE: kread::FsTypeCache = PerCpuArray::with_max_entries(Slot::COUNT, 0);
/// Per CPU: 1 while a run of `ckpt_sock_state` holds [`Slot::SockState`].
#[map]
static SOCK_STATE_BUSY: PerCpuArray<u8> = PerCpuArray::with_max_entries(1, 0);

/// Which program builds a record, which decides the per-CPU scratch and cache it uses. Event
/// programs run inside one another on one CPU: a TCP state change runs from softirq too, and
/// where the kernel lets programs be preempted a task preempted halfway through a record lets
/// other tasks run other programs on that CPU. fentry programs run preemptibly on a
/// preemptible kernel (`__bpf_prog_enter_recur` only disables migration); tracepoint programs
/// too since 7.0 (`__bpf_trace_run`, f7d327654b88, with a46023d5616e). The kernel never runs
/// one program twice at once on one CPU in one context (it skips the run and counts it), so
/// each program has its own slot, and the one that runs from softirq a second one for a run
/// inside its own.
#[derive(Clone, Copy)]
enum Slot {
    /// `ckpt_fd_install_fentry` or `ckpt_fd_install_kprobe`: never both attached.
    FdInstall = 0,
    SysExit = 1,
    SockState = 2,
    /// `ckpt_sock_state` from softirq, inside a run of its own it interrupted.
    SockStateNested = 3,
}

impl Slot {
    const COUNT: u32 = 4;
}

const PTRACE_TRACEME: u64 = 0;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_DETACH: u64 = 17;
const PTRACE_SEIZE: u64 = 0x4206;
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;
const F_SETLEASE: u64 = 1024;
const MAP_ANONYMOUS: u64 = 0x20;
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
/// i386's F_SETLK64 and F_SETLKW64 (64-bit kernels refuse them from native callers).
const F_SETLK64: u64 = 13;
const F_SETLKW64: u64 = 14;
/// i386's socketcall calls (include/uapi/linux/net.h).
const SYS_SOCKET: u64 = 1;
const SYS_CONNECT: u64 = 3;
const SYS_LISTEN: u64 = 4;
const SYS_ACCEPT: u64 = 5;
const SYS_SOCKETPAIR: u64 = 8;
const SYS_RECVMSG: u64 = 17;
const SYS_ACCEPT4: u64 = 18;
const SYS_RECVMMSG: u64 = 19;
/// x86's `TS_COMPAT` in `thread_info.status` (arch/x86/include/asm/thread_info.h): a compat
/// syscall is in progress, whose number and argument registers are i386's, whether a 32-bit
/// process made it or a 64-bit one through int 0x80. Read as the native table, a compat read
/// (3) would be a close of whatever fd `di` names.
const TS_COMPAT: u32 = 0x0002;
/// `__X32_SYSCALL_BIT`: an x32 syscall below 512 is the native one of that number.
const X32_SYSCALL_BIT: u64 = 0x4000_0000;

// The user-space ABI of x86_64 (not kernel structs: fixed, so not taken from BTF).
/// `struct msghdr`: `msg_control` and `msg_controllen`.
const MSGHDR_CONTROL: u64 = 32;
const MSGHDR_CONTROLLEN: u64 = 40;
/// `struct cmsghdr`: `cmsg_len` (size_t), `cmsg_level`, `cmsg_type`, then the data.
const CMSG_HDR: u64 = 16;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
/// Bounds that keep the verifier's work small (each fd reported inlines the whole install
/// path): control messages walked, and fds reported, per message; recvmmsg's first message
/// only. More is left to the rescan; passing one fd at a time is by far the common case.
const MAX_CMSGS: usize = 2;
const MAX_SCM_FDS: u64 = 2;
/// Locks walked per list for a file just installed. User space never looks closer at an
/// event's unfinished walk (it stays a guess of "held", [`ckpt_common::flags::LOCKS_UNWALKED`]),
/// and these programs are verified once per daemon, not once per scan: a longer walk than the
/// iterator's.
const EVENT_LOCK_WALK: u32 = 16;
/// Locks walked per list before a file of an ok kind is dropped: one walked only in part is
/// reported, and the record's own walk tells.
const DROP_LOCK_WALK: u32 = 4;

fn count(counter: &PerCpuArray<u64>) {
    count_at(counter, 0);
}

/// One atomic add: programs that count into the same per-CPU element can run inside one
/// another on that CPU (see [`Slot`]), and a read-modify-write interrupted by another would
/// lose a count.
fn count_at(counter: &PerCpuArray<u64>, index: u32) {
    if let Some(n) = counter.get_ptr_mut(index) {
        // SAFETY: this CPU's element of the map, 8-byte aligned and live while the program
        // runs. BPF_XADD: the target has no compare-and-swap, so `core`'s atomics offer no add.
        unsafe {
            core::arch::asm!(
                "lock *(u64 *)({n} + 0) += {one}",
                n = in(reg) n,
                one = in(reg) 1u64,
            )
        };
    }
}

fn count_lost() {
    count(&LOST);
}

/// The flags of an output: a forced wakeup once a quarter of the ring waits. The reader lets
/// records gather after a wakeup, and the kernel wakes it on its own only when it had caught
/// up; a storm must end the gathering before it fills the ring.
#[inline(always)]
fn wakeup() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= EVENTS.query(BPF_RB_RING_SIZE as u64) / 4 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        0
    }
}

fn output<T: 'static>(rec: &T) {
    if EVENTS.output::<T>(rec, wakeup()).is_err() {
        count_lost();
    }
}

fn task_event(kind: u32, tgid: u32, arg: u32, arg2: u32) {
    output(&TaskEvent {
        tag: TAG_TASK,
        kind,
        tgid,
        arg,
        arg2,
        _pad: 0,
        time: unsafe { bpf_ktime_get_ns() },
    });
}

/// The current task's process id, without reading the task: one cheap helper call on paths
/// that run for every install and close on the host.
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Whether the current task leads its process (its pid is the process's).
fn current_is_leader() -> bool {
    let id = bpf_get_current_pid_tgid();
    id as u32 == (id >> 32) as u32
}

/// [`kread::in_process_table`] of the current task, read through its BTF type where the kernel
/// allows: most installs of a busy server are its worker threads'.
fn current_in_process_table() -> bool {
    if current_is_leader() {
        return true;
    }
    if off!(flags) & FLAG_CURRENT_TASK_BTF != 0 {
        kread::in_process_table::<Typed>(unsafe { bpf_get_current_task_btf() } as u64, false)
    } else {
        kread::in_process_table::<Probe>(unsafe { bpf_get_current_task() }, false)
    }
}

fn key(tgid: u32, fd: u32) -> u64 {
    ((tgid as u64) << 32) | fd as u64
}

/// Forgets a tracked fd, telling user space it is gone.
fn untrack(tgid: u32, fd: u32) {
    let k = key(tgid, fd);
    if unsafe { TRACKED.get(&k) }.is_some() {
        let _ = TRACKED.remove(&k);
        task_event(task_event::CLOSE, tgid, fd, 0);
    }
}

/// The `struct file *` at `fd` in `task`'s table. The array entry is a helper read whatever
/// `M`: the verifier types `fdt->fd` as a number (a pointer to pointers) and allows no
/// variable index into a typed pointer.
#[inline(always)]
fn file_at<M: Mem>(task: u64, fd: u32) -> u64 {
    let files = M::ptr(task, off!(task_files));
    let fdt = M::ptr(files, off!(files_fdt));
    let max = M::read::<u32>(fdt, off!(fdtable_max_fds)).unwrap_or(0);
    if fd >= max {
        return 0;
    }
    let array = M::ptr(fdt, off!(fdtable_fd));
    if array == 0 {
        return 0;
    }
    read::<u64>(array + fd as u64 * 8, 0).unwrap_or(0)
}

/// An ok file took `fd`: whatever user space tracked there is gone.
fn drop_ok(tgid: u32, fd: u32) {
    untrack(tgid, fd);
    count(&FILTERED);
}

/// What a socket's kind (`OK_SOCKS`) makes of its present state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SockOk {
    /// Not ok by its kind, or not in this state.
    No,
    /// Ok whatever its state: not watched.
    Always,
    /// Ok in this state, and watched until it leaves it.
    Watched,
    /// Ok in this state, but `WATCHED_SOCKS` is full: a change of state would go unseen.
    Unwatched,
}

/// Whether socket `file`, `fd` of `tgid`, is ok by its kind in `OK_SOCKS` (read before any
/// other fact: most sockets a busy host makes are of such kinds), with its state: the one
/// read once it is watched, for a socket whose kind is ok in some states only.
///
/// The watch is in place before that state is read. A state change traced from then on meets
/// it; one traced before is in the state read, or (traced before the kernel stored the state)
/// is followed by another that meets it: a socket that connects leaves CLOSE for SYN_SENT,
/// then SYN_SENT for ESTABLISHED, one handshake later.
#[inline(always)]
pub fn ok_socket(file: u64, tgid: u32, fd: u32) -> (SockOk, u8) {
    let Some(sock) = kread::sock_kind::<kread::Probe>(file) else {
        return (SockOk::No, 0);
    };
    let kind = OkSock {
        family: sock.family,
        sk_type: sock.sk_type,
        protocol: sock.protocol,
        _pad: 0,
    };
    let Some(&mask) = (unsafe { OK_SOCKS.get(&kind) }) else {
        return (SockOk::No, sock.state);
    };
    if mask == ANY_STATE {
        return (SockOk::Always, sock.state);
    }
    let ok_in = |state: u8| state < 32 && mask & (1 << state) != 0;
    if !ok_in(sock.state) {
        return (SockOk::No, sock.state);
    }
    if WATCHED_SOCKS
        .insert(&sock.sk, &[key(tgid, fd), mask as u64], 0)
        .is_err()
    {
        count_at(&WATCHES, Watches::Refused as u32);
        return (SockOk::Unwatched, sock.state);
    }
    // A locked add: a full barrier on x86, so the state below is read after the watch is
    // visible to `ckpt_sock_state` on every CPU.
    count_at(&WATCHES, Watches::Started as u32);
    let state = read::<u8>(sock.sk, off!(sock_state)).unwrap_or(u8::MAX);
    if ok_in(state) {
        (SockOk::Watched, state)
    } else {
        let _ = WATCHED_SOCKS.remove(&sock.sk);
        (SockOk::No, state)
    }
}

/// Why a file is reported.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Just installed: unless it is ok by its kind.
    Installed,
    /// Its locks changed (flock, fcntl F_SETLK*, F_SETLEASE), whatever its kind: CRIU stops at
    /// a lock on a file of any kind without --file-locks (criu/file-lock.c). A dropped lock is
    /// reported too: the fd's verdict is ok again.
    Locked,
    /// Just mapped, whatever its kind ([`flags::MAPPED`]).
    Mapped,
}

/// Reports `file`, just installed as `fd` in the current task, unless it is ok by its kind;
/// built in `slot`, the calling program's.
fn installed(task: u64, fd: u32, file: u64, slot: Slot) {
    reported(task, fd, file, Why::Installed, slot);
}

/// Reports `file`, `fd` of the current task, whose locks changed.
fn locked(task: u64, fd: u32, file: u64) {
    reported(task, fd, file, Why::Locked, Slot::SysExit);
}

/// One body for all, so that the verifier sees `report` inlined once.
fn reported(task: u64, fd: u32, file: u64, why: Why, slot: Slot) {
    let tgid = current_tgid();
    if file == 0 || tgid == off!(ignore_tgid) || !kread::in_target_cgroup(task) {
        return;
    }
    if why != Why::Installed {
        let mapped = if why == Why::Mapped { flags::MAPPED } else { 0 };
        report(
            task,
            tgid,
            fd,
            file,
            read_ptr(file, off!(file_f_op)),
            None,
            mapped,
            slot,
        );
        return;
    }
    let (f_op, inode) = kread::read_two::<u64, u64>(file, off!(file_f_op), off!(file_f_inode));
    // An unreadable mode is 0, no file type: such a file is never dropped here.
    let (mode, rdev) = kread::read_two::<u16, u32>(inode, off!(inode_i_mode), off!(inode_i_rdev));
    let mode = mode as u32;
    let ok_kind = file_facts::ok_by_table(f_op, mode, rdev) == Some(false);
    // A lock belongs to the open file, whichever fd took it: a dup of a locked pipe, or a
    // dup2 of its fd onto itself, is reported, as a scan counts only unlocked files.
    // A socket inode opens only as a socket (sock_alloc_file), or by O_PATH with no
    // `private_data`: the mode is enough to read its kind, no ops table to compare.
    let socket = !ok_kind && mode & kread::S_IFMT == kread::S_IFSOCK;
    if !(ok_kind || socket) || !file_facts::unlocked::<Probe, DROP_LOCK_WALK>(file, task) {
        report(task, tgid, fd, file, f_op, None, 0, slot);
        return;
    }
    let sock = if socket {
        ok_socket(file, tgid, fd).0
    } else {
        SockOk::Always
    };
    match sock {
        SockOk::Always | SockOk::Watched => drop_ok(tgid, fd),
        SockOk::Unwatched => report(task, tgid, fd, file, f_op, None, flags::UNWATCHED, slot),
        SockOk::No => report(task, tgid, fd, file, f_op, None, 0, slot),
    }
}

/// Asks user space to rescan when `task`'s fd table is shared with another process: what it
/// installs there, or a change of state reported there, is the other's too, and the record
/// names only `task`'s process.
#[inline(always)]
fn note_shared_table(task: u64) {
    let files = read_ptr(task, off!(task_files));
    if unsafe { SHARED_TABLES.get(&files) }.is_some() {
        count_at(&UNREPORTED, Unreported::SharedTables as u32);
    }
}

/// Sends `file` (`fd` of `tgid`, in `task`) to user space and tracks the fd; `state`
/// overrides the socket state read (a state change is traced before it is stored), `more_flags`
/// join the record's. Inlined: BPF calls take five arguments at most.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn report(
    task: u64,
    tgid: u32,
    fd: u32,
    file: u64,
    f_op: u64,
    state: Option<u16>,
    more_flags: u32,
    slot: Slot,
) {
    note_shared_table(task);
    let slot = slot as u32;
    if file_facts::first_sight(&file_facts::SEEN_OPS, f_op) {
        if let Some(ops) = EVENT_OPS_SCRATCH.get_ptr_mut(slot) {
            let ops = unsafe { &mut *ops };
            file_facts::fill_ops(ops, f_op);
            if EVENTS.output::<OpsRecord>(ops, wakeup()).is_err() {
                file_facts::forget_ops(&file_facts::SEEN_OPS, f_op);
                count_lost();
            }
        }
    }
    let Some(rec) = EVENT_SCRATCH.get_ptr_mut(slot) else {
        return;
    };
    let rec = unsafe { &mut *rec };
    let fs_cache = Some((&EVENT_FS_TYPE, slot));
    file_facts::fill::<kread::Probe, EVENT_LOCK_WALK>(rec, task, tgid, fd, file, f_op, fs_cache);
    if let Some(state) = state {
        rec.sk_state = state;
    }
    rec.flags |= more_flags;
    rec.time = unsafe { bpf_ktime_get_ns() };
    if EVENTS.output::<FileFacts>(rec, wakeup()).is_err() {
        count_lost();
        return;
    }
    let _ = TRACKED.insert(&key(tgid, fd), &0, 0);
}

// ── Backend 1: fentry on fd_install(unsigned int fd, struct file *file) ──────────────────────
#[fentry(function = "fd_install")]
pub fn ckpt_fd_install_fentry(ctx: FEntryContext) -> i32 {
    let fd: u32 = ctx.arg(0);
    let file: u64 = ctx.arg(1);
    if current_in_process_table() {
        installed(unsafe { bpf_get_current_task() }, fd, file, Slot::FdInstall);
    }
    0
}

// ── Backend 2: kprobe on the same function ──────────────────────────────────────────────────
#[kprobe(function = "fd_install")]
pub fn ckpt_fd_install_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(fd), Some(file)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1))
        && current_in_process_table()
    {
        installed(
            unsafe { bpf_get_current_task() },
            fd as u32,
            file,
            Slot::FdInstall,
        );
    }
    0
}

/// The first SCM_RIGHTS control message of the user's `msghdr` at `msg`, after a recvmsg
/// returned (the kernel wrote back the control length it used): its data and its fd count.
fn scm_rights(msg: u64) -> Option<(u64, u64)> {
    let read_user = |addr: u64| -> Option<u64> {
        if addr == 0 {
            return None;
        }
        unsafe { bpf_probe_read_user(addr as *const u64).ok() }
    };
    let control = read_user(msg + MSGHDR_CONTROL)?;
    let end = control.saturating_add(read_user(msg + MSGHDR_CONTROLLEN)?);
    let mut cmsg = control;
    for _ in 0..MAX_CMSGS {
        if cmsg == 0 || cmsg + CMSG_HDR > end {
            return None;
        }
        let cmsg_len = read_user(cmsg)?;
        let level_type = read_user(cmsg + 8)?;
        if cmsg_len < CMSG_HDR || cmsg + cmsg_len > end {
            return None;
        }
        let (level, kind) = (level_type as u32 as i32, (level_type >> 32) as u32 as i32);
        if level == SOL_SOCKET && kind == SCM_RIGHTS {
            return Some((cmsg + CMSG_HDR, (cmsg_len - CMSG_HDR) / 4));
        }
        // CMSG_NXTHDR: the next header starts 8-byte aligned after this one.
        cmsg += (cmsg_len + 7) & !7;
    }
    None
}

/// Reports the fds a returned recvmsg received over SCM_RIGHTS in the `msghdr` at `msg`.
#[inline(always)]
fn received<M: Mem>(task: u64, msg: u64) {
    let Some((fds, n)) = scm_rights(msg) else {
        return;
    };
    let mut i = 0;
    while i < MAX_SCM_FDS && i < n {
        if let Ok(fd) = unsafe { bpf_probe_read_user((fds + i * 4) as *const i32) } {
            installed(
                task,
                fd as u32,
                file_at::<M>(task, fd as u32),
                Slot::SysExit,
            );
        }
        i += 1;
    }
}

// ── Backend 3, and closes for every backend: the exit of every syscall ──────────────────────
fn user_pair(ptr: u64) -> Option<[i32; 2]> {
    if ptr == 0 {
        return None;
    }
    unsafe { bpf_probe_read_user(ptr as *const [i32; 2]).ok() }
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ckpt_sys_exit(ctx: BtfTracePointContext) -> i32 {
    // A BTF-typed `struct pt_regs *`: its members are read directly, not through a helper
    // call, for this runs at the exit of every syscall on the host.
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let Some(nr) = Typed::read::<u64>(regs, off!(regs_orig_ax)) else {
        return 0;
    };
    let nr = nr & !X32_SYSCALL_BIT;
    if nr >= MAX_SYSCALLS as u64 {
        return 0;
    }
    let kinds = SYSCALL_KIND.get(nr as u32).copied().unwrap_or(0);
    if kinds == 0 {
        return 0;
    }
    // The typed task saves four helper calls per install in `file_at`; the verifier follows
    // one branch, the constant flag's, so an older kernel never sees the newer helper.
    if off!(flags) & FLAG_CURRENT_TASK_BTF != 0 {
        let task = unsafe { bpf_get_current_task_btf() } as u64;
        syscall_exited::<Typed>(task, regs, ret, kinds);
    } else {
        syscall_exited::<Probe>(unsafe { bpf_get_current_task() }, regs, ret, kinds);
    }
    0
}

/// The arguments of a syscall, by its ABI's registers.
struct Args {
    regs: u64,
    compat: bool,
}

impl Args {
    /// Argument 0 to 4 (one branch per register: each load's offset is a constant). A
    /// compat argument is the register's lower half: i386 sees no more, whatever a 64-bit
    /// caller of int 0x80 left in the upper one.
    #[inline(always)]
    fn get<const N: u32>(&self) -> u64 {
        let at = match (N, self.compat) {
            (0, false) => off!(regs_di),
            (0, true) => off!(regs_bx),
            (1, false) => off!(regs_si),
            (1, true) => off!(regs_cx),
            (2, _) => off!(regs_dx),
            (4, false) => off!(regs_r8),
            (4, true) => off!(regs_di),
            (_, false) => off!(regs_r10),
            (_, true) => off!(regs_si),
        };
        let value = Typed::read::<u64>(self.regs, at).unwrap_or(0);
        if self.compat {
            value as u32 as u64
        } else {
            value
        }
    }
}

/// What a syscall of `kinds` that returned `ret` created or closed; `M` reads `task`.
#[inline(always)]
fn syscall_exited<M: Mem>(task: u64, regs: u64, ret: i64, kinds: u16) {
    let compat = M::read::<u32>(task, off!(task_ti_status)).is_some_and(|s| s & TS_COMPAT != 0);
    let kind = if compat {
        (kinds >> 8) as u8
    } else {
        kinds as u8
    };
    // A failed syscall made nothing; but a failed connect may leave its socket connecting
    // (EINPROGRESS, EALREADY, EINTR from a signal) or find it connected (EISCONN).
    if ret < 0
        && !matches!(
            kind,
            syscall_kind::SOCKET_STATE | syscall_kind::SOCKETCALL | syscall_kind::SOCKETCALL_STATE
        )
    {
        return;
    }
    // setsid and ptrace change the process whatever the thread's fd table; the rest change fds.
    if !matches!(kind, syscall_kind::REFRESH_SELF | syscall_kind::PTRACE)
        && !kread::in_process_table::<M>(task, current_is_leader())
    {
        return;
    }
    let args = Args { regs, compat };
    let arg0 = args.get::<0>();
    match kind {
        syscall_kind::RET_FD => installed(
            task,
            ret as u32,
            file_at::<M>(task, ret as u32),
            Slot::SysExit,
        ),
        syscall_kind::FCNTL | syscall_kind::FCNTL_LOCKS => {
            // fcntl's command is an unsigned int: the kernel ignores the upper half.
            let cmd = args.get::<1>() as u32 as u64;
            if kind == syscall_kind::FCNTL && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
                installed(
                    task,
                    ret as u32,
                    file_at::<M>(task, ret as u32),
                    Slot::SysExit,
                );
            } else if matches!(
                cmd,
                F_SETLK
                    | F_SETLKW
                    | F_OFD_SETLK
                    | F_OFD_SETLKW
                    | F_SETLEASE
                    | F_SETLK64
                    | F_SETLKW64
            ) {
                locked(task, arg0 as u32, file_at::<M>(task, arg0 as u32));
            }
        }
        syscall_kind::FLOCK => locked(task, arg0 as u32, file_at::<M>(task, arg0 as u32)),
        syscall_kind::MMAP if args.get::<3>() & MAP_ANONYMOUS == 0 => {
            // The fd is an int: the upper half is ignored (mm/mmap.c ksys_mmap_pgoff).
            let fd = args.get::<4>() as u32;
            let file = file_at::<M>(task, fd);
            let inode = read_ptr(file, off!(file_f_inode));
            let mode = read::<u16>(inode, off!(inode_i_mode)).unwrap_or(0) as u32;
            if mode & kread::S_IFMT == kread::S_IFSOCK {
                reported(task, fd, file, Why::Mapped, Slot::SysExit);
            }
        }
        // The request is an unsigned int, as for fcntl's command.
        syscall_kind::IOCTL if IOCTL_FD_REQUESTS.contains(&(args.get::<1>() as u32)) => installed(
            task,
            ret as u32,
            file_at::<M>(task, ret as u32),
            Slot::SysExit,
        ),
        syscall_kind::PAIR_ARG0 | syscall_kind::PAIR_ARG3 => {
            let ptr = if kind == syscall_kind::PAIR_ARG0 {
                arg0
            } else {
                args.get::<3>()
            };
            if let Some([a, b]) = user_pair(ptr) {
                installed(task, a as u32, file_at::<M>(task, a as u32), Slot::SysExit);
                installed(task, b as u32, file_at::<M>(task, b as u32), Slot::SysExit);
            }
        }
        // recvmmsg: the first message's msghdr leads the mmsghdr array.
        syscall_kind::RECVMSG | syscall_kind::RECVMMSG => received::<M>(task, args.get::<1>()),
        syscall_kind::RESCAN => count_at(&UNREPORTED, Unreported::CompatFds as u32),
        syscall_kind::SOCKET_STATE => socket_state_changed::<M>(task, arg0 as u32),
        syscall_kind::SOCKETCALL | syscall_kind::SOCKETCALL_STATE => match arg0 {
            SYS_CONNECT | SYS_LISTEN => {
                // The socket is the first of the call's arguments, i386's u32s in memory,
                // which another thread may have rewritten since the kernel read them: what is
                // read here is judged, and user space rescans.
                let fd = unsafe { bpf_probe_read_user(args.get::<1>() as *const u32) };
                if let Ok(fd) = fd {
                    socket_state_changed::<M>(task, fd);
                }
                count_at(&UNREPORTED, Unreported::CompatFds as u32);
            }
            _ if ret < 0 || kind == syscall_kind::SOCKETCALL_STATE => {}
            SYS_SOCKET | SYS_ACCEPT | SYS_ACCEPT4 => installed(
                task,
                ret as u32,
                file_at::<M>(task, ret as u32),
                Slot::SysExit,
            ),
            SYS_SOCKETPAIR | SYS_RECVMSG | SYS_RECVMMSG => {
                count_at(&UNREPORTED, Unreported::CompatFds as u32)
            }
            _ => {}
        },
        syscall_kind::CLOSE => untrack(current_tgid(), arg0 as u32),
        syscall_kind::REFRESH_SELF => task_event(task_event::REFRESH, current_tgid(), 0, 0),
        syscall_kind::PTRACE => {
            let request = arg0;
            if request == PTRACE_TRACEME {
                task_event(task_event::REFRESH, current_tgid(), 0, 0);
            } else if matches!(request, PTRACE_ATTACH | PTRACE_DETACH | PTRACE_SEIZE) {
                let tracee = args.get::<1>();
                task_event(task_event::REFRESH, tracee as u32, 0, 0);
            }
        }
        // With CLOSE_RANGE_CLOEXEC the fds are only marked close-on-exec, and stay open until
        // an exec (fs/file.c `__close_range`). The flags are an unsigned int.
        syscall_kind::CLOSE_RANGE if args.get::<2>() as u32 & CLOSE_RANGE_CLOEXEC == 0 => {
            let last = args.get::<1>();
            task_event(
                task_event::CLOSE_RANGE,
                current_tgid(),
                arg0 as u32,
                last as u32,
            );
        }
        _ => {}
    }
}

/// After a connect or listen on `fd` of the current task: judged as if installed now (dropped
/// here if ok in its new state). Nothing else may follow it: only installs start the watch of
/// a socket's state, so a socket a rescan found, or one reported before user space told the
/// kernel its kind's ok states, is watched by nothing; and a unix socket is judged by the
/// peer a connect gives it.
#[inline(always)]
fn socket_state_changed<M: Mem>(task: u64, fd: u32) {
    installed(task, fd, file_at::<M>(task, fd), Slot::SysExit);
}

// ── Watched sockets leaving their ok states ─────────────────────────────────────────────────
/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`, for every TCP
/// state change on the host: one map lookup unless the socket is watched. Leaving the ok
/// states by connect() or listen() happens in the owner's syscall, where the fd is found in the
/// current task (the owner, or a fork sharing the fd); elsewhere user space is asked to rescan.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn ckpt_sock_state(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let new_state: i32 = ctx.arg(2);
    let Some(&[owner, mask]) = (unsafe { WATCHED_SOCKS.get(&sk) }) else {
        return 0;
    };
    if (0..32).contains(&new_state) && mask & (1 << new_state) != 0 {
        return 0;
    }
    let _ = WATCHED_SOCKS.remove(&sk);
    let fd = owner as u32;
    let task = unsafe { bpf_get_current_task() };
    let file = file_at::<Probe>(task, fd);
    let same = file != 0
        && current_in_process_table()
        && kread::sock_kind::<kread::Probe>(file).is_some_and(|s| s.sk == sk);
    match read::<u32>(task, off!(task_tgid)) {
        Some(tgid) if same && tgid != off!(ignore_tgid) => {
            let f_op = read_ptr(file, off!(file_f_op));
            // Set and cleared by the outer run only; a softirq run finds it set while a run
            // in task context is halfway, even a preempted one.
            let busy = SOCK_STATE_BUSY.get_ptr_mut(0);
            let outer = busy.is_some_and(|b| unsafe { *b } == 0);
            let slot = if outer {
                Slot::SockState
            } else {
                Slot::SockStateNested
            };
            if let (true, Some(b)) = (outer, busy) {
                unsafe { *b = 1 };
            }
            report(task, tgid, fd, file, f_op, Some(new_state as u16), 0, slot);
            if let (true, Some(b)) = (outer, busy) {
                unsafe { *b = 0 };
            }
        }
        _ => count_at(&UNREPORTED, Unreported::Sockets as u32),
    }
    0
}

/// `tcp_destroy_sock(struct sock *sk)`, for every TCP socket the host frees: its watch ends
/// with it, before another socket can take its address.
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn ckpt_tcp_destroy(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = WATCHED_SOCKS.remove(&sk);
    0
}

// ── Lifecycle ───────────────────────────────────────────────────────────────────────────────
#[btf_tracepoint(function = "sched_process_fork")]
pub fn ckpt_fork(ctx: BtfTracePointContext) -> i32 {
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let (Some(pid), Some(tgid)) = (
        read::<u32>(child, off!(task_pid)),
        read::<u32>(child, off!(task_tgid)),
    ) else {
        return 0;
    };
    // A new process on its creator's fd table (`clone(CLONE_FILES)`).
    let files = read_ptr(child, off!(task_files));
    if pid == tgid && files != 0 && files == read_ptr(parent, off!(task_files)) {
        let now = unsafe { bpf_ktime_get_ns() };
        if SHARED_TABLES.insert(&files, &now, 0).is_err() {
            count_at(&UNREPORTED, Unreported::SharedTables as u32);
        }
    }
    // A thread shares its process's fds: nothing new to track.
    if pid != tgid || !kread::in_target_cgroup(child) {
        return 0;
    }
    if let Some(ptgid) = read::<u32>(parent, off!(task_tgid)) {
        task_event(task_event::FORK, ptgid, pid, 0);
    }
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn ckpt_exec(ctx: BtfTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    if let Some(tgid) = read::<u32>(task, off!(task_tgid)) {
        task_event(task_event::EXEC, tgid, 0, 0);
    }
    0
}

/// A process's exit is its last thread's, whichever: a leader may exit alone (`SYS_exit`) and
/// leave threads holding every fd, and an exec by another thread kills the leader. Each
/// exiting thread has left `signal->live` by the time it passes here (kernel/exit.c).
#[btf_tracepoint(function = "sched_process_exit")]
pub fn ckpt_exit(ctx: BtfTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let (Some(pid), Some(tgid)) = (
        read::<u32>(task, off!(task_pid)),
        read::<u32>(task, off!(task_tgid)),
    ) else {
        return 0;
    };
    let signal = read_ptr(task, off!(task_signal));
    let group_dead = match read::<i32>(signal, off!(signal_live)) {
        Some(live) => live == 0,
        None => pid == tgid,
    };
    if group_dead {
        task_event(task_event::EXIT, tgid, 0, 0);
    }
    0
}
