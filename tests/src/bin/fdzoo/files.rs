//! Cases of files with a path: regular files on various filesystems, deleted files,
//! directories, /proc and /sys files, locks, pipes and FIFOs, memfds, mount-API fds.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::ctx::{Ctx, Held, fill_file};
use crate::fuse;
use crate::sys::{self, Error, Result, cvt, own};

/// Where the `stdio` case points its stdout and stderr.
pub const STDIO_LOG: &str = "stdio.log";

/// `none` and `noshell`: nothing beyond stdio, which is closed after READY.
pub fn no_fds(_: &mut Ctx) -> Result<Held> {
    Held::nothing()
}

/// `stdio`: the log file that stdout and stderr are moved to after READY.
pub fn stdio(ctx: &mut Ctx) -> Result<Held> {
    ctx.create_file(STDIO_LOG, 0)?;
    Held::nothing()
}

pub fn reg_ext4(ctx: &mut Ctx) -> Result<Held> {
    let path = ctx.create_file("reg.txt", 16)?;
    Held::one(sys::open(path, libc::O_RDWR)?)
}

pub fn reg_opath(ctx: &mut Ctx) -> Result<Held> {
    let path = ctx.create_file("reg.txt", 16)?;
    Held::one(sys::open(path, libc::O_PATH)?)
}

pub fn reg_tmpfs(ctx: &mut Ctx) -> Result<Held> {
    let mnt = ctx.subdir("tmpfs")?;
    ctx.mount("tmpfs", &mnt, "size=1m,mode=0755")?;
    let fd = fill_file(&mnt.join("reg.txt"), 16)?;
    Held::one(fd)
}

/// Mounts an overlay at `DIR/ovl/merged` whose lower layer holds `lower.txt` and
/// `upper.txt`; returns the merged directory.
pub fn overlay(ctx: &mut Ctx) -> Result<std::path::PathBuf> {
    let root = ctx.subdir("ovl")?;
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| root.join(d));
    for dir in [&lower, &upper, &work, &merged] {
        std::fs::create_dir(dir)
            .map_err(|e| Error::Other(format!("mkdir {}: {e}", dir.display())))?;
    }
    fill_file(&lower.join("lower.txt"), 16)?;
    fill_file(&lower.join("upper.txt"), 16)?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    ctx.mount("overlay", &merged, &data)?;
    Ok(merged)
}

pub fn reg_overlay_lower_ro(ctx: &mut Ctx) -> Result<Held> {
    let merged = overlay(ctx)?;
    Held::one(sys::open(merged.join("lower.txt"), libc::O_RDONLY)?)
}

/// Opening for writing copies the file up to the upper layer.
pub fn reg_overlay_upper_rw(ctx: &mut Ctx) -> Result<Held> {
    let merged = overlay(ctx)?;
    Held::one(sys::open(merged.join("upper.txt"), libc::O_RDWR)?)
}

pub fn reg_fuse(ctx: &mut Ctx) -> Result<Held> {
    let mnt = ctx.subdir("fuse")?;
    fuse::serve_hello(ctx, &mnt)?;
    Held::one(sys::open(mnt.join(fuse::HELLO), libc::O_RDONLY)?)
}

/// An open file of `len` bytes whose only name was unlinked.
fn deleted(ctx: &mut Ctx, prefix: &str, len: usize) -> Result<Held> {
    let name = ctx.numbered(prefix);
    let path = ctx.file(&name);
    let fd = fill_file(&path, len)?;
    unlink(&path)?;
    Held::one(fd)
}

pub fn reg_deleted_small(ctx: &mut Ctx) -> Result<Held> {
    deleted(ctx, "reg_deleted_small", 4096)
}

pub fn reg_deleted_big(ctx: &mut Ctx) -> Result<Held> {
    deleted(ctx, "reg_deleted_big", 2 << 20)
}

/// `dl-a.N` opened, hard-linked as `dl-b.N`, then unlinked.
pub fn reg_deleted_linked(ctx: &mut Ctx) -> Result<Held> {
    let (a, b) = (ctx.numbered("dl-a"), ctx.numbered("dl-b"));
    let (a, b) = (ctx.file(&a), ctx.file(&b));
    let fd = fill_file(&a, 16)?;
    std::fs::hard_link(&a, &b).map_err(|e| Error::Other(format!("link {}: {e}", b.display())))?;
    unlink(&a)?;
    Held::one(fd)
}

fn unlink(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::Other(format!("unlink {}: {e}", path.display())))
}

pub fn dir(ctx: &mut Ctx) -> Result<Held> {
    let dir = ctx.subdir("dir")?;
    Held::one(sys::open(dir, libc::O_RDONLY | libc::O_DIRECTORY)?)
}

fn read_only(path: &str) -> Result<Held> {
    Held::one(sys::open(path, libc::O_RDONLY)?)
}

pub fn proc_self_status(_: &mut Ctx) -> Result<Held> {
    read_only("/proc/self/status")
}

pub fn proc_pid1_status(_: &mut Ctx) -> Result<Held> {
    read_only("/proc/1/status")
}

pub fn proc_sys_file(_: &mut Ctx) -> Result<Held> {
    read_only("/proc/sys/kernel/ostype")
}

pub fn sys_file(_: &mut Ctx) -> Result<Held> {
    read_only("/sys/kernel/mm/transparent_hugepage/enabled")
        .map_err(|e| e.unsupported_on(&[libc::ENOENT]))
}

pub fn nsfs_own_net(_: &mut Ctx) -> Result<Held> {
    read_only("/proc/self/ns/net")
}

/// A detached bind mount of `DIR/tree`, made with open_tree(OPEN_TREE_CLONE).
pub fn open_tree_clone(ctx: &mut Ctx) -> Result<Held> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let tree = sys::cstring(&ctx.subdir("tree")?)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: `tree` is a valid C string.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, tree.as_ptr(), flags) };
    Held::one(own(ret, "open_tree").map_err(|e| e.unsupported_on(&[libc::ENOSYS]))?)
}

pub fn fsopen_ctx(_: &mut Ctx) -> Result<Held> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    // SAFETY: the fs name is a valid C string.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) };
    Held::one(own(ret, "fsopen").map_err(|e| e.unsupported_on(&[libc::ENOSYS]))?)
}

pub fn flock_ex(ctx: &mut Ctx) -> Result<Held> {
    let fd = fill_file(&ctx.file("lock-flock"), 16)?;
    // SAFETY: flock on an owned fd.
    cvt(
        unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) },
        "flock",
    )?;
    Held::one(fd)
}

pub fn posix_lock(ctx: &mut Ctx) -> Result<Held> {
    let fd = fill_file(&ctx.file("lock-posix"), 16)?;
    // Locked only once placed: renumbering closes copies of the fd, which drops POSIX locks.
    Ok(Held {
        after_place: Some(set_posix_lock),
        ..Held::one(fd)?
    })
}

fn set_posix_lock(fd: RawFd) -> Result<()> {
    // SAFETY: an all-zero flock is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: F_SETLK with a valid flock pointer.
    cvt(
        unsafe { libc::fcntl(fd, libc::F_SETLK, &lock) },
        "fcntl(F_SETLK)",
    )?;
    Ok(())
}

/// An open-file-description lock (F_OFD_SETLK): owned by the open file, not the process.
pub fn ofd_lock(ctx: &mut Ctx) -> Result<Held> {
    let fd = fill_file(&ctx.file("lock-ofd"), 16)?;
    // SAFETY: an all-zero flock is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: F_OFD_SETLK with a valid flock pointer.
    cvt(
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) },
        "fcntl(F_OFD_SETLK)",
    )?;
    Held::one(fd)
}

/// The subject holds a file on which a peer outside its tree holds a POSIX lock (CRIU collects
/// POSIX locks of dumped tasks only: criu/proc_parse.c parse_file_locks).
pub fn posix_lock_ext(ctx: &mut Ctx) -> Result<Held> {
    let path = ctx.file("lock-posix-ext");
    let fd = fill_file(&path, 16)?;
    crate::procs::spawn_peer(ctx, &[], |_| {
        let theirs = sys::open(&path, libc::O_RDWR | libc::O_CLOEXEC)?;
        set_posix_lock(theirs.as_raw_fd())?;
        std::mem::forget(theirs);
        Ok(())
    })?;
    Held::one(fd)
}

/// A peer outside the tree took a flock on the open file it shares with the subject: flocks
/// belong to the open file, so the subject's fd carries it (criu/file-lock.c lock_check_fd).
pub fn flock_ext_shared(ctx: &mut Ctx) -> Result<Held> {
    let fd = fill_file(&ctx.file("lock-flock-ext"), 16)?;
    let raw = fd.as_raw_fd();
    crate::procs::spawn_peer(ctx, &[raw], move |_| {
        // SAFETY: flock on an fd the peer kept.
        cvt(unsafe { libc::flock(raw, libc::LOCK_EX) }, "flock")?;
        Ok(())
    })?;
    Held::one(fd)
}

/// A flock on a pipe: CRIU stops at every lock of a dumped task, whatever the file
/// (criu/file-lock.c), while a pipe alone is dumped as it is.
pub fn flock_pipe(_: &mut Ctx) -> Result<Held> {
    let (r, w) = sys::pipe()?;
    // SAFETY: flock on an owned fd.
    cvt(
        unsafe { libc::flock(w.as_raw_fd(), libc::LOCK_EX) },
        "flock",
    )?;
    Held::fds([r, w])
}

/// A POSIX lock on a memfd, which alone is dumped as it is.
pub fn posix_lock_memfd(_: &mut Ctx) -> Result<Held> {
    let fd = memfd_create(c"zoo-memfd-locked", 0)?;
    ftruncate(&fd, 4096)?;
    // Locked only once placed, as `posix_lock`.
    Ok(Held {
        after_place: Some(set_posix_lock),
        ..Held::one(fd)?
    })
}

/// A read lease (F_SETLEASE) on a file: CRIU counts it among the task's locks
/// (criu/file-lock.c), though no file rule would stop at the file.
pub fn lease_read(ctx: &mut Ctx) -> Result<Held> {
    let path = ctx.file("lock-lease");
    drop(fill_file(&path, 16)?);
    // A read lease needs the file open for reading only, by anyone.
    let fd = sys::open(&path, libc::O_RDONLY)?;
    // SAFETY: F_SETLEASE on an owned fd.
    cvt(
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) },
        "fcntl(F_SETLEASE)",
    )?;
    Held::one(fd)
}

pub fn pipe_pair(_: &mut Ctx) -> Result<Held> {
    let (r, w) = sys::pipe()?;
    Held::fds([r, w])
}

pub fn pipe_with_data(_: &mut Ctx) -> Result<Held> {
    let (r, w) = sys::pipe()?;
    sys::write_all(&w, &[b'p'; 100], "write(pipe)")?;
    Held::fds([r, w])
}

/// The read end; a peer outside the tree holds the write end.
pub fn pipe_ext_read_end(ctx: &mut Ctx) -> Result<Held> {
    let (r, w) = sys::pipe()?;
    crate::procs::spawn_peer(ctx, &[w.as_raw_fd()], |_| Ok(()))?;
    Held::one(r)
}

pub fn fifo_rdwr(ctx: &mut Ctx) -> Result<Held> {
    let path = ctx.file("fifo");
    let c = sys::cstring(&path)?;
    // SAFETY: `c` is a valid C string.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, "mkfifo")?;
    Held::one(sys::open(&path, libc::O_RDWR)?)
}

pub fn memfd_create(name: &std::ffi::CStr, flags: libc::c_uint) -> Result<OwnedFd> {
    // SAFETY: `name` is a valid C string.
    let ret = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_CLOEXEC) };
    own(ret, &format!("memfd_create({})", name.to_string_lossy()))
}

pub fn ftruncate(fd: &OwnedFd, len: i64) -> Result<()> {
    // SAFETY: ftruncate on an owned fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }, "ftruncate")?;
    Ok(())
}

pub fn memfd(_: &mut Ctx) -> Result<Held> {
    let fd = memfd_create(c"zoo-memfd", 0)?;
    ftruncate(&fd, 4096)?;
    Held::one(fd)
}

pub fn memfd_sealed(_: &mut Ctx) -> Result<Held> {
    let fd = memfd_create(c"zoo-memfd", libc::MFD_ALLOW_SEALING)?;
    ftruncate(&fd, 4096)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl with an integer argument.
    cvt(
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) },
        "fcntl(F_ADD_SEALS)",
    )?;
    Held::one(fd)
}

/// Works with no huge pages configured: nothing is allocated.
pub fn memfd_hugetlb(_: &mut Ctx) -> Result<Held> {
    let fd = memfd_create(c"zoo-memfd-huge", libc::MFD_HUGETLB)
        .map_err(|e| e.unsupported_on(&[libc::EINVAL, libc::ENOENT]))?;
    Held::one(fd)
}
