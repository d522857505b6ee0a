//! Cases where the subject first moves into a namespace of its own (`ns_*`), and the tap
//! made inside a netns that the subject then leaves.

use std::os::fd::AsRawFd;

use crate::ctx::{Ctx, Held};
use crate::devices::{attach_tap, tun};
use crate::mappings::attach_sysv_shm;
use crate::sockets::{ping_socket, socket};
use crate::sys::{self, Result, cvt};

fn unshare(flags: i32, what: &str) -> Result<()> {
    // SAFETY: unshare takes no pointers.
    cvt(unsafe { libc::unshare(flags) }, what)?;
    Ok(())
}

fn own_netns() -> Result<()> {
    unshare(libc::CLONE_NEWNET, "unshare(CLONE_NEWNET)")
}

pub fn ns_net_dev_net_tun(_: &mut Ctx) -> Result<Held> {
    own_netns()?;
    Held::one(tun()?)
}

pub fn ns_net_tun_attached(_: &mut Ctx) -> Result<Held> {
    own_netns()?;
    let fd = tun()?;
    attach_tap(&fd, c"zootap0")?;
    Held::one(fd)
}

pub fn ns_net_tcp_unbound(_: &mut Ctx) -> Result<Held> {
    own_netns()?;
    Held::one(socket(
        libc::AF_INET,
        libc::SOCK_STREAM,
        libc::IPPROTO_TCP,
        "AF_INET, SOCK_STREAM",
    )?)
}

pub fn ns_net_packet_raw(_: &mut Ctx) -> Result<Held> {
    own_netns()?;
    Held::one(socket(
        libc::AF_PACKET,
        libc::SOCK_RAW,
        0,
        "AF_PACKET, SOCK_RAW",
    )?)
}

/// A ping socket, allowed by ping_group_range = "0 0" set inside the new netns only.
pub fn ns_net_ping_icmp_dgram(_: &mut Ctx) -> Result<Held> {
    own_netns()?;
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0").map_err(|e| {
        sys::Error::Other(format!("writing /proc/sys/net/ipv4/ping_group_range: {e}"))
    })?;
    Held::one(ping_socket()?)
}

pub fn ns_ipc_sysv_shm_attached(_: &mut Ctx) -> Result<Held> {
    unshare(libc::CLONE_NEWIPC, "unshare(CLONE_NEWIPC)")?;
    attach_sysv_shm()
}

/// fd 5: a tun attached to tap `zootap0` inside a netns made for it, while the subject
/// itself is back in its original netns (fds 3 and 4, the two netns handles, are closed).
pub fn tun_attached_foreign_netns(_: &mut Ctx) -> Result<Held> {
    let original = sys::open("/proc/self/ns/net", libc::O_RDONLY)?;
    own_netns()?;
    let isolated = sys::open("/proc/self/ns/net", libc::O_RDONLY)?;
    let fd = tun()?;
    attach_tap(&fd, c"zootap0")?;
    // SAFETY: setns with an nsfs fd we own.
    cvt(
        unsafe { libc::setns(original.as_raw_fd(), libc::CLONE_NEWNET) },
        "setns(original netns)",
    )?;
    drop((original, isolated));
    Ok(Held::one(fd)?.at(5))
}

/// The subject has a child in a pid namespace of its own (the child is its pid 1): a nested pid
/// namespace inside the dumped tree.
pub fn pidns_nested_child(_: &mut Ctx) -> Result<Held> {
    unshare(libc::CLONE_NEWPID, "unshare(CLONE_NEWPID)")?;
    let pid = crate::procs::fork()?;
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        sys::set_sigmask(libc::SIG_SETMASK, &[]);
        sys::close_all_from(0, &[]);
        loop {
            // SAFETY: pause just sleeps.
            unsafe { libc::pause() };
        }
    }
    Held::nothing()
}
