//! Character-device cases: /dev/null and friends, kvm, tun, fuse, and ptys.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::ctx::{Ctx, Held};
use crate::procs::spawn_peer;
use crate::sys::{self, Result, cvt};

/// Opens a device node; a missing node or driver means the machine lacks the device.
fn device(path: &str, flags: i32) -> Result<OwnedFd> {
    sys::open(path, flags).map_err(|e| e.unsupported_on(&[libc::ENOENT, libc::ENODEV, libc::ENXIO]))
}

fn one_device(path: &str, flags: i32) -> Result<Held> {
    Held::one(device(path, flags)?)
}

pub fn dev_null(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/null", libc::O_RDWR)
}

pub fn dev_zero(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/zero", libc::O_RDWR)
}

pub fn dev_urandom(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/urandom", libc::O_RDONLY)
}

pub fn dev_random(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/random", libc::O_RDONLY)
}

pub fn dev_full(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/full", libc::O_RDWR)
}

pub fn dev_kmsg(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/kmsg", libc::O_RDONLY)
}

pub fn dev_kvm(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/kvm", libc::O_RDWR)
}

pub fn dev_fuse(_: &mut Ctx) -> Result<Held> {
    one_device("/dev/fuse", libc::O_RDWR)
}

pub fn tun() -> Result<OwnedFd> {
    device("/dev/net/tun", libc::O_RDWR)
}

/// Attaches a tun fd to a new tap interface `name` (TUNSETIFF) in the current netns.
pub fn attach_tap(fd: &OwnedFd, name: &CStr) -> Result<()> {
    // SAFETY: an all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.to_bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq.
    cvt(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) },
        "ioctl(TUNSETIFF)",
    )?;
    Ok(())
}

pub fn dev_net_tun(_: &mut Ctx) -> Result<Held> {
    Held::one(tun()?)
}

/// A pty master from /dev/ptmx, granted and unlocked, with the path of its slave.
fn pty_master() -> Result<(OwnedFd, String)> {
    let master = device("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY)?;
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: grantpt/unlockpt on a master fd; ptsname_r writes at most `name.len()` bytes.
    unsafe {
        cvt(libc::grantpt(master.as_raw_fd()), "grantpt")?;
        cvt(libc::unlockpt(master.as_raw_fd()), "unlockpt")?;
        let err = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if err != 0 {
            return Err(sys::Error::from_errno("ptsname_r", err));
        }
        Ok((
            master,
            CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned(),
        ))
    }
}

fn pty_slave(path: &str) -> Result<OwnedFd> {
    sys::open(path, libc::O_RDWR | libc::O_NOCTTY)
}

pub fn dev_ptmx_only(_: &mut Ctx) -> Result<Held> {
    Held::one(pty_master()?.0)
}

/// Master and slave; neither is the controlling tty.
pub fn pty_pair(_: &mut Ctx) -> Result<Held> {
    let (master, slave) = pty_master()?;
    let slave = pty_slave(&slave)?;
    Held::fds([master, slave])
}

/// Master, slave made the controlling tty (TIOCSCTTY), and /dev/tty.
pub fn pty_ctty_devtty(_: &mut Ctx) -> Result<Held> {
    let (master, slave) = pty_master()?;
    let slave = pty_slave(&slave)?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    cvt(
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) },
        "ioctl(TIOCSCTTY)",
    )?;
    let tty = sys::open("/dev/tty", libc::O_RDWR)?;
    Held::fds([master, slave, tty])
}

/// Two slaves; a peer outside the tree holds both masters.
pub fn two_ext_pty_slaves(ctx: &mut Ctx) -> Result<Held> {
    let (master_a, slave_a) = pty_master()?;
    let (master_b, slave_b) = pty_master()?;
    let slaves = [pty_slave(&slave_a)?, pty_slave(&slave_b)?];
    spawn_peer(ctx, &[master_a.as_raw_fd(), master_b.as_raw_fd()], |_| {
        Ok(())
    })?;
    Held::fds(slaves)
}

/// Only the slave; a peer outside the tree holds the master.
pub fn ext_pty_slave(ctx: &mut Ctx) -> Result<Held> {
    let (master, slave) = pty_master()?;
    let slave = pty_slave(&slave)?;
    spawn_peer(ctx, &[master.as_raw_fd()], |_| Ok(()))?;
    Held::one(slave)
}
