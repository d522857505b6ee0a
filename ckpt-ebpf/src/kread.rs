//! Reading kernel memory at offsets that user space found in BTF, and gathering the facts that
//! both iterators record about a `struct file`.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, generated,
        generated::bpf_sock_from_file,
    },
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use ckpt_common::{
    ABSENT, FLAG_CGROUP_ANCESTOR_IDS, FLAG_FILTER_TGIDS, FLAG_SOCK_FROM_FILE, FLAG_UDP_FLAGS,
    FS_TYPE_LEN, KernelOffsets, flags, known,
};

/// Filled in by user space before load (`EbpfLoader::override_global`); frozen `.rodata`, so the
/// verifier sees every offset as a constant and prunes the reads of absent members.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::absent();

/// Reads one offset. `read_volatile` keeps LLVM from folding the compile-time placeholder.
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::kread::OFFSETS.$field) }
    };
}
pub(crate) use off;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFSOCK: u32 = 0o140000;
const PIDFS_MAGIC: u64 = 0x5049_4446;
const ANON_INODE_FS_MAGIC: u64 = 0x0904_1934;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Reads a `T` at `base + off`; `None` when the member is absent, the base is null or the read
/// faults.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == ABSENT {
        return None;
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// A `T` at `base + off`, zero when the member is absent, the base is null or the read faults.
/// The helper zeroes its buffer when the read faults (a null base faults), so nothing here
/// branches on the outcome: a branch would leave the verifier a constant 0 on one path and an
/// unknown number on the other, and every test of the value later splits its walk in two.
#[inline(always)]
pub fn read_or_zero<T: Copy + Default>(base: u64, off: u32) -> T {
    if off == ABSENT {
        return T::default();
    }
    let mut value = core::mem::MaybeUninit::<T>::uninit();
    let src = base.wrapping_add(off as u64) as *const core::ffi::c_void;
    // SAFETY: the helper writes all `size_of::<T>()` bytes: what it read, or zeros.
    unsafe {
        generated::bpf_probe_read_kernel(value.as_mut_ptr().cast(), size_of::<T>() as u32, src);
        value.assume_init()
    }
}

/// Bytes [`read_two`] copies at most: enough for `file.f_op`..`f_inode` (32 in 6.x) and
/// `inode.i_mode`..`i_rdev` (80).
const SPAN: usize = 96;

/// Two members of the struct at `base`, by one helper call when they lie within [`SPAN`]
/// bytes, else by two: on the paths that run for every install on the host, a helper call
/// costs far more than the bytes it copies. A member that cannot be read is 0, never an
/// `Option` whose unset payload LLVM may load from stack nothing wrote: the verifier of 5.10
/// refuses such a load.
#[inline(always)]
pub fn read_two<A: Copy + Default, B: Copy + Default>(base: u64, a: u32, b: u32) -> (A, B) {
    let apart = || (read_or_zero::<A>(base, a), read_or_zero::<B>(base, b));
    if a == ABSENT || b == ABSENT {
        return apart();
    }
    // Whole 8-byte words from an 8-byte boundary: each member keeps its natural alignment in
    // the buffer (the verifier refuses a misaligned stack load), and LLVM may load a word to
    // extract a narrower member, which older verifiers allow only from stack the helper wrote.
    // The words stay inside any struct holding a pointer (8-byte sized).
    let lo = a.min(b) & !7;
    let hi = ((a + size_of::<A>() as u32).max(b + size_of::<B>() as u32) + 7) & !7;
    if (hi - lo) as usize > SPAN {
        return apart();
    }
    // Not zeroed: zeroing it costs more than the helper call saved (measured, bpf_stats).
    let mut buf = core::mem::MaybeUninit::<[u64; SPAN / 8]>::uninit();
    let dst = buf.as_mut_ptr().cast::<u8>();
    let src = base.wrapping_add(lo as u64) as *const core::ffi::c_void;
    // Zeros where the read faults, as in `read_or_zero`, and for the same reason.
    unsafe { generated::bpf_probe_read_kernel(dst.cast(), hi - lo, src) };
    // The helper wrote `hi - lo` bytes from `dst`; both members lie inside them.
    unsafe {
        (
            dst.add((a - lo) as usize).cast::<A>().read(),
            dst.add((b - lo) as usize).cast::<B>().read(),
        )
    }
}

#[inline(always)]
pub fn read_ptr(base: u64, off: u32) -> u64 {
    read_or_zero::<u64>(base, off)
}

/// How a program reads the members of a struct it holds a pointer to.
pub trait Mem {
    /// Whether the pointers read through are ones the verifier typed from BTF.
    const TYPED: bool;

    fn read<T>(base: u64, off: u32) -> Option<T>;

    #[inline(always)]
    fn ptr(base: u64, off: u32) -> u64 {
        Self::read::<u64>(base, off).unwrap_or(0)
    }

    /// Two members of the struct at `base`, each 0 where it cannot be read.
    #[inline(always)]
    fn read_two<A: Copy + Default, B: Copy + Default>(base: u64, a: u32, b: u32) -> (A, B) {
        (
            Self::read::<A>(base, a).unwrap_or_default(),
            Self::read::<B>(base, b).unwrap_or_default(),
        )
    }
}

/// `bpf_probe_read_kernel`: any address, a helper call per read. For kprobes and tracepoints,
/// whose pointers the verifier knows only as numbers.
pub struct Probe;

impl Mem for Probe {
    const TYPED: bool = false;

    #[inline(always)]
    fn read<T>(base: u64, off: u32) -> Option<T> {
        read(base, off)
    }

    #[inline(always)]
    fn ptr(base: u64, off: u32) -> u64 {
        read_or_zero(base, off)
    }

    #[inline(always)]
    fn read_two<A: Copy + Default, B: Copy + Default>(base: u64, a: u32, b: u32) -> (A, B) {
        read_two(base, a, b)
    }
}

/// A plain load, which the verifier makes fault-safe (zero on a fault) because it typed `base`
/// from BTF: an iterator's context pointers and the struct pointers read through them. A few
/// times cheaper than a helper call, and an iterator makes ~20 reads per file. Never for a
/// `void *` member or a `container_of` result: the verifier refuses such a load.
pub struct Typed;

impl Mem for Typed {
    const TYPED: bool = true;

    #[inline(always)]
    fn read<T>(base: u64, off: u32) -> Option<T> {
        if base == 0 || off == ABSENT {
            return None;
        }
        Some(unsafe { core::ptr::read_volatile(base.wrapping_add(off as u64) as *const T) })
    }
}

/// Zeroes the `N` words at `p`, one store each. LLVM turns the zeroing of an array or of a run
/// of members into a call of a `memset` subprogram that stores byte by byte; every file's
/// record zeroes 96 bytes.
#[inline(always)]
pub fn zero_words<const N: usize>(p: *mut u64) {
    let mut i = 0;
    while i < N {
        // SAFETY: the caller's `N` words at `p`, 8-byte aligned.
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
        i += 1;
    }
}

/// Copies the `N` words at `from` to `to`, one load and store each, as [`zero_words`] and for
/// the same reason.
#[inline(always)]
pub fn copy_words<const N: usize>(from: *const u64, to: *mut u64) {
    let mut i = 0;
    while i < N {
        // SAFETY: the caller's `N` words at each, 8-byte aligned.
        unsafe { core::ptr::write_volatile(to.add(i), core::ptr::read_volatile(from.add(i))) };
        i += 1;
    }
}

/// Reads the NUL-terminated string that `base + off` points to into `dest`.
#[inline(always)]
pub fn read_str_at<M: Mem>(base: u64, off: u32, dest: &mut [u8]) -> bool {
    let s = M::ptr(base, off);
    s != 0 && unsafe { bpf_probe_read_kernel_str_bytes(s as *const u8, dest).is_ok() }
}

/// The last filesystem type seen on this CPU and its name: a task's files mostly sit on a few
/// filesystems, so the string read is mostly saved. Keyed by the `file_system_type`, a static
/// object of the kernel or a module, never by the superblock: a superblock freed and
/// reallocated for another filesystem (an unmount, then a mount a user chose) would be named
/// after the old one. Each program that caches has its own element: two programs that may run
/// at once on one CPU (the two iterators of one scan, preempted; two event programs, see
/// `events::Slot`) must never be halfway through one cache.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FsTypeName {
    fstype: u64,
    name: [u8; FS_TYPE_LEN],
}

pub type FsTypeCache = PerCpuArray<FsTypeName>;

/// A program's own element of a [`FsTypeCache`]: the map, and its index there.
pub type FsCacheSlot<'a> = Option<(&'a FsTypeCache, u32)>;

#[inline(always)]
fn fs_type_name<M: Mem>(sb: u64, dest: &mut [u8; FS_TYPE_LEN], cache: FsCacheSlot) {
    let fstype = M::ptr(sb, off!(sb_s_type));
    let Some(cache) = cache.and_then(|(c, slot)| c.get_ptr_mut(slot)) else {
        read_str_at::<M>(fstype, off!(fstype_name), dest);
        return;
    };
    let cache = unsafe { &mut *cache };
    if cache.fstype != fstype {
        zero_words::<{ FS_TYPE_LEN / 8 }>(cache.name.as_mut_ptr().cast());
        read_str_at::<M>(fstype, off!(fstype_name), &mut cache.name);
        cache.fstype = fstype;
    }
    // Both 8-byte aligned: after the cache's u64 key, and in either record (ckpt-common's
    // layout tests).
    copy_words::<{ FS_TYPE_LEN / 8 }>(cache.name.as_ptr().cast(), dest.as_mut_ptr().cast());
}

/// The inode, superblock and dentry facts shared by open files and mapped files.
pub struct InodeFacts {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub s_magic: u64,
    pub rdev: u32,
    pub dev: u32,
    pub mode: u32,
    pub nlink: u32,
    pub known: u32,
    pub unlinked: bool,
}

/// Reads inode, superblock (+ fs type name) and, but for a socket, dentry (+ name) facts of
/// `file`; `fs_cache` as for `fs_type_name`.
///
/// The inode is not handed back: whoever needs it loads `file->f_inode` again. Kept for later,
/// it would be a typed pointer on some paths and the constant 0 on others (LLVM folds it in
/// after the null check), and the verifier walks all the rest of the program once for each.
#[inline(always)]
pub fn inode_facts<M: Mem>(
    file: u64,
    fs_type: &mut [u8; FS_TYPE_LEN],
    name: &mut [u8],
    fs_cache: FsCacheSlot,
) -> InodeFacts {
    let mut f = InodeFacts {
        ino: 0,
        size: 0,
        blocks: 0,
        s_magic: 0,
        rdev: 0,
        dev: 0,
        mode: 0,
        nlink: 0,
        known: 0,
        unlinked: false,
    };
    let inode = M::ptr(file, off!(file_f_inode));
    if inode != 0 {
        f.mode = M::read::<u16>(inode, off!(inode_i_mode)).unwrap_or(0) as u32;
        f.rdev = M::read::<u32>(inode, off!(inode_i_rdev)).unwrap_or(0);
        f.ino = M::read::<u64>(inode, off!(inode_i_ino)).unwrap_or(0);
        f.nlink = M::read::<u32>(inode, off!(inode_i_nlink)).unwrap_or(0);
        // A socket's inode has neither (sockfs never sets them), and `i_blocks` lies in a
        // cache line of its own.
        if f.mode & S_IFMT != S_IFSOCK {
            f.size = M::read::<u64>(inode, off!(inode_i_size)).unwrap_or(0);
            f.blocks = M::read::<u64>(inode, off!(inode_i_blocks)).unwrap_or(0);
        }
        f.known |= known::INODE;
        let sb = M::ptr(inode, off!(inode_i_sb));
        if sb != 0 {
            f.s_magic = M::read::<u64>(sb, off!(sb_s_magic)).unwrap_or(0);
            f.dev = M::read::<u32>(sb, off!(sb_s_dev)).unwrap_or(0);
            fs_type_name::<M>(sb, fs_type, fs_cache);
            f.known |= known::SUPER;
        }
    }
    // A socket's dentry names its protocol (`UNIX-STREAM`) and is never hashed: what the
    // socket is comes from its `struct sock`. Left unread, it spares a cache miss and a string
    // copy per socket, 40,000 of them beside 2,000 processes × 100 fds.
    if f.mode & S_IFMT == S_IFSOCK {
        return f;
    }
    let dentry = M::ptr(file, off!(file_f_path_dentry));
    if dentry != 0 {
        if read_str_at::<M>(dentry, off!(dentry_d_name_name), name) {
            f.known |= known::NAME;
        }
        // d_unhashed(): the name this file was opened by is gone from the dcache.
        f.unlinked = M::ptr(dentry, off!(dentry_d_hash_pprev)) == 0;
    }
    f
}

/// Copies [`InodeFacts`] into a record with the same field names (`FileFacts`, `VmaFacts`).
macro_rules! store_inode {
    ($rec:expr, $facts:expr) => {{
        $rec.ino = $facts.ino;
        $rec.size = $facts.size;
        $rec.blocks = $facts.blocks;
        $rec.s_magic = $facts.s_magic;
        $rec.rdev = $facts.rdev;
        $rec.dev = $facts.dev;
        $rec.mode = $facts.mode;
        $rec.nlink = $facts.nlink;
        $rec.known = $facts.known;
        $rec.flags = if $facts.unlinked {
            ckpt_common::flags::UNLINKED
        } else {
            0
        };
    }};
}
pub(crate) use store_inode;

/// Mount id of the file's mount, and whether that mount is in the task's mount namespace
/// (what CRIU finds, or fails to find, in /proc/PID/mountinfo).
#[inline(always)]
pub fn mount_facts<M: Mem>(file: u64, task: u64) -> Option<(u32, bool)> {
    let vfsmnt = M::ptr(file, off!(file_f_path_mnt));
    let mnt_off = off!(mount_mnt);
    if vfsmnt == 0 || mnt_off == ABSENT {
        return None;
    }
    // container_of: a pointer the verifier no longer types.
    let mount = vfsmnt - mnt_off as u64;
    // One helper call for both where they lie close (80 bytes apart in 6.x): this runs for
    // every regular file of a host scan. Both 0 is a read that faulted.
    let (mnt_ns, id) = read_two::<u64, u32>(mount, off!(mount_mnt_ns), off!(mount_mnt_id));
    if mnt_ns == 0 && id == 0 {
        return None;
    }
    Some((id, mnt_ns != 0 && mnt_ns == task_mnt_ns::<M>(task)))
}

/// The task's mount namespace, read afresh for every file: a per-CPU cache keyed by the task's
/// address would name the namespace of a task that exited and whose `task_struct` a new task
/// in another namespace now occupies.
#[inline(always)]
fn task_mnt_ns<M: Mem>(task: u64) -> u64 {
    let nsproxy = M::ptr(task, off!(task_nsproxy));
    M::ptr(nsproxy, off!(nsproxy_mnt_ns))
}

pub struct SockFacts {
    pub family: u16,
    pub sk_type: u16,
    pub protocol: u16,
    pub state: u16,
    pub backlog: u32,
    pub known: u32,
    pub peer_ino: u64,
    pub peer_state: u32,
    /// [`flags::HAS_PEER`], [`flags::PEER_NAMED`], [`flags::SK_FILTER`],
    /// [`flags::SK_FILTER_EBPF`], [`flags::UDP_CORKED`].
    pub flags: u32,
    pub wqueue: u32,
    pub rqueue: u32,
}

/// Inode number of a `struct sock`'s socket, 0 once the sock is orphaned (its socket released).
#[inline(always)]
fn sock_ino(sk: u64) -> u64 {
    let socket = read_ptr(sk, off!(sock_socket));
    let ialloc = off!(socket_alloc_inode);
    if socket == 0 || ialloc == ABSENT {
        return 0;
    }
    read::<u64>(socket + ialloc as u64, off!(inode_i_ino)).unwrap_or(0)
}

/// What the daemon's always-ok filter knows a socket by (family, type, protocol), with its
/// `struct sock` and state.
pub struct SockKind {
    pub sk: u64,
    pub family: u16,
    pub sk_type: u16,
    pub protocol: u16,
    pub state: u8,
}

/// The [`SockKind`] of a socket file: four helper calls, the members read in adjacent pairs.
#[inline(always)]
pub fn sock_kind<M: Mem>(file: u64) -> Option<SockKind> {
    let socket = M::ptr(file, off!(file_private_data));
    sock_kind_of::<Probe>(read_ptr(socket, off!(socket_sk)))
}

/// The [`SockKind`] of the `struct sock` at `sk`, its members read by `S`.
#[inline(always)]
fn sock_kind_of<S: Mem>(sk: u64) -> Option<SockKind> {
    if sk == 0 {
        return None;
    }
    let (family, state) = S::read_two::<u16, u8>(sk, off!(sock_family), off!(sock_state));
    let (sk_type, protocol) = S::read_two::<u16, u16>(sk, off!(sock_type), off!(sock_protocol));
    Some(SockKind {
        sk,
        family,
        sk_type,
        protocol,
        state,
    })
}

/// Socket facts of a socket file (`file->private_data` is its `struct socket`).
///
/// Where `M` reads a file the verifier typed (an iterator's) and the kernel has
/// `bpf_sock_from_file` (5.11+), the socket and its `struct sock` come typed too: their
/// members are then plain loads, not seven helper calls (the cache misses on the socket stay:
/// a 2,000 × 100 host scan gained 3–5 %). The verifier follows one branch, the constant
/// flag's, so an older kernel never sees the helper. What lies beyond `struct sock` (`unix_sock`, `udp_sock`) is outside
/// the type the verifier knows and is still read by helper.
#[inline(always)]
pub fn sock_facts<M: Mem>(file: u64) -> Option<SockFacts> {
    if M::TYPED && off!(flags) & FLAG_SOCK_FROM_FILE != 0 {
        // SAFETY: `file` is a typed, non-null `struct file *`, which is all the helper takes;
        // it returns null for a file that is no socket.
        let socket = unsafe { bpf_sock_from_file(file as *mut _) } as u64;
        return sock_facts_of::<Typed>(Typed::ptr(socket, off!(socket_sk)));
    }
    let socket = M::ptr(file, off!(file_private_data));
    sock_facts_of::<Probe>(read_ptr(socket, off!(socket_sk)))
}

/// Socket facts of the `struct sock` at `sk`, its members read by `S`.
///
/// The family is tested once on each path. A second test of a value the verifier already
/// knows on that path makes it precise, and a precise family (2, 10, 1 or any) keeps the
/// rest of the program from being pruned: it was walked once per family.
#[inline(always)]
fn sock_facts_of<S: Mem>(sk: u64) -> Option<SockFacts> {
    let SockKind {
        sk,
        family,
        sk_type,
        protocol,
        state,
    } = sock_kind_of::<S>(sk)?;
    let mut s = SockFacts {
        family,
        sk_type,
        protocol,
        state: state as u16,
        backlog: 0,
        known: known::SOCKET,
        peer_ino: 0,
        peer_state: 0,
        flags: 0,
        wqueue: 0,
        rqueue: 0,
    };
    let extra = sock_extra::<S>(sk, &mut s);
    match family {
        AF_INET | AF_INET6 => {
            if extra
                && sk_type == SOCK_DGRAM
                && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE)
            {
                udp_cork(sk, &mut s);
            }
            backlog::<S>(sk, &mut s);
        }
        AF_UNIX => {
            backlog::<S>(sk, &mut s);
            unix_peer(sk, &mut s);
        }
        _ => {}
    }
    Some(s)
}

#[inline(always)]
fn backlog<S: Mem>(sk: u64, s: &mut SockFacts) {
    if let Some(b) = S::read::<u32>(sk, off!(sock_ack_backlog)) {
        s.backlog = b;
        s.known |= known::BACKLOG;
    }
}

/// The peer of a unix socket: `struct unix_sock` begins with its `struct sock`.
#[inline(always)]
fn unix_peer(sk: u64, s: &mut SockFacts) {
    if off!(unix_peer) == ABSENT {
        return;
    }
    let peer = read_ptr(sk, off!(unix_peer));
    s.known |= known::UNIX_PEER;
    if peer != 0 {
        s.flags |= flags::HAS_PEER;
        s.peer_ino = sock_ino(peer);
        s.peer_state = read::<u8>(peer, off!(sock_state)).unwrap_or(0) as u32;
        if read_ptr(peer, off!(unix_addr)) != 0 {
            s.flags |= flags::PEER_NAMED;
        }
    }
}

/// UDP_CORK of a UDP socket: `struct udp_sock` begins with its `struct sock`.
#[inline(always)]
fn udp_cork(sk: u64, s: &mut SockFacts) {
    let cork = read::<u32>(sk, off!(udp_cork)).unwrap_or(0);
    let corked = if off!(flags) & FLAG_UDP_FLAGS != 0 {
        cork & 1 != 0
    } else {
        cork != 0
    };
    if corked {
        s.flags |= flags::UDP_CORKED;
    }
}

const IPPROTO_UDP: u16 = 17;
const IPPROTO_UDPLITE: u16 = 136;
const SOCK_DGRAM: u16 = 2;

/// What CRIU asks every socket beyond its kind: its filter (SO_GET_FILTER fails on an eBPF
/// one, criu/sockets.c) and the queue lengths; whether they (and so UDP_CORK, criu/sk-inet.c)
/// can be read on this kernel.
#[inline(always)]
fn sock_extra<S: Mem>(sk: u64, s: &mut SockFacts) -> bool {
    if off!(sock_sk_filter) == ABSENT
        || off!(bpf_prog_orig_prog) == ABSENT
        || off!(sock_wmem_alloc) == ABSENT
    {
        return false;
    }
    let filter = S::ptr(sk, off!(sock_sk_filter));
    if filter != 0 {
        s.flags |= flags::SK_FILTER;
        let prog = S::ptr(filter, off!(sk_filter_prog));
        if prog != 0 && S::ptr(prog, off!(bpf_prog_orig_prog)) == 0 {
            s.flags |= flags::SK_FILTER_EBPF;
        }
    }
    // refcount_t starts at 1 (sk_wmem_alloc_get()).
    s.wqueue = S::read::<u32>(sk, off!(sock_wmem_alloc))
        .unwrap_or(1)
        .saturating_sub(1);
    s.rqueue = S::read::<u32>(sk, off!(sock_rmem_alloc)).unwrap_or(0);
    s.known |= known::SOCK_EXTRA;
    true
}

/// Whether the process behind a pidfd's `struct pid` is gone (`tasks[PIDTYPE_PID]` empty);
/// `None` when the layout is unknown.
#[inline(always)]
pub fn pidfd_dead<M: Mem>(file: u64, s_magic: u64, name: &[u8]) -> Option<bool> {
    let pid = pidfd_pid::<M>(file, s_magic, name)?;
    if pid == 0 || off!(pid_tasks) == ABSENT {
        return None;
    }
    Some(read_ptr(pid, off!(pid_tasks)) == 0)
}

/// The processes a `--pid` scan reports: the pid and its descendants, which `criu dump -t`
/// takes along (their files decide whether a peer is inside the dump).
#[map]
static TARGET_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(65_536, 0);

/// Whether the scan reports `task` (of process `tgid`): it passes the pid and cgroup filters.
#[inline(always)]
pub fn wanted(task: u64, tgid: u32) -> bool {
    tgid != off!(ignore_tgid)
        && (off!(flags) & FLAG_FILTER_TGIDS == 0 || unsafe { TARGET_TGIDS.get(&tgid) }.is_some())
        && in_target_cgroup(task)
}

/// Whether `task`'s fd table is its process's: the group leader's (`leader`: `task` is the
/// leader), which /proc/PID/fd lists and CRIU dumps (its parasite runs in the leader). A thread
/// that unshared its table (`unshare(CLONE_FILES)`) changes only a copy no dump sees: read as
/// the process's, its close or dup2 hid the leader's io_uring. A leader that has exited has no
/// table; then a thread's counts.
#[inline(always)]
pub fn in_process_table<M: Mem>(task: u64, leader: bool) -> bool {
    if leader {
        return true;
    }
    let group_leader = M::ptr(task, off!(task_group_leader));
    let leader_files = M::ptr(group_leader, off!(task_files));
    leader_files == 0 || M::ptr(task, off!(task_files)) == leader_files
}

/// Whether `task` is in the target cgroup (or below it); true when no cgroup is targeted.
/// The target is matched among the task's cgroup ancestors at the target's depth.
#[inline(always)]
pub fn in_target_cgroup(task: u64) -> bool {
    let target = unsafe { core::ptr::read_volatile(&raw const OFFSETS.target_cgroup) };
    if target == 0 {
        return true;
    }
    let level = off!(target_cgroup_level);
    let css_set = read_ptr(task, off!(task_cgroups));
    let cgrp = read_ptr(css_set, off!(css_set_dfl_cgrp));
    let Some(task_level) = read::<i32>(cgrp, off!(cgroup_level)) else {
        return false;
    };
    let ancestors = off!(cgroup_ancestors);
    if (task_level as u32) < level || ancestors == ABSENT {
        return false;
    }
    if off!(flags) & FLAG_CGROUP_ANCESTOR_IDS != 0 {
        return read::<u64>(cgrp, ancestors + level * 8) == Some(target);
    }
    let ancestor = read_ptr(cgrp, ancestors + level * 8);
    let kn = read_ptr(ancestor, off!(cgroup_kn));
    read::<u64>(kn, off!(kernfs_node_id)) == Some(target)
}

/// The `struct pid` a pidfd refers to (pidfs keeps it in `i_private`; before pidfs it was the
/// file's `private_data`); `None` for any other file.
#[inline(always)]
fn pidfd_pid<M: Mem>(file: u64, s_magic: u64, name: &[u8]) -> Option<u64> {
    if s_magic == PIDFS_MAGIC {
        let inode = M::ptr(file, off!(file_f_inode));
        Some(M::ptr(inode, off!(inode_i_private)))
    } else if name.len() >= 8 && name[..8] == *b"[pidfd]\0" {
        Some(M::ptr(file, off!(file_private_data)))
    } else {
        None
    }
}

/// Global pid number a pidfd refers to.
#[inline(always)]
pub fn pidfd_target<M: Mem>(file: u64, s_magic: u64, name: &[u8]) -> Option<u64> {
    let pid = pidfd_pid::<M>(file, s_magic, name)?;
    let numbers = off!(pid_numbers);
    if pid == 0 || numbers == ABSENT {
        return None;
    }
    read::<u32>(pid + numbers as u64, off!(upid_nr)).map(|nr| nr as u64)
}

/// Type of the BPF map behind a `bpf-map` anonymous inode (`private_data` is the `bpf_map`):
/// CRIU dumps only some types.
#[inline(always)]
pub fn bpf_map_type<M: Mem>(file: u64, s_magic: u64, name: &[u8]) -> Option<u64> {
    if s_magic != ANON_INODE_FS_MAGIC || name.len() < 8 || name[..8] != *b"bpf-map\0" {
        return None;
    }
    let map = M::ptr(file, off!(file_private_data));
    read::<u32>(map, off!(bpf_map_map_type)).map(|t| t as u64)
}

/// Index of the tty behind a tty character device (`private_data` is a `tty_file_private`).
#[inline(always)]
pub fn tty_index<M: Mem>(file: u64, mode: u32, rdev: u32) -> Option<u64> {
    if mode & S_IFMT != S_IFCHR {
        return None;
    }
    let major = rdev >> 20;
    // TTY_MAJOR, TTYAUX_MAJOR, UNIX98_PTY_MASTER_MAJOR.. UNIX98_PTY_SLAVE_MAJOR + 7.
    if !(major == 4 || major == 5 || (128..=143).contains(&major)) {
        return None;
    }
    let private = M::ptr(file, off!(file_private_data));
    let tty = read_ptr(private, off!(tty_private_tty));
    read::<i32>(tty, off!(tty_index)).map(|i| i as u64)
}

/// What a walk of an inode's lock lists found for one task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Locks {
    Free,
    Held,
    /// A list goes on beyond the walk, which found none of the task's locks up to there.
    Unwalked,
}

impl Locks {
    /// The outcome of a walk that ends with one list's (`list_has_owner`).
    #[inline(always)]
    fn of(found: Option<bool>) -> Self {
        match found {
            Some(true) => Self::Held,
            Some(false) => Self::Free,
            None => Self::Unwalked,
        }
    }
}

/// Walks one lock list of an inode's `file_lock_context` for at most `WALK` locks: whether a
/// lock in it belongs to one of `owners` (matched at `owner_off` in the lock; a zero owner
/// matches nothing), `None` when the list is longer than the walk. Anyone who can open the
/// file can queue locks ahead of the task's own, so an unfinished walk never reads as "no lock".
#[inline(always)]
fn list_has_owner<const WALK: u32>(head: u64, owner_off: u32, owners: [u64; 2]) -> Option<bool> {
    let link = off!(lock_list);
    if link == ABSENT {
        return Some(false);
    }
    let mut node = read_ptr(head, 0);
    for _ in 0..WALK {
        if node == 0 || node == head {
            return Some(false);
        }
        let lock = node - link as u64;
        let owner = read_ptr(lock, owner_off);
        if owner != 0 && (owner == owners[0] || owner == owners[1]) {
            return Some(true);
        }
        node = read_ptr(node, 0);
    }
    None
}

/// Whether `file` carries a lock held by this task: a flock owned by the file, a POSIX lock
/// owned by the task's files table, an OFD lock (F_OFD_SETLK: on the POSIX list, owned by the
/// open file itself, criu/file-lock.c FL_OFD), or a lease taken through the file (F_SETLEASE:
/// CRIU stops at it without --file-locks as at the others). `WALK` bounds the flock and POSIX
/// lists' walks: the verifier's work grows faster than the bound. Leases are few (one per open
/// file at most): one is looked at, more are left unwalked. `None` when the kernel's lock
/// layout is unknown.
#[inline(always)]
pub fn holds_lock<M: Mem, const WALK: u32>(file: u64, task: u64) -> Option<Locks> {
    if off!(inode_i_flctx) == ABSENT
        || off!(lock_list) == ABSENT
        || off!(flctx_flock) == ABSENT
        || off!(flctx_posix) == ABSENT
        || off!(flctx_lease) == ABSENT
    {
        return None;
    }
    let inode = M::ptr(file, off!(file_f_inode));
    let ctx = M::ptr(inode, off!(inode_i_flctx));
    if ctx == 0 {
        return Some(Locks::Free);
    }
    let flock_head = ctx + off!(flctx_flock) as u64;
    let posix_head = ctx + off!(flctx_posix) as u64;
    let files = M::ptr(task, off!(task_files));
    // One walk of the POSIX list for both of its owners: each walk costs the verifier more
    // than the rest of the program.
    let lease_head = ctx + off!(flctx_lease) as u64;
    // A list walked only in part ends the walk: user space reads the task's locks from /proc
    // then, and finds any held lock in another list too. Carried on instead, its outcome had
    // the verifier walk the POSIX list once for each combination.
    match list_has_owner::<WALK>(flock_head, off!(lock_file), [file, 0]) {
        Some(false) => {}
        found => return Some(Locks::of(found)),
    }
    match list_has_owner::<1>(lease_head, off!(lock_file), [file, 0]) {
        Some(false) => {}
        found => return Some(Locks::of(found)),
    }
    Some(Locks::of(list_has_owner::<WALK>(
        posix_head,
        off!(lock_owner),
        [files, file],
    )))
}
