//! Mapping cases: what the subject holds is a VMA (two pages), mostly with its fd closed.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::anon::{IoUringParams, io_uring_setup, perf_event_fd};
use crate::ctx::{Ctx, Held, fill_file};
use crate::files::{ftruncate, memfd_create};
use crate::sys::{Error, Result};

const PAGE: usize = 4096;
const LEN: usize = 2 * PAGE;

/// mmap(2), read-write; the mapping is kept for the life of the subject.
fn map(len: usize, flags: i32, fd: Option<&OwnedFd>, offset: i64) -> Result<*mut u8> {
    let raw = fd.map_or(-1, AsRawFd::as_raw_fd);
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a fresh mapping at an address of the kernel's choice.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, raw, offset) };
    if addr == libc::MAP_FAILED {
        return Err(Error::last("mmap"));
    }
    Ok(addr.cast())
}

/// Maps and dirties the first page, so that the mapping has content of its own.
fn map_dirty(flags: i32, fd: Option<&OwnedFd>) -> Result<Held> {
    let addr = map(LEN, flags, fd, 0)?;
    // SAFETY: the mapping is LEN bytes, writable.
    unsafe { addr.write_volatile(b'm') };
    Held::nothing()
}

/// `DIR/<case>.N`, LEN bytes, mapped with `flags`, then its fd closed.
fn map_file(ctx: &mut Ctx, prefix: &str, flags: i32) -> Result<Held> {
    let name = ctx.numbered(prefix);
    let fd = fill_file(&ctx.file(&name), LEN)?;
    map_dirty(flags, Some(&fd))
}

pub fn mmap_file_shared_nofd(ctx: &mut Ctx) -> Result<Held> {
    map_file(ctx, "mmap_file_shared_nofd", libc::MAP_SHARED)
}

/// A file of an overlay's lower layer, mapped through the overlay, fd closed: what every
/// process of a container does with its binary and libraries. Since Linux 6.8 the VMA's file is
/// a backing file on the layer's private mount; CRIU looks through map_files instead.
pub fn mmap_overlay_private_nofd(ctx: &mut Ctx) -> Result<Held> {
    let merged = crate::files::overlay(ctx)?;
    let fd = crate::sys::open(merged.join("lower.txt"), libc::O_RDONLY)?;
    let addr = map(16, libc::MAP_PRIVATE, Some(&fd), 0)?;
    // SAFETY: the mapping is at least a page, writable (private: the file is not touched).
    unsafe { addr.write_volatile(b'm') };
    Held::nothing()
}

pub fn mmap_file_private_nofd(ctx: &mut Ctx) -> Result<Held> {
    map_file(ctx, "mmap_file_private_nofd", libc::MAP_PRIVATE)
}

fn map_dev_zero(flags: i32) -> Result<Held> {
    let fd = crate::sys::open("/dev/zero", libc::O_RDWR)?;
    map_dirty(flags, Some(&fd))
}

pub fn mmap_devzero_shared(_: &mut Ctx) -> Result<Held> {
    map_dev_zero(libc::MAP_SHARED)
}

pub fn mmap_devzero_private(_: &mut Ctx) -> Result<Held> {
    map_dev_zero(libc::MAP_PRIVATE)
}

pub fn mmap_anon_shared(_: &mut Ctx) -> Result<Held> {
    map_dirty(libc::MAP_SHARED | libc::MAP_ANONYMOUS, None)
}

pub fn mmap_memfd_nofd(_: &mut Ctx) -> Result<Held> {
    let fd = memfd_create(c"zoo-memfd-map", 0)?;
    ftruncate(&fd, LEN as i64)?;
    map_dirty(libc::MAP_SHARED, Some(&fd))
}

/// A private SysV shm segment, attached, then marked for removal (IPC_RMID).
pub fn attach_sysv_shm() -> Result<Held> {
    // SAFETY: shmget/shmat/shmctl with a fresh private segment.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, LEN, libc::IPC_CREAT | 0o600);
        if id == -1 {
            return Err(Error::last("shmget").unsupported_on(&[libc::ENOSYS]));
        }
        let addr = libc::shmat(id, std::ptr::null(), 0);
        let attach_failed = addr as isize == -1;
        let err = attach_failed.then(|| Error::last("shmat"));
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        if let Some(err) = err {
            return Err(err);
        }
        addr.cast::<u8>().write_volatile(b's');
    }
    Held::nothing()
}

pub fn sysv_shm_attached(_: &mut Ctx) -> Result<Held> {
    attach_sysv_shm()
}

/// io_setup(2): an `[aio]` ring mapping and no fd.
pub fn aio_ring(_: &mut Ctx) -> Result<Held> {
    let mut aio_ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes the context id to `aio_ctx`.
    let ret =
        unsafe { libc::syscall(libc::SYS_io_setup, 8u32, &mut aio_ctx as *mut libc::c_ulong) };
    if ret == -1 {
        return Err(Error::last("io_setup").unsupported_on(&[libc::ENOSYS]));
    }
    Held::nothing()
}

/// io_uring_setup() with its SQ/CQ rings and SQE array mapped; the fd is kept.
pub fn io_uring_mapped(_: &mut Ctx) -> Result<Held> {
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    const IORING_FEAT_SINGLE_MMAP: u32 = 1;
    const SQE_SIZE: usize = 64;
    const CQE_SIZE: usize = 16;
    let mut params = IoUringParams::default();
    let fd = io_uring_setup(&mut params)?;
    let sq_len = params.sq_off[6] as usize + params.sq_entries as usize * 4;
    let cq_len = params.cq_off[5] as usize + params.cq_entries as usize * CQE_SIZE;
    let shared = libc::MAP_SHARED | libc::MAP_POPULATE;
    if params.features & IORING_FEAT_SINGLE_MMAP != 0 {
        map(sq_len.max(cq_len), shared, Some(&fd), IORING_OFF_SQ_RING)?;
    } else {
        map(sq_len, shared, Some(&fd), IORING_OFF_SQ_RING)?;
        map(cq_len, shared, Some(&fd), IORING_OFF_CQ_RING)?;
    }
    map(
        params.sq_entries as usize * SQE_SIZE,
        shared,
        Some(&fd),
        IORING_OFF_SQES,
    )?;
    Held::one(fd)
}

/// A perf event with its ring buffer (1 + 1 pages) mapped; the fd is kept.
pub fn perf_event_mmap(_: &mut Ctx) -> Result<Held> {
    let fd = perf_event_fd()?;
    map(LEN, libc::MAP_SHARED, Some(&fd), 0)?;
    Held::one(fd)
}
