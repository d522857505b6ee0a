//! A process that changes its fds on command, for the daemon's tests: one command per stdin
//! line, one answer per stdout line.
//!
//!   io_uring | perf_event | userfaultfd  → `fd N`      open one (close-on-exec)
//!   userfaultfd keep                     → `fd N`      one that an exec keeps
//!   userfaultfd dev                      → `fd N`      one made by /dev/userfaultfd's ioctl
//!                                                   (Linux ≥ 6.1), the device closed since
//!   close N                              → `ok`
//!   dup2 N M | dup3 N M                  → `fd M`      fd N placed at M too, over whatever M
//!                                                   held (dup3: close-on-exec)
//!   close_range N M [cloexec]            → `ok`        fds N to M closed, or only marked
//!                                                   close-on-exec (CLOSE_RANGE_CLOEXEC)
//!   thread-table N                       → `ok`        a new thread unshares its fd table
//!                                                   (CLONE_FILES), closes N in its copy, puts
//!                                                   a unix socket of a new pair there, waits
//!   map N                                → `at A`      fd N's first page mapped shared and
//!                                                   read-only (an io_uring's: its submission
//!                                                   ring)
//!   unmap A                              → `ok`        the page mapped at A unmapped
//!   fork                                 → `child P`   the child holds the same fds and waits
//!   sharer                               → `child P`   a process on this one's fd table
//!                                                   (CLONE_FILES), out of its tree
//!                                                   (CLONE_PARENT), in a session of its
//!                                                   own; it opens an io_uring (in the one
//!                                                   table) at each SIGUSR1 it gets
//!   empty-sharer                         → `pair C S`  a child C, in a session of its own,
//!                                                   with no fd open, makes such a sharer S
//!                                                   of its (empty) table, and waits
//!   after-bpf PID                        → `child P`   the child forks, once PID holds a BPF
//!                                                   map, a child that opens an io_uring
//!   exec                                 → `ready P`   re-exec itself: close-on-exec fds go
//!   thread-exec                          → `ready P`   the same from a new thread, which takes
//!                                                   the process over as the leader dies
//!   leader-exit                          → `ok`        the main thread exits alone; a new
//!                                                   thread answers from then on
//!   scm                                  → `fd N`      receive a userfaultfd over SCM_RIGHTS
//!                                                   (io_uring fds cannot be passed at all)
//!   unix PATH                            → `fd N`      a unix stream socket connected to PATH
//!   sockets N [tcp|udp|unix] [at-once]   → `ok`        N × socket()+close() (unix: pairs), TCP
//!                                                   by default; at once: N sockets open
//!                                                   together (N distinct ones), then closed
//!   tcp                                  → `fd N`      a TCP socket, not connected (CLOSE)
//!   connect N PORT [nonblocking|interrupted] → `ok`    connect fd N to 127.0.0.1:PORT, or
//!                                                   begin to: EINPROGRESS, or EINTR from a
//!                                                   signal 300 ms in (a full listener)
//!   fastopen N PORT                      → `ok`        connect fd N to 127.0.0.1:PORT by
//!                                                   sendto(MSG_FASTOPEN) of one byte: no
//!                                                   connect syscall
//!   file PATH                            → `fd N`      PATH opened read-write, created
//!   lock N                               → `ok`        a POSIX write lock on all of fd N:
//!                                                   this process's, not its children's
//!   flock N                              → `ok`        an exclusive flock on fd N
//!   unlock N                             → `ok`        fd N's POSIX lock and flock dropped
//!   lease N                              → `ok`        a write lease on fd N (F_SETLEASE): no
//!                                                   other open of its file may exist
//!   pipe                                 → `fd N`      a pipe's write end (its read end stays
//!                                                   open too)
//!   int80 NR BX CX DX DI                 → `ret N`     i386's syscall NR through int 0x80, the
//!                                                   compat ABI any process may use, with DI
//!                                                   set too (N: its return, -errno on error)
//!   int80 probe                          → `compat B`  whether this kernel runs compat syscalls
//!                                                   (a child tries one: without them it dies)
//!   listen PATH                          → `fd N`      a unix stream socket listening at PATH
//!   socketcall accept N                  → `fd M`      i386's socketcall(SYS_ACCEPT) on fd N
//!                                                   (rbx's upper half set, as i386 ignores)
//!   socketcall connect N PORT            → `ok`        i386's socketcall(SYS_CONNECT) of fd N
//!                                                   to 127.0.0.1:PORT
//!   socketcall socketpair                → `fd M`      i386's socketcall(SYS_SOCKETPAIR): a unix
//!                                                   stream pair, whose fds i386 writes to memory
//!
//! It exits when stdin closes; children die with it (PR_SET_PDEATHSIG).

use std::io::Write;
use std::os::fd::{IntoRawFd, RawFd};

/// x86_64's page size: what `map` maps.
const PAGE: usize = 4096;

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn check(ret: i64, what: &str) -> Result<RawFd, String> {
    if ret < 0 {
        Err(format!("{what}: {}", errno()))
    } else {
        Ok(ret as RawFd)
    }
}

fn set_cloexec(fd: RawFd) -> Result<RawFd, String> {
    // SAFETY: fcntl on an fd this process owns.
    check(
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } as i64,
        "fcntl",
    )?;
    Ok(fd)
}

fn io_uring() -> Result<RawFd, String> {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup with a zeroed params struct of the kernel's size.
    let fd = check(
        unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) },
        "io_uring_setup",
    )?;
    set_cloexec(fd)
}

/// From <linux/perf_event.h>; the libc crate does not export it.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

fn perf_event() -> Result<RawFd, String> {
    // struct perf_event_attr: type SOFTWARE(1), size, config CPU_CLOCK(0); 128 bytes is enough.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    // SAFETY: perf_event_open on this process, any CPU, with a valid attr buffer.
    let fd = check(
        unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                0,
                -1,
                -1,
                PERF_FLAG_FD_CLOEXEC,
            )
        },
        "perf_event_open",
    )?;
    Ok(fd)
}

fn userfaultfd(cloexec: bool) -> Result<RawFd, String> {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: userfaultfd with flags only.
    check(
        unsafe { libc::syscall(libc::SYS_userfaultfd, flags) },
        "userfaultfd",
    )
}

/// A userfaultfd from `ioctl(USERFAULTFD_IOC_NEW)` on /dev/userfaultfd, which is closed again:
/// no syscall that makes fds made this one.
fn userfaultfd_by_ioctl() -> Result<RawFd, String> {
    const USERFAULTFD_IOC_NEW: libc::c_ulong = 0xaa00;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/userfaultfd")
        .map_err(|e| format!("open /dev/userfaultfd: {e}"))?;
    // SAFETY: the request takes the new fd's flags as its argument.
    let fd = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&dev),
            USERFAULTFD_IOC_NEW,
            libc::O_CLOEXEC,
        )
    };
    check(fd as i64, "USERFAULTFD_IOC_NEW")
}

fn file(path: &str) -> Result<RawFd, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))?;
    Ok(file.into_raw_fd())
}

/// `l_type` over all of `fd`: F_WRLCK takes a POSIX lock, F_UNLCK drops it. The command goes
/// with its upper half set, as any caller may: the kernel reads an unsigned int.
fn posix_lock_as(fd: RawFd, l_type: i32) -> Result<(), String> {
    // SAFETY: an all-zero flock is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = l_type as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    let cmd = libc::F_SETLK as i64 | 1 << 32;
    // SAFETY: fcntl on an fd the test chose, with a flock that lives across the call.
    check(
        unsafe { libc::syscall(libc::SYS_fcntl, fd as i64, cmd, &raw const lock) },
        "fcntl(F_SETLK)",
    )
    .map(|_| ())
}

fn flock(fd: RawFd, operation: i32) -> Result<(), String> {
    // SAFETY: flock on an fd the test chose.
    check(unsafe { libc::flock(fd, operation) } as i64, "flock").map(|_| ())
}

fn pipe() -> Result<RawFd, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) } as i64, "pipe")?;
    Ok(fds[1])
}

/// i386's syscall `nr` through int 0x80 with arguments `bx`, `cx`, `dx`, and `di` set as given:
/// i386's fifth argument, and what a reader of the native ABI would take for the first.
#[cfg(target_arch = "x86_64")]
fn int80(nr: i64, bx: u64, cx: u64, dx: u64, di: u64) -> i64 {
    let ret: i64;
    // SAFETY: a syscall the test chose; rbx (reserved by LLVM) is swapped in and restored, and
    // the compat entry zeroes r8-r11 on its way back.
    unsafe {
        std::arch::asm!(
            "xchg {bx}, rbx",
            "int 0x80",
            "xchg {bx}, rbx",
            bx = inout(reg) bx => _,
            inout("rax") nr => ret,
            in("rcx") cx,
            in("rdx") dx,
            in("rdi") di,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    ret
}

/// Whether a compat syscall (i386's getpid, 20) runs here: tried in a child, which a kernel
/// without IA32 emulation kills.
#[cfg(target_arch = "x86_64")]
fn compat_syscalls_run() -> Result<bool, String> {
    // SAFETY: the child only makes a syscall and exits.
    let child = check(unsafe { libc::fork() } as i64, "fork")?;
    if child == 0 {
        let ok = int80(20, 0, 0, 0, 0) > 0;
        // SAFETY: ending the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    check(
        unsafe { libc::waitpid(child, &mut status, 0) } as i64,
        "waitpid",
    )?;
    Ok(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
}

/// i386's socketcall(`call`, args): the arguments, and what they point to, in a page below
/// 4 GiB, where i386's 32-bit pointers reach. Returns the syscall's return and the two ints the
/// call may have written after the arguments.
#[cfg(target_arch = "x86_64")]
/// An argument of [`socketcall`] that stands for the address of its data.
const DATA: u32 = u32::MAX;

/// i386's socketcall `call` with `args`, its fourth argument the address where a socketpair
/// writes, and `data` there before the call.
fn socketcall(call: u64, args: [u32; 3], data: &[u8]) -> Result<(i64, [i32; 2]), String> {
    const SYS_SOCKETCALL: i64 = 102;
    // SAFETY: a fresh anonymous page, unmapped below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("mmap(MAP_32BIT): {}", errno()));
    }
    let words = page.cast::<u32>();
    // Four argument words, then the two ints a socketpair writes, or the data.
    let out = page as u64 + 16;
    if data.len() > 4096 - 16 {
        return Err("socketcall: data beyond the page".into());
    }
    // SAFETY: within the page just mapped.
    unsafe {
        for (i, a) in args.into_iter().enumerate() {
            words.add(i).write(if a == DATA { out as u32 } else { a });
        }
        words.add(3).write(out as u32);
        std::ptr::copy_nonoverlapping(data.as_ptr(), out as *mut u8, data.len());
    }
    // The call's upper half set, which i386 cannot see.
    let ret = int80(SYS_SOCKETCALL, call | 1 << 32, page as u64, 0, 0);
    // SAFETY: the page is still mapped; unmapping it ends its use.
    let written = unsafe { [*words.add(4) as i32, *words.add(5) as i32] };
    unsafe { libc::munmap(page, 4096) };
    Ok((ret, written))
}

/// In a new thread: its own copy of the fd table, where fd `n` is closed and then holds a
/// unix socket.
fn own_table(n: RawFd) -> Result<(), String> {
    // SAFETY: unshares this thread's fd table; the process's is left as it was.
    check(
        unsafe { libc::unshare(libc::CLONE_FILES) } as i64,
        "unshare(CLONE_FILES)",
    )?;
    // SAFETY: closes fd `n` in this thread's copy only.
    check(unsafe { libc::close(n) } as i64, "close")?;
    let mut pair = [0; 2];
    // SAFETY: a new pair written to `pair`.
    check(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) } as i64,
        "socketpair",
    )?;
    // SAFETY: fd numbers of this thread's copy.
    check(unsafe { libc::dup2(pair[0], n) } as i64, "dup2").map(|_| ())
}

fn wait_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// A child that runs `body`, then waits; it dies with this process.
fn fork_child(body: impl FnOnce()) -> Result<i32, String> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only calls async-signal-safe functions before waiting.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(format!("fork: {}", errno())),
        0 => {
            // SAFETY: prctl with constant arguments, getppid and _exit take none that matter.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The parent may have died before the prctl: nothing would kill us then.
                if libc::getppid() != parent {
                    libc::_exit(0);
                }
            }
            body();
            wait_forever()
        }
        child => Ok(child),
    }
}

/// A [`command`] `sharer`. It leaves once this process is gone (reaped), or the thread that
/// started this process (its parent too) is. It opens nothing else: each file it opened in
/// the shared table would ask the daemon for a rescan.
fn sharer() -> Result<i32, String> {
    // SAFETY: getpid has no preconditions.
    let creator = unsafe { libc::getpid() };
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which fills it.
    let mut usr1: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset_t pointers. Blocked before the clone: no SIGUSR1 comes before the
    // child waits for it.
    unsafe {
        libc::sigemptyset(&mut usr1);
        libc::sigaddset(&mut usr1, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &usr1, &mut before);
    }
    let flags = (libc::CLONE_FILES | libc::CLONE_PARENT | libc::SIGCHLD) as u64;
    // SAFETY: without CLONE_VM the child runs on a copy of this stack, as after fork.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0u64, 0u64, 0u64, 0u64) };
    if pid != 0 {
        // SAFETY: restoring the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
        return check(pid, "clone(CLONE_FILES | CLONE_PARENT)");
    }
    // SAFETY: setsid and prctl with constant arguments.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    loop {
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: valid pointers; the siginfo is not asked for.
        let sig = unsafe { libc::sigtimedwait(&usr1, std::ptr::null_mut(), &tick) };
        if sig == libc::SIGUSR1 {
            // Left open: a raw fd, in the table both processes use.
            let _ = io_uring();
        }
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(creator, 0) } != 0 {
            // SAFETY: leaving the child without running the creator's destructors.
            unsafe { libc::_exit(0) }
        }
    }
}

/// A [`command`] `empty-sharer`: the sharer's pid comes back over a pipe, whose end in the
/// shared table is closed after, leaving it empty.
fn empty_sharer() -> Result<(i32, i32), String> {
    let mut ends = [0; 2];
    // SAFETY: a valid int[2].
    check(unsafe { libc::pipe(ends.as_mut_ptr()) } as i64, "pipe")?;
    let [read, write] = ends;
    let child = fork_child(|| {
        // SAFETY: setsid has no preconditions; close_range over fd numbers of this child only.
        unsafe {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 0u32, (write - 1) as u32, 0u32);
            libc::syscall(libc::SYS_close_range, (write + 1) as u32, u32::MAX, 0u32);
        }
        let pid = sharer().unwrap_or(-1);
        // SAFETY: the pid's bytes to the pipe, then its last fd closed, in both processes.
        unsafe {
            libc::write(write, (&raw const pid).cast(), size_of::<i32>());
            libc::close(write);
        }
    })?;
    // SAFETY: the write end is the child's now; the pid's bytes into a local.
    let mut pid = -1i32;
    let got = unsafe {
        libc::close(write);
        let got = libc::read(read, (&raw mut pid).cast(), size_of::<i32>());
        libc::close(read);
        got
    };
    if got != size_of::<i32>() as isize || pid <= 0 {
        return Err("empty-sharer: no sharer pid from the child".into());
    }
    Ok((child, pid))
}

/// Once process `scanner` holds a BPF map (it has listed what it will scan and is loading its
/// programs), forks a child that opens an io_uring and waits: a process new to the tree
/// between a scanner's listing and its iteration. Leaves if `scanner` exits first.
fn after_bpf(scanner: u32) {
    let fds = format!("/proc/{scanner}/fd");
    loop {
        let Ok(entries) = std::fs::read_dir(&fds) else {
            // SAFETY: leaving a forked child without running destructors.
            unsafe { libc::_exit(0) }
        };
        let holds_map = entries.flatten().any(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:bpf-map")
        });
        if holds_map {
            break;
        }
        // SAFETY: usleep takes no pointers.
        unsafe { libc::usleep(200) };
    }
    // The io_uring stays open: a raw fd, closed by no destructor.
    if fork_child(|| {
        let _ = io_uring();
    })
    .is_err()
    {
        // SAFETY: leaving a forked child without running destructors.
        unsafe { libc::_exit(1) }
    }
}

/// Receives a userfaultfd that a child created and sent over a unix socket.
fn scm() -> Result<RawFd, String> {
    let mut sv = [0 as RawFd; 2];
    // SAFETY: socketpair writes two fds to sv.
    check(
        unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                sv.as_mut_ptr(),
            )
        } as i64,
        "socketpair",
    )?;
    // SAFETY: the child sends one fd and exits without returning into Rust code paths.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", errno())),
        0 => {
            let code = match userfaultfd(true).and_then(|fd| send_fd(sv[1], fd)) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        child => {
            // Only the child keeps the sending end: if it fails, recvmsg sees EOF, not a hang.
            // SAFETY: closing and reaping what this process owns.
            unsafe { libc::close(sv[1]) };
            let fd = recv_fd(sv[0]);
            unsafe {
                libc::waitpid(child, std::ptr::null_mut(), 0);
                libc::close(sv[0]);
            }
            fd
        }
    }
}

const CMSG_SPACE: usize = 24; // CMSG_SPACE(sizeof(int)) on 64-bit Linux

/// One data byte and room for one fd: the buffers an SCM_RIGHTS message points to.
struct FdMessage {
    data: [u8; 1],
    iov: libc::iovec,
    control: [u8; CMSG_SPACE],
}

impl FdMessage {
    fn new() -> Box<Self> {
        let mut m = Box::new(FdMessage {
            data: [0],
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 1,
            },
            control: [0; CMSG_SPACE],
        });
        m.iov.iov_base = m.data.as_mut_ptr().cast();
        m
    }

    /// A msghdr pointing into `self`, valid while `self` lives (it is boxed: it does not move).
    fn header(&mut self) -> libc::msghdr {
        // SAFETY: an all-zero msghdr is valid; its pointers are set to buffers of `self`.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut self.iov;
        msg.msg_iovlen = 1;
        msg.msg_control = self.control.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_SPACE;
        msg
    }
}

fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), String> {
    let mut buffers = FdMessage::new();
    let msg = buffers.header();
    // SAFETY: the cmsg is built in place inside `buffers`, which outlives the sendmsg call.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        check(libc::sendmsg(sock, &msg, 0) as i64, "sendmsg")?;
    }
    Ok(())
}

fn recv_fd(sock: RawFd) -> Result<RawFd, String> {
    let mut buffers = FdMessage::new();
    let mut msg = buffers.header();
    // SAFETY: recvmsg fills `buffers`; the received fd is read from the first cmsg.
    unsafe {
        check(
            libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as i64,
            "recvmsg",
        )?;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err("recvmsg: no fd received".into());
        }
        Ok(std::ptr::read_unaligned(
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
        ))
    }
}

/// The daemon drops UDP sockets in the kernel once it has seen one, and TCP ones while they
/// are closed (as socket() makes them); unix socket pairs always reach it (their peers decide).
fn sockets(n: u32, kind: &str, at_once: bool) -> Result<(), String> {
    let sk_type = match kind {
        "tcp" => libc::SOCK_STREAM,
        "udp" => libc::SOCK_DGRAM,
        "unix" => return unix_pairs(n),
        _ => return Err(format!("sockets: unknown kind {kind}")),
    };
    // SAFETY: socket() of our own.
    let socket = || {
        check(
            unsafe { libc::socket(libc::AF_INET, sk_type, 0) } as i64,
            "socket",
        )
    };
    // SAFETY: closes of fds socket() gave us.
    let close = |fd| unsafe { libc::close(fd) };
    if at_once {
        // A socket freed is where the next one is made: only sockets open together are many.
        let fds = (0..n).map(|_| socket()).collect::<Result<Vec<_>, _>>()?;
        for fd in fds {
            close(fd);
        }
        return Ok(());
    }
    for _ in 0..n {
        close(socket()?);
    }
    Ok(())
}

fn unix_pairs(n: u32) -> Result<(), String> {
    for _ in 0..n {
        let mut pair = [0; 2];
        // SAFETY: socketpair into a valid [c_int; 2], then close of our own fds.
        let ret =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
        check(ret as i64, "socketpair")?;
        unsafe {
            libc::close(pair[0]);
            libc::close(pair[1]);
        }
    }
    Ok(())
}

fn tcp() -> Result<RawFd, String> {
    // SAFETY: plain socket().
    check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) } as i64,
        "socket",
    )
}

/// 127.0.0.1:`port`.
fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: all zeroes is a valid sockaddr_in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    addr
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// How a connect returns while its handshake goes on.
#[derive(PartialEq)]
enum Connect {
    /// Once connected (or refused).
    Blocking,
    /// At once, EINPROGRESS, as event loops connect.
    Nonblocking,
    /// Interrupted by a signal 300 ms in, EINTR (the listener's queue must be full).
    Interrupted,
}

/// Connects `fd` to 127.0.0.1:`port`.
fn connect(fd: RawFd, port: u16, how: Connect) -> Result<(), String> {
    if how == Connect::Nonblocking {
        // SAFETY: fcntl on an fd the test chose.
        check(
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } as i64,
            "fcntl(O_NONBLOCK)",
        )?;
    }
    if how == Connect::Interrupted {
        // SAFETY: a handler that does nothing, without SA_RESTART, so that the connect
        // returns EINTR; then a one-shot timer.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as *const () as usize;
            check(
                libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) as i64,
                "sigaction",
            )?;
            let timer = libc::itimerval {
                it_interval: libc::timeval {
                    tv_sec: 0,
                    tv_usec: 0,
                },
                it_value: libc::timeval {
                    tv_sec: 0,
                    tv_usec: 300_000,
                },
            };
            check(
                libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) as i64,
                "setitimer",
            )?;
        }
    }
    let addr = loopback(port);
    // SAFETY: addr is a fully initialised sockaddr_in of the size passed.
    let ret = unsafe {
        libc::connect(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let expected = match how {
        Connect::Blocking => return check(ret as i64, "connect").map(drop),
        Connect::Nonblocking => libc::EINPROGRESS,
        Connect::Interrupted => libc::EINTR,
    };
    match (ret, errno().raw_os_error()) {
        (r, Some(e)) if r < 0 && e == expected => Ok(()),
        (r, _) if r < 0 => Err(format!("connect: {}", errno())),
        _ => Err(format!(
            "connect: returned at once, not with errno {expected}"
        )),
    }
}

/// A unix stream socket connected to a listener someone else holds (close-on-exec).
fn unix(path: &str) -> Result<RawFd, String> {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("connect {path}: {e}"))?;
    Ok(stream.into_raw_fd())
}

fn reexec() -> Result<(), String> {
    let exe = std::ffi::CString::new("/proc/self/exe").expect("no NUL");
    let argv = [exe.as_ptr(), std::ptr::null()];
    // SAFETY: execv with a NUL-terminated argv; only returns on failure.
    unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
    Err(format!("execv: {}", errno()))
}

fn command(line: &str) -> Result<String, String> {
    let mut words = line.split_whitespace();
    let fd = |r: Result<RawFd, String>| r.map(|fd| format!("fd {fd}"));
    match (words.next(), words.next()) {
        (Some("io_uring"), _) => fd(io_uring()),
        (Some("perf_event"), _) => fd(perf_event()),
        (Some("userfaultfd"), Some("dev")) => fd(userfaultfd_by_ioctl()),
        (Some("userfaultfd"), keep) => fd(userfaultfd(keep != Some("keep"))),
        (Some("scm"), _) => fd(scm()),
        (Some("unix"), Some(path)) => fd(unix(path)),
        (Some("tcp"), _) => fd(tcp()),
        (Some("file"), Some(path)) => fd(file(path)),
        (Some("pipe"), _) => fd(pipe()),
        (Some("listen"), Some(path)) => fd(std::os::unix::net::UnixListener::bind(path)
            .map(IntoRawFd::into_raw_fd)
            .map_err(|e| format!("listen {path}: {e}"))),
        #[cfg(target_arch = "x86_64")]
        (Some("socketcall"), Some(call)) => {
            const SYS_CONNECT: u64 = 3;
            const SYS_ACCEPT: u64 = 5;
            const SYS_SOCKETPAIR: u64 = 8;
            let mut n = || -> Result<u32, String> {
                let w = words.next().ok_or(format!("socketcall {call}: a number"))?;
                w.parse()
                    .map_err(|_| format!("socketcall {call}: bad number {w}"))
            };
            let (ret, pair) = match call {
                "accept" => socketcall(SYS_ACCEPT, [n()?, 0, 0], &[])?,
                "connect" => {
                    let (fd, port) = (n()?, n()?);
                    let addr = loopback(port.try_into().map_err(|_| "socketcall: bad port")?);
                    // SAFETY: a plain-integer struct, read as its bytes.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            (&raw const addr).cast::<u8>(),
                            size_of::<libc::sockaddr_in>(),
                        )
                    };
                    let len = size_of::<libc::sockaddr_in>() as u32;
                    socketcall(SYS_CONNECT, [fd, DATA, len], bytes)?
                }
                "socketpair" => socketcall(
                    SYS_SOCKETPAIR,
                    [libc::AF_UNIX as u32, libc::SOCK_STREAM as u32, 0],
                    &[],
                )?,
                _ => return Err(format!("socketcall: unknown call {call}")),
            };
            if ret < 0 {
                return Err(format!("socketcall {call}: errno {}", -ret));
            }
            Ok(match call {
                "accept" => format!("fd {}", ret as i32),
                "connect" => "ok".into(),
                _ => format!("fd {}", pair[0]),
            })
        }
        #[cfg(target_arch = "x86_64")]
        (Some("int80"), Some("probe")) => {
            compat_syscalls_run().map(|b| format!("compat {}", if b { "yes" } else { "no" }))
        }
        #[cfg(target_arch = "x86_64")]
        (Some("int80"), Some(nr)) => {
            let nr = nr.parse().map_err(|_| format!("int80: bad number {nr}"))?;
            let mut arg = || -> Result<u64, String> {
                let w = words.next().ok_or("int80: NR BX CX DX DI")?;
                w.parse().map_err(|_| format!("int80: bad argument {w}"))
            };
            let (bx, cx, dx, di) = (arg()?, arg()?, arg()?, arg()?);
            Ok(format!("ret {}", int80(nr, bx, cx, dx, di)))
        }
        (Some(op @ ("lock" | "flock" | "unlock" | "lease")), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("{op}: bad fd {n}"))?;
            match op {
                "lock" => posix_lock_as(n, libc::F_WRLCK),
                "flock" => flock(n, libc::LOCK_EX),
                // SAFETY: F_SETLEASE on an fd the test chose.
                "lease" => check(
                    unsafe { libc::fcntl(n, libc::F_SETLEASE, libc::F_WRLCK) } as i64,
                    "fcntl(F_SETLEASE)",
                )
                .map(|_| ()),
                _ => posix_lock_as(n, libc::F_UNLCK).and_then(|_| flock(n, libc::LOCK_UN)),
            }
            .map(|_| "ok".into())
        }
        (Some("connect"), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("connect: bad fd {n}"))?;
            let port = words
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or("connect: a port")?;
            let how = match words.next() {
                None => Connect::Blocking,
                Some("nonblocking") => Connect::Nonblocking,
                Some("interrupted") => Connect::Interrupted,
                Some(w) => return Err(format!("connect: unknown way {w}")),
            };
            connect(n, port, how).map(|_| "ok".into())
        }
        (Some("fastopen"), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("fastopen: bad fd {n}"))?;
            let port: u16 = words
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or("fastopen: a port")?;
            let addr = loopback(port);
            // SAFETY: one byte from a static, to a fully initialised sockaddr_in of the size
            // passed.
            let ret = unsafe {
                libc::sendto(
                    n,
                    b"x".as_ptr().cast(),
                    1,
                    libc::MSG_FASTOPEN,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            check(ret as i64, "sendto(MSG_FASTOPEN)").map(|_| "ok".into())
        }
        (Some("close"), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("close: bad fd {n}"))?;
            // SAFETY: closing an fd number the test chose.
            check(unsafe { libc::close(n) } as i64, "close").map(|_| "ok".into())
        }
        (Some(op @ ("dup2" | "dup3")), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("{op}: bad fd {n}"))?;
            let m: RawFd = words
                .next()
                .and_then(|m| m.parse().ok())
                .ok_or(format!("{op}: a target fd"))?;
            // SAFETY: fd numbers the test chose; M's old file, if any, is closed by the call.
            let ret = unsafe {
                if op == "dup2" {
                    libc::dup2(n, m)
                } else {
                    libc::dup3(n, m, libc::O_CLOEXEC)
                }
            };
            check(ret as i64, op).map(|fd| format!("fd {fd}"))
        }
        (Some("close_range"), Some(n)) => {
            let fd = |w: Option<&str>| {
                w.and_then(|w| w.parse::<u32>().ok())
                    .ok_or("close_range: N M [cloexec]")
            };
            let (first, last) = (fd(Some(n))?, fd(words.next())?);
            let flags = match words.next() {
                None => 0,
                Some("cloexec") => libc::CLOSE_RANGE_CLOEXEC,
                Some(w) => return Err(format!("close_range: unknown flag {w}")),
            };
            // SAFETY: closes (or marks) fd numbers the test chose.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
            check(ret, "close_range").map(|_| "ok".into())
        }
        (Some("thread-table"), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("thread-table: bad fd {n}"))?;
            let (done_tx, done) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done_tx.send(own_table(n));
                loop {
                    std::thread::park();
                }
            });
            done.recv()
                .map_err(|_| "thread-table: the thread died".to_string())?
                .map(|_| "ok".into())
        }
        (Some("map"), Some(n)) => {
            let n: RawFd = n.parse().map_err(|_| format!("map: bad fd {n}"))?;
            // SAFETY: a new shared mapping of a page of fd N; nothing here reads it.
            let at = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PAGE,
                    // Read-only: a TCP socket refuses a writable mapping (tcp_mmap).
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    n,
                    0,
                )
            };
            if at == libc::MAP_FAILED {
                return Err(format!("map: {}", errno()));
            }
            Ok(format!("at {:x}", at as usize))
        }
        (Some("unmap"), Some(at)) => {
            let at =
                usize::from_str_radix(at, 16).map_err(|_| format!("unmap: bad address {at}"))?;
            // SAFETY: unmaps what `map` mapped at the address it said.
            check(
                unsafe { libc::munmap(at as *mut libc::c_void, PAGE) } as i64,
                "munmap",
            )
            .map(|_| "ok".into())
        }
        (Some("fork"), _) => fork_child(|| {}).map(|p| format!("child {p}")),
        (Some("sharer"), _) => sharer().map(|p| format!("child {p}")),
        (Some("empty-sharer"), _) => empty_sharer().map(|(c, s)| format!("pair {c} {s}")),
        (Some("after-bpf"), Some(pid)) => {
            let pid = pid
                .parse()
                .map_err(|_| format!("after-bpf: bad pid {pid}"))?;
            fork_child(|| after_bpf(pid)).map(|p| format!("child {p}"))
        }
        (Some("sockets"), Some(n)) => {
            let n = n.parse().map_err(|_| format!("sockets: bad count {n}"))?;
            let kind = words.next().unwrap_or("tcp");
            sockets(n, kind, words.next() == Some("at-once")).map(|_| "ok".into())
        }
        (Some("exec"), _) => reexec().map(|_| unreachable!("execv returned Ok")),
        (Some("thread-exec"), _) => {
            let exec = std::thread::spawn(reexec);
            // Only a failed exec returns: the leader dies in a successful one.
            exec.join()
                .map_err(|_| "thread-exec: the thread panicked".to_string())?
                .map(|_| unreachable!("execv returned Ok"))
        }
        (Some("leader-exit"), _) => {
            say("ok");
            std::thread::spawn(serve);
            // SAFETY: ends this thread alone; the process lives on in the one just started,
            // and nothing of this thread's is borrowed by it.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!("SYS_exit returned")
        }
        _ => Err(format!("unknown command `{line}`")),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Answers commands until stdin closes. Stdin and stdout are locked per line, never across a
/// command: `leader-exit` ends the thread serving, and a lock it held would never be freed.
fn serve() {
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) => {}
        }
        let reply = command(line.trim()).unwrap_or_else(|e| format!("error {e}"));
        say(&reply);
    }
}

fn main() {
    // SAFETY: setsid has no preconditions; failing (already a leader) is fine.
    unsafe { libc::setsid() };
    say(&format!("ready {}", std::process::id()));
    serve();
}
