//! Anonymous-inode cases: eventfd, epoll, signalfd, timerfd, inotify, fanotify, pidfd,
//! userfaultfd, io_uring, perf events, BPF maps/programs/links, landlock, memfd_secret.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::ctx::{Ctx, Held};
use crate::procs::{spawn_child, spawn_peer};
use crate::sys::{self, Error, Result, cvt, own};

pub fn eventfd_fd() -> Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers.
    own(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }, "eventfd")
}

fn epoll_fd() -> Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers.
    own(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )
}

/// Adds `target` to `epoll` for EPOLLIN.
fn epoll_add(epoll: &OwnedFd, target: &OwnedFd) -> Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: target.as_raw_fd() as u64,
    };
    // SAFETY: `event` is a valid epoll_event.
    let ret = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            target.as_raw_fd(),
            &mut event,
        )
    };
    cvt(ret, "epoll_ctl")?;
    Ok(())
}

/// An epoll (fd 3) watching the fd that `make` creates (fd 4).
fn epoll_watching(make: fn() -> Result<OwnedFd>) -> Result<Held> {
    let epoll = epoll_fd()?;
    let target = make()?;
    epoll_add(&epoll, &target)?;
    Held::fds([epoll, target])
}

/// A timerfd; armed for one hour, periodic, if `armed`.
fn timerfd(armed: bool) -> Result<OwnedFd> {
    // SAFETY: timerfd_create takes no pointers.
    let fd = own(
        unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) },
        "timerfd_create",
    )?;
    if armed {
        let hour = libc::timespec {
            tv_sec: 3600,
            tv_nsec: 0,
        };
        let spec = libc::itimerspec {
            it_interval: hour,
            it_value: hour,
        };
        // SAFETY: `spec` is valid; the old value is not wanted.
        let ret = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        cvt(ret, "timerfd_settime")?;
    }
    Ok(fd)
}

pub fn eventfd(_: &mut Ctx) -> Result<Held> {
    Held::one(eventfd_fd()?)
}

pub fn epoll_empty(_: &mut Ctx) -> Result<Held> {
    Held::one(epoll_fd()?)
}

pub fn epoll_eventfd(_: &mut Ctx) -> Result<Held> {
    epoll_watching(eventfd_fd)
}

pub fn epoll_timerfd(_: &mut Ctx) -> Result<Held> {
    epoll_watching(|| timerfd(true))
}

pub fn epoll_nested(_: &mut Ctx) -> Result<Held> {
    epoll_watching(epoll_fd)
}

/// A signalfd for SIGUSR1, which is blocked so that it queues.
pub fn signalfd(_: &mut Ctx) -> Result<Held> {
    sys::set_sigmask(libc::SIG_BLOCK, &[libc::SIGUSR1]);
    // SAFETY: the sigset is initialised before use.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    Held::one(own(fd, "signalfd")?)
}

pub fn timerfd_armed(_: &mut Ctx) -> Result<Held> {
    Held::one(timerfd(true)?)
}

pub fn timerfd_disarmed(_: &mut Ctx) -> Result<Held> {
    Held::one(timerfd(false)?)
}

fn inotify_fd() -> Result<OwnedFd> {
    // SAFETY: inotify_init1 takes no pointers.
    own(
        unsafe { libc::inotify_init1(libc::IN_CLOEXEC) },
        "inotify_init1",
    )
}

pub fn inotify_empty(_: &mut Ctx) -> Result<Held> {
    Held::one(inotify_fd()?)
}

/// Watches DIR.
pub fn inotify_watch(ctx: &mut Ctx) -> Result<Held> {
    let fd = inotify_fd()?;
    let dir = sys::cstring(&ctx.dir)?;
    let mask = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MODIFY;
    // SAFETY: `dir` is a valid C string.
    cvt(
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), dir.as_ptr(), mask) },
        "inotify_add_watch",
    )?;
    Held::one(fd)
}

/// An inotify watch on a file of an overlay (what a process in a container watches): CRIU cannot
/// reopen overlayfs handles, and the file lies outside its irmap hints.
pub fn inotify_overlay(ctx: &mut Ctx) -> Result<Held> {
    let merged = crate::files::overlay(ctx)?;
    let fd = inotify_fd()?;
    let file = sys::cstring(&merged.join("lower.txt"))?;
    // SAFETY: `file` is a valid C string.
    cvt(
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), file.as_ptr(), libc::IN_MODIFY) },
        "inotify_add_watch",
    )?;
    Held::one(fd)
}

/// FAN_CLASS_NOTIF group with an inode mark on DIR.
pub fn fanotify_mark(ctx: &mut Ctx) -> Result<Held> {
    // SAFETY: fanotify_init takes no pointers.
    let ret = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC,
            libc::O_RDONLY as u32,
        )
    };
    let fd = own(ret, "fanotify_init").map_err(|e| e.unsupported_on(&[libc::ENOSYS]))?;
    let dir = sys::cstring(&ctx.dir)?;
    let mask = libc::FAN_OPEN | libc::FAN_EVENT_ON_CHILD;
    // SAFETY: `dir` is a valid C string.
    let ret = unsafe {
        libc::fanotify_mark(
            fd.as_raw_fd(),
            libc::FAN_MARK_ADD,
            mask,
            libc::AT_FDCWD,
            dir.as_ptr(),
        )
    };
    cvt(ret, "fanotify_mark")?;
    Held::one(fd)
}

pub fn pidfd_self(ctx: &mut Ctx) -> Result<Held> {
    Held::one(sys::pidfd_open(ctx.pid)?)
}

/// The target is a child of the subject, inside its tree.
pub fn pidfd_child(ctx: &mut Ctx) -> Result<Held> {
    let child = spawn_child(ctx, &[])?;
    Held::one(sys::pidfd_open(child)?)
}

/// The target is a peer outside the subject's tree.
pub fn pidfd_ext(ctx: &mut Ctx) -> Result<Held> {
    let peer = spawn_peer(ctx, &[], |_| Ok(()))?;
    Held::one(sys::pidfd_open(peer)?)
}

/// A pidfd of the subject's own thread (PIDFD_THREAD, Linux 6.9+).
pub fn pidfd_thread(ctx: &mut Ctx) -> Result<Held> {
    const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, ctx.pid, PIDFD_THREAD) };
    Held::one(own(ret, "pidfd_open(PIDFD_THREAD)").map_err(|e| e.unsupported_on(&[libc::EINVAL]))?)
}

/// The target was a child of the subject that has exited and been reaped.
pub fn pidfd_dead(_: &mut Ctx) -> Result<Held> {
    let child = crate::procs::fork()?;
    if child == 0 {
        crate::procs::exit(0);
    }
    let fd = sys::pidfd_open(child)?;
    // SAFETY: waitpid with a null status pointer.
    cvt(
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) },
        "waitpid",
    )?;
    Held::one(fd)
}

/// An inotify watch on `path` (a procfs or sysfs inode: no file handle reopens it).
fn inotify_on(path: &str) -> Result<Held> {
    let fd = inotify_fd()?;
    let c = std::ffi::CString::new(path).map_err(|e| Error::Other(e.to_string()))?;
    // SAFETY: `c` is a valid C string.
    cvt(
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) },
        "inotify_add_watch",
    )
    .map_err(|e| e.unsupported_on(&[libc::ENOENT]))?;
    Held::one(fd)
}

pub fn inotify_procfs(_: &mut Ctx) -> Result<Held> {
    inotify_on("/proc/sys/kernel/hostname")
}

pub fn inotify_sysfs(_: &mut Ctx) -> Result<Held> {
    inotify_on("/sys/kernel/mm")
}

pub fn userfaultfd(_: &mut Ctx) -> Result<Held> {
    /// struct uffdio_api.
    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    const UFFD_API: u64 = 0xaa;
    /// _IOWR(0xaa, 0x3f, struct uffdio_api)
    const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: plain syscall with integer arguments.
    let fd = own(
        unsafe { libc::syscall(libc::SYS_userfaultfd, flags) },
        "userfaultfd",
    )
    .map_err(|e| e.unsupported_on(&[libc::ENOSYS]))?;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API takes a pointer to a uffdio_api.
    cvt(
        unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api) },
        "ioctl(UFFDIO_API)",
    )?;
    Held::one(fd)
}

/// struct io_uring_params, as filled in by io_uring_setup.
#[repr(C)]
#[derive(Default)]
pub struct IoUringParams {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    /// struct io_sqring_offsets: head, tail, ring_mask, ring_entries, flags, dropped, array.
    pub sq_off: [u32; 7],
    pub sq_off_tail: [u32; 3],
    /// struct io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow, cqes, flags.
    pub cq_off: [u32; 7],
    pub cq_off_tail: [u32; 3],
}

pub fn io_uring_setup(params: &mut IoUringParams) -> Result<OwnedFd> {
    // SAFETY: `params` is a valid io_uring_params.
    let ret =
        unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params as *mut IoUringParams) };
    own(ret, "io_uring_setup").map_err(|e| e.unsupported_on(&[libc::ENOSYS]))
}

pub fn io_uring(_: &mut Ctx) -> Result<Held> {
    Held::one(io_uring_setup(&mut IoUringParams::default())?)
}

/// perf_event_open(PERF_COUNT_SW_CPU_CLOCK) on the calling process, any CPU, disabled.
pub fn perf_event_fd() -> Result<OwnedFd> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    const DISABLED: u64 = 1;
    /// The first fields of struct perf_event_attr, padded to PERF_ATTR_SIZE_VER8.
    #[repr(C)]
    struct PerfEventAttr {
        ty: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        flags: u64,
        rest: [u64; 11],
    }
    let attr = PerfEventAttr {
        ty: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: 0, // PERF_COUNT_SW_CPU_CLOCK
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: DISABLED,
        rest: [0; 11],
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    own(ret, "perf_event_open").map_err(|e| e.unsupported_on(&[libc::ENOSYS, libc::ENOENT]))
}

pub fn perf_event(_: &mut Ctx) -> Result<Held> {
    Held::one(perf_event_fd()?)
}

/// bpf(2) with an attribute struct.
fn bpf<T>(cmd: i32, attr: &T, what: &str) -> Result<OwnedFd> {
    // SAFETY: `attr` is the repr(C) attribute struct of `cmd`, of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    own(ret, what).map_err(|e| e.unsupported_on(&[libc::ENOSYS]))
}

fn bpf_map(map_type: u32) -> Result<Held> {
    bpf_map_sized(map_type, 4, 8, 4)
}

fn bpf_map_sized(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> Result<Held> {
    const BPF_MAP_CREATE: i32 = 0;
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    let attr = MapCreate {
        map_type,
        key_size,
        value_size,
        max_entries,
    };
    Held::one(bpf(BPF_MAP_CREATE, &attr, "bpf(BPF_MAP_CREATE)")?)
}

pub fn bpf_map_hash(_: &mut Ctx) -> Result<Held> {
    bpf_map(1) // BPF_MAP_TYPE_HASH
}

pub fn bpf_map_array(_: &mut Ctx) -> Result<Held> {
    bpf_map(2) // BPF_MAP_TYPE_ARRAY
}

pub fn bpf_map_percpu_array(_: &mut Ctx) -> Result<Held> {
    bpf_map(6) // BPF_MAP_TYPE_PERCPU_ARRAY
}

/// A ring buffer has no keys or values; its size is a power-of-2 number of pages.
pub fn bpf_map_ringbuf(_: &mut Ctx) -> Result<Held> {
    bpf_map_sized(27, 0, 0, 4096) // BPF_MAP_TYPE_RINGBUF
}

/// Loads `r0 = ret; exit` as a program of `prog_type`.
fn bpf_prog_load(prog_type: u32, expected_attach_type: u32, ret: i32) -> Result<OwnedFd> {
    const BPF_PROG_LOAD: i32 = 5;
    /// The head of union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    // BPF_ALU64 | BPF_MOV | BPF_K into r0, then BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [0xb7 | (u64::from(ret as u32) << 32), 0x95];
    let attr = ProgLoad {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"fdzoo\0\0\0\0\0\0\0\0\0\0\0",
        prog_ifindex: 0,
        expected_attach_type,
    };
    bpf(BPF_PROG_LOAD, &attr, "bpf(BPF_PROG_LOAD)")
}

/// A socket filter program `r0 = 0; exit`.
pub fn socket_filter_prog() -> Result<OwnedFd> {
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, 0, 0)
}

pub fn bpf_prog(_: &mut Ctx) -> Result<Held> {
    Held::one(socket_filter_prog()?)
}

/// A cgroup-skb egress program (`r0 = 1`: let everything through) linked to a fresh,
/// empty cgroup, so that it affects no process. Only the link fd is kept.
pub fn bpf_link(ctx: &mut Ctx) -> Result<Held> {
    const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
    const BPF_CGROUP_INET_EGRESS: u32 = 1;
    const BPF_LINK_CREATE: i32 = 28;
    #[repr(C)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
    }
    let cgroup = ctx.cgroup_dir()?;
    let prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, 1)?;
    let target = sys::open(&cgroup, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_INET_EGRESS,
        flags: 0,
    };
    let link = bpf(BPF_LINK_CREATE, &attr, "bpf(BPF_LINK_CREATE)")
        .map_err(|e| e.unsupported_on(&[libc::EINVAL, libc::EOPNOTSUPP]))?;
    drop((prog, target));
    Held::one(link)
}

pub fn landlock_ruleset(_: &mut Ctx) -> Result<Held> {
    const LANDLOCK_ACCESS_FS_READ_FILE: u64 = 1 << 2;
    let handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE;
    // SAFETY: struct landlock_ruleset_attr starts with handled_access_fs; size given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &handled_access_fs as *const u64,
            8usize,
            0u32,
        )
    };
    let fd = own(ret, "landlock_create_ruleset")
        .map_err(|e| e.unsupported_on(&[libc::ENOSYS, libc::EOPNOTSUPP]))?;
    Held::one(fd)
}

pub fn memfd_secret(_: &mut Ctx) -> Result<Held> {
    // SAFETY: plain syscall with an integer argument.
    let ret = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
    let fd = own(ret, "memfd_secret").map_err(|e| e.unsupported_on(&[libc::ENOSYS]))?;
    Held::one(fd)
}
