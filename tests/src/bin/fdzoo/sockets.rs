//! Socket cases: AF_UNIX pairs, listeners and external peers, TCP and UDP on loopback,
//! raw, netlink, packet, vsock, and the families this kernel may lack (SCTP, AF_ALG).

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::ctx::{Ctx, Held};
use crate::procs::{spawn_child, spawn_peer};
use crate::sys::{self, Error, Result, cvt, own};

/// errnos meaning "this kernel has no such socket family or protocol".
const NO_FAMILY: [i32; 4] = [
    libc::EAFNOSUPPORT,
    libc::EPROTONOSUPPORT,
    libc::ESOCKTNOSUPPORT,
    libc::EPROTOTYPE,
];

pub fn socket(domain: i32, ty: i32, proto: i32, what: &str) -> Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let ret = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    own(ret, &format!("socket({what})")).map_err(|e| e.unsupported_on(&NO_FAMILY))
}

fn socketpair(ty: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two fds.
    let ret =
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    cvt(ret, "socketpair")?;
    Ok((own(fds[0], "socketpair")?, own(fds[1], "socketpair")?))
}

/// A socket address as bytes, for bind/connect.
struct Addr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Addr {
    fn from<T>(sa: T) -> Self {
        // SAFETY: sockaddr_storage is plain data, large enough for any sockaddr `T`.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: `T` is a sockaddr type no bigger than sockaddr_storage.
        unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sa) };
        Addr {
            storage,
            len: size_of::<T>() as libc::socklen_t,
        }
    }

    fn v4(ip: Ipv4Addr, port: u16) -> Self {
        Self::from(libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        })
    }

    fn v6(ip: Ipv6Addr, port: u16) -> Self {
        // SAFETY: an all-zero sockaddr_in6 is valid.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        sa.sin6_addr.s6_addr = ip.octets();
        Self::from(sa)
    }

    /// An AF_UNIX address: a path, or an abstract name if `name` starts with NUL.
    fn unix(name: &[u8]) -> Result<Self> {
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if name.len() >= sa.sun_path.len() {
            return Err(Error::Other(format!("unix socket name too long: {name:?}")));
        }
        for (dst, &src) in sa.sun_path.iter_mut().zip(name) {
            *dst = src as libc::c_char;
        }
        let mut addr = Self::from(sa);
        let path_offset = size_of::<libc::sa_family_t>();
        // Abstract names are exactly as long as given; paths end with the NUL.
        addr.len = (path_offset + name.len() + usize::from(name[0] != 0)) as libc::socklen_t;
        Ok(addr)
    }

    fn path(path: &Path) -> Result<Self> {
        Self::unix(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
    }

    fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }
}

fn bind(fd: &OwnedFd, addr: &Addr) -> Result<()> {
    // SAFETY: `addr` points to `addr.len` valid bytes.
    cvt(
        unsafe { libc::bind(fd.as_raw_fd(), addr.ptr(), addr.len) },
        "bind",
    )?;
    Ok(())
}

fn connect(fd: &OwnedFd, addr: &Addr) -> Result<()> {
    // SAFETY: `addr` points to `addr.len` valid bytes.
    cvt(
        unsafe { libc::connect(fd.as_raw_fd(), addr.ptr(), addr.len) },
        "connect",
    )?;
    Ok(())
}

fn listen(fd: &OwnedFd) -> Result<()> {
    // SAFETY: listen takes no pointers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 16) }, "listen")?;
    Ok(())
}

fn accept(fd: &OwnedFd) -> Result<OwnedFd> {
    // SAFETY: null address pointers are allowed.
    let ret = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    own(ret, "accept")
}

/// The port a bound inet socket got.
fn local_port(fd: &OwnedFd) -> Result<u16> {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let sa = (&raw mut ss).cast();
    // SAFETY: `sa` has room for `len` bytes.
    cvt(
        unsafe { libc::getsockname(fd.as_raw_fd(), sa, &mut len) },
        "getsockname",
    )?;
    // SAFETY: sockaddr_storage is aligned for any sockaddr; sin_port and sin6_port sit at
    // the same offset, right after the family.
    let port = unsafe { (*(&raw const ss).cast::<libc::sockaddr_in>()).sin_port };
    Ok(u16::from_be(port))
}

fn tcp4() -> Result<OwnedFd> {
    socket(
        libc::AF_INET,
        libc::SOCK_STREAM,
        libc::IPPROTO_TCP,
        "AF_INET, SOCK_STREAM",
    )
}

/// A TCP listener on 127.0.0.1 and its port.
fn tcp4_listener() -> Result<(OwnedFd, u16)> {
    let fd = tcp4()?;
    bind(&fd, &Addr::v4(Ipv4Addr::LOCALHOST, 0))?;
    listen(&fd)?;
    let port = local_port(&fd)?;
    Ok((fd, port))
}

fn unix(ty: i32) -> Result<OwnedFd> {
    socket(libc::AF_UNIX, ty, 0, "AF_UNIX")
}

fn pair(ty: i32) -> Result<Held> {
    let (a, b) = socketpair(ty)?;
    Held::fds([a, b])
}

pub fn unix_stream_pair(_: &mut Ctx) -> Result<Held> {
    pair(libc::SOCK_STREAM)
}

pub fn unix_dgram_pair(_: &mut Ctx) -> Result<Held> {
    pair(libc::SOCK_DGRAM)
}

pub fn unix_seqpacket_pair(_: &mut Ctx) -> Result<Held> {
    pair(libc::SOCK_SEQPACKET)
}

pub fn unix_stream_pair_with_data(_: &mut Ctx) -> Result<Held> {
    let (a, b) = socketpair(libc::SOCK_STREAM)?;
    sys::write_all(&a, &[b'u'; 100], "write(socket)")?;
    Held::fds([a, b])
}

pub fn unix_stream_orphan(_: &mut Ctx) -> Result<Held> {
    let (a, _closed) = socketpair(libc::SOCK_STREAM)?;
    Held::one(a)
}

/// The other end is held by a child of the subject, inside its tree.
pub fn unix_stream_pair_in_tree(ctx: &mut Ctx) -> Result<Held> {
    let (a, b) = socketpair(libc::SOCK_STREAM)?;
    spawn_child(ctx, &[b.as_raw_fd()])?;
    Held::one(a)
}

pub fn unix_stream_listen_path(ctx: &mut Ctx) -> Result<Held> {
    let fd = unix(libc::SOCK_STREAM)?;
    bind(&fd, &Addr::path(&ctx.file("listen.sock"))?)?;
    listen(&fd)?;
    Held::one(fd)
}

pub fn unix_stream_listen_abstract(ctx: &mut Ctx) -> Result<Held> {
    let fd = unix(libc::SOCK_STREAM)?;
    bind(&fd, &Addr::unix(format!("\0fdzoo.{}", ctx.pid).as_bytes())?)?;
    listen(&fd)?;
    Held::one(fd)
}

pub fn unix_dgram_unbound(_: &mut Ctx) -> Result<Held> {
    Held::one(unix(libc::SOCK_DGRAM)?)
}

/// Connected to a listener in a peer, which has accepted the connection.
pub fn unix_stream_ext(ctx: &mut Ctx) -> Result<Held> {
    let addr = Addr::path(&ctx.file("ext.sock"))?;
    let listener = unix(libc::SOCK_STREAM)?;
    bind(&listener, &addr)?;
    listen(&listener)?;
    let client = unix(libc::SOCK_STREAM)?;
    connect(&client, &addr)?;
    spawn_peer(ctx, &[listener.as_raw_fd()], |_| {
        accept(&listener).map(std::mem::forget)
    })?;
    Held::one(client)
}

/// Connected to a bound dgram socket held by a peer.
pub fn unix_dgram_ext(ctx: &mut Ctx) -> Result<Held> {
    let addr = Addr::path(&ctx.file("ext-dgram.sock"))?;
    let server = unix(libc::SOCK_DGRAM)?;
    bind(&server, &addr)?;
    spawn_peer(ctx, &[server.as_raw_fd()], |_| Ok(()))?;
    drop(server);
    let client = unix(libc::SOCK_DGRAM)?;
    connect(&client, &addr)?;
    Held::one(client)
}

/// fd 3 (/dev/null) is sent over fd 4 with SCM_RIGHTS, never received, then closed.
pub fn unix_scm_rights_inflight(_: &mut Ctx) -> Result<Held> {
    let payload = sys::open("/dev/null", libc::O_RDONLY)?;
    let (a, b) = socketpair(libc::SOCK_STREAM)?;
    send_fd(&a, &payload)?;
    drop(payload);
    Ok(Held::fds([a, b])?.at(4))
}

fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> Result<()> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut byte = *b"x";
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; the pointers set below outlive sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one cmsg carrying one int.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), fd.as_raw_fd());
    }
    // SAFETY: `msg` is fully initialised.
    cvt(
        unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) },
        "sendmsg(SCM_RIGHTS)",
    )?;
    Ok(())
}

pub fn tcp_listen4(_: &mut Ctx) -> Result<Held> {
    Held::one(tcp4_listener()?.0)
}

pub fn tcp_listen6(_: &mut Ctx) -> Result<Held> {
    let fd = socket(
        libc::AF_INET6,
        libc::SOCK_STREAM,
        libc::IPPROTO_TCP,
        "AF_INET6",
    )?;
    bind(&fd, &Addr::v6(Ipv6Addr::LOCALHOST, 0))?;
    listen(&fd)?;
    Held::one(fd)
}

pub fn tcp_unbound(_: &mut Ctx) -> Result<Held> {
    Held::one(tcp4()?)
}

/// Client side; the listener is in a peer, which accepts.
pub fn tcp_est_client(ctx: &mut Ctx) -> Result<Held> {
    let (listener, port) = tcp4_listener()?;
    let client = tcp4()?;
    connect(&client, &Addr::v4(Ipv4Addr::LOCALHOST, port))?;
    spawn_peer(ctx, &[listener.as_raw_fd()], |_| {
        accept(&listener).map(std::mem::forget)
    })?;
    Held::one(client)
}

/// Accepted side (fd 4); the client is a peer; the listener is closed.
pub fn tcp_est_server(ctx: &mut Ctx) -> Result<Held> {
    let (listener, port) = tcp4_listener()?;
    spawn_peer(ctx, &[], |_| connect_tcp4(port))?;
    let conn = accept(&listener)?;
    Ok(Held::one(conn)?.at(4))
}

/// A peer connects and stays connected; the subject never accepts.
pub fn tcp_listen_inflight(ctx: &mut Ctx) -> Result<Held> {
    let (listener, port) = tcp4_listener()?;
    spawn_peer(ctx, &[], |_| connect_tcp4(port))?;
    Held::one(listener)
}

/// Connects to 127.0.0.1:port and keeps the socket for the life of the process.
fn connect_tcp4(port: u16) -> Result<()> {
    let fd = tcp4()?;
    connect(&fd, &Addr::v4(Ipv4Addr::LOCALHOST, port))?;
    std::mem::forget(fd);
    Ok(())
}

/// Both ends of one established connection.
pub fn tcp_est_both(_: &mut Ctx) -> Result<Held> {
    let (listener, port) = tcp4_listener()?;
    let client = tcp4()?;
    connect(&client, &Addr::v4(Ipv4Addr::LOCALHOST, port))?;
    let server = accept(&listener)?;
    drop(listener);
    Held::fds([client, server])
}

fn udp4_bound_socket() -> Result<OwnedFd> {
    let fd = socket(
        libc::AF_INET,
        libc::SOCK_DGRAM,
        libc::IPPROTO_UDP,
        "AF_INET, SOCK_DGRAM",
    )?;
    bind(&fd, &Addr::v4(Ipv4Addr::LOCALHOST, 0))?;
    Ok(fd)
}

pub fn udp4_bound(_: &mut Ctx) -> Result<Held> {
    Held::one(udp4_bound_socket()?)
}

pub fn udp4_connected(_: &mut Ctx) -> Result<Held> {
    let fd = udp4_bound_socket()?;
    connect(&fd, &Addr::v4(Ipv4Addr::LOCALHOST, 9))?;
    Held::one(fd)
}

pub fn udp6_bound(_: &mut Ctx) -> Result<Held> {
    let fd = socket(
        libc::AF_INET6,
        libc::SOCK_DGRAM,
        libc::IPPROTO_UDP,
        "AF_INET6, SOCK_DGRAM",
    )?;
    bind(&fd, &Addr::v6(Ipv6Addr::LOCALHOST, 0))?;
    Held::one(fd)
}

pub fn raw_inet_icmp(_: &mut Ctx) -> Result<Held> {
    Held::one(socket(
        libc::AF_INET,
        libc::SOCK_RAW,
        libc::IPPROTO_ICMP,
        "AF_INET, SOCK_RAW",
    )?)
}

/// An AF_NETLINK socket bound to a kernel-assigned port id.
fn netlink(proto: i32, what: &str) -> Result<Held> {
    let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, proto, what)?;
    // SAFETY: an all-zero sockaddr_nl is valid.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    bind(&fd, &Addr::from(sa))?;
    Held::one(fd)
}

pub fn netlink_route(_: &mut Ctx) -> Result<Held> {
    netlink(libc::NETLINK_ROUTE, "AF_NETLINK, NETLINK_ROUTE")
}

pub fn netlink_audit(_: &mut Ctx) -> Result<Held> {
    netlink(libc::NETLINK_AUDIT, "AF_NETLINK, NETLINK_AUDIT")
}

pub fn netlink_generic(_: &mut Ctx) -> Result<Held> {
    netlink(libc::NETLINK_GENERIC, "AF_NETLINK, NETLINK_GENERIC")
}

pub fn packet_raw(_: &mut Ctx) -> Result<Held> {
    Held::one(socket(
        libc::AF_PACKET,
        libc::SOCK_RAW,
        0,
        "AF_PACKET, SOCK_RAW",
    )?)
}

pub fn packet_dgram(_: &mut Ctx) -> Result<Held> {
    Held::one(socket(
        libc::AF_PACKET,
        libc::SOCK_DGRAM,
        0,
        "AF_PACKET, SOCK_DGRAM",
    )?)
}

pub fn vsock_stream(_: &mut Ctx) -> Result<Held> {
    Held::one(socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0, "AF_VSOCK")?)
}

pub fn inet_sctp(_: &mut Ctx) -> Result<Held> {
    Held::one(socket(
        libc::AF_INET,
        libc::SOCK_STREAM,
        libc::IPPROTO_SCTP,
        "IPPROTO_SCTP",
    )?)
}

pub fn alg_socket(_: &mut Ctx) -> Result<Held> {
    Held::one(socket(libc::AF_ALG, libc::SOCK_SEQPACKET, 0, "AF_ALG")?)
}

/// A ping socket (SOCK_DGRAM, IPPROTO_ICMP); needs ping_group_range to include our gid.
pub fn ping_socket() -> Result<OwnedFd> {
    socket(
        libc::AF_INET,
        libc::SOCK_DGRAM,
        libc::IPPROTO_ICMP,
        "AF_INET, SOCK_DGRAM, ICMP",
    )
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &str) -> Result<()> {
    // SAFETY: `value` points to size_of::<T>() readable bytes.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(ret, what)?;
    Ok(())
}

/// UDP corked (UDP_CORK) with 100 bytes sent and held in the write queue.
pub fn udp4_corked(_: &mut Ctx) -> Result<Held> {
    const UDP_CORK: i32 = 1;
    let fd = udp4_bound_socket()?;
    connect(&fd, &Addr::v4(Ipv4Addr::LOCALHOST, 9))?;
    setsockopt(&fd, libc::SOL_UDP, UDP_CORK, &1i32, "setsockopt(UDP_CORK)")?;
    sys::write_all(&fd, &[b'u'; 100], "send(corked UDP)")?;
    Held::one(fd)
}

/// UDP with a 100-byte datagram queued and unread (sent to itself).
pub fn udp4_rqueue(_: &mut Ctx) -> Result<Held> {
    let fd = udp4_bound_socket()?;
    // SAFETY: an all-zero sockaddr_storage is valid; getsockname fills it.
    let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `sa` has room for `len` bytes.
    cvt(
        unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        },
        "getsockname",
    )?;
    // SAFETY: `sa` is the sockaddr_in getsockname wrote.
    let port = u16::from_be(unsafe { (*(&sa as *const _ as *const libc::sockaddr_in)).sin_port });
    connect(&fd, &Addr::v4(Ipv4Addr::LOCALHOST, port))?;
    sys::write_all(&fd, &[b'q'; 100], "send(UDP to itself)")?;
    Held::one(fd)
}

/// UDP socket with a classic BPF filter (SO_ATTACH_FILTER, `ret #0xffff`).
pub fn sock_filter_classic(_: &mut Ctx) -> Result<Held> {
    let fd = udp4_bound_socket()?;
    let code = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: 0xffff,
    }];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        "setsockopt(SO_ATTACH_FILTER)",
    )?;
    Held::one(fd)
}

/// UDP socket with an eBPF socket filter attached (SO_ATTACH_BPF); the program fd is closed.
pub fn sock_filter_ebpf(_: &mut Ctx) -> Result<Held> {
    let fd = udp4_bound_socket()?;
    let prog = crate::anon::socket_filter_prog()?;
    let prog_fd = prog.as_raw_fd();
    setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_BPF,
        &prog_fd,
        "setsockopt(SO_ATTACH_BPF)",
    )?;
    drop(prog);
    Held::one(fd)
}

/// Sets up a TPACKET_V2 receive ring of one 4 KiB block on `fd` and maps it.
fn packet_ring(fd: &OwnedFd) -> Result<()> {
    const SOL_PACKET: i32 = 263;
    const PACKET_RX_RING: i32 = 5;
    const PACKET_VERSION: i32 = 10;
    const TPACKET_V2: i32 = 1;
    #[repr(C)]
    struct TpacketReq {
        block_size: u32,
        block_nr: u32,
        frame_size: u32,
        frame_nr: u32,
    }
    setsockopt(
        fd,
        SOL_PACKET,
        PACKET_VERSION,
        &TPACKET_V2,
        "setsockopt(PACKET_VERSION)",
    )?;
    let req = TpacketReq {
        block_size: 4096,
        block_nr: 1,
        frame_size: 2048,
        frame_nr: 2,
    };
    setsockopt(
        fd,
        SOL_PACKET,
        PACKET_RX_RING,
        &req,
        "setsockopt(PACKET_RX_RING)",
    )?;
    // SAFETY: a fresh shared mapping of the socket's ring; it stays mapped for the subject's life.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::last("mmap(packet ring)"));
    }
    Ok(())
}

/// AF_PACKET raw socket (protocol 0: receives nothing) with a mapped receive ring.
pub fn packet_rx_ring(_: &mut Ctx) -> Result<Held> {
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0, "AF_PACKET, SOCK_RAW")?;
    packet_ring(&fd)?;
    Held::one(fd)
}

/// The same ring, mapped, with the socket's fd closed.
pub fn packet_rx_ring_nofd(_: &mut Ctx) -> Result<Held> {
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0, "AF_PACKET, SOCK_RAW")?;
    packet_ring(&fd)?;
    drop(fd);
    Held::nothing()
}

/// A listener and a client connected to it, not yet accepted, both held by the subject: the
/// connection is in flight inside the dump.
pub fn unix_stream_inflight_in_tree(ctx: &mut Ctx) -> Result<Held> {
    let addr = Addr::path(&ctx.file("inflight.sock"))?;
    let listener = unix(libc::SOCK_STREAM)?;
    bind(&listener, &addr)?;
    listen(&listener)?;
    let client = unix(libc::SOCK_STREAM)?;
    connect(&client, &addr)?;
    Held::fds([client, listener])
}

/// The subject's client is in flight to a listener a peer outside its tree holds.
pub fn unix_stream_inflight_ext(ctx: &mut Ctx) -> Result<Held> {
    let addr = Addr::path(&ctx.file("inflight-ext.sock"))?;
    let listener = unix(libc::SOCK_STREAM)?;
    bind(&listener, &addr)?;
    listen(&listener)?;
    spawn_peer(ctx, &[listener.as_raw_fd()], |_| Ok(()))?;
    drop(listener);
    let client = unix(libc::SOCK_STREAM)?;
    connect(&client, &addr)?;
    Held::one(client)
}
