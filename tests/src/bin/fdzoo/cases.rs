//! The table from case name to the function that creates it. Names and order follow
//! `shared/oracle/criu-4.2-zoo.md`; the cases after it are kinds CRIU cannot dump.

use crate::ctx::{Ctx, Held};
use crate::sys::Result;
use crate::{anon, devices, files, mappings, namespaces, sockets};

/// What the subject's process looks like apart from the case's own fds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Session leader; stdin /dev/null, stdout the pipe to the test, stderr inherited.
    Normal,
    /// Session leader; stdio closed after READY.
    NoFds,
    /// Not a session leader; stdio closed after READY.
    NoShell,
    /// Session leader; stdout and stderr moved to `DIR/stdio.log` after READY.
    StdioToFile,
}

pub struct Case {
    pub name: &'static str,
    pub setup: fn(&mut Ctx) -> Result<Held>,
    pub shape: Shape,
}

const fn case(name: &'static str, setup: fn(&mut Ctx) -> Result<Held>) -> Case {
    Case {
        name,
        setup,
        shape: Shape::Normal,
    }
}

const fn shaped(name: &'static str, setup: fn(&mut Ctx) -> Result<Held>, shape: Shape) -> Case {
    Case { name, setup, shape }
}

pub static CASES: &[Case] = &[
    shaped("none", files::no_fds, Shape::NoFds),
    shaped("stdio", files::stdio, Shape::StdioToFile),
    shaped("noshell", files::no_fds, Shape::NoShell),
    case("reg_ext4", files::reg_ext4),
    case("reg_tmpfs", files::reg_tmpfs),
    case("reg_overlay_lower_ro", files::reg_overlay_lower_ro),
    case("reg_overlay_upper_rw", files::reg_overlay_upper_rw),
    case("reg_fuse", files::reg_fuse),
    case("reg_opath", files::reg_opath),
    case("reg_deleted_small", files::reg_deleted_small),
    case("reg_deleted_big", files::reg_deleted_big),
    case("reg_deleted_linked", files::reg_deleted_linked),
    case("dir", files::dir),
    case("proc_self_status", files::proc_self_status),
    case("proc_pid1_status", files::proc_pid1_status),
    case("proc_sys_file", files::proc_sys_file),
    case("sys_file", files::sys_file),
    case("nsfs_own_net", files::nsfs_own_net),
    case("open_tree_clone", files::open_tree_clone),
    case("fsopen_ctx", files::fsopen_ctx),
    case("mmap_file_shared_nofd", mappings::mmap_file_shared_nofd),
    case("mmap_file_private_nofd", mappings::mmap_file_private_nofd),
    case("mmap_devzero_shared", mappings::mmap_devzero_shared),
    case("mmap_devzero_private", mappings::mmap_devzero_private),
    case("mmap_anon_shared", mappings::mmap_anon_shared),
    case("mmap_memfd_nofd", mappings::mmap_memfd_nofd),
    case("sysv_shm_attached", mappings::sysv_shm_attached),
    case("flock_ex", files::flock_ex),
    case("posix_lock", files::posix_lock),
    case("pipe_pair", files::pipe_pair),
    case("pipe_with_data", files::pipe_with_data),
    case("pipe_ext_read_end", files::pipe_ext_read_end),
    case("fifo_rdwr", files::fifo_rdwr),
    case("unix_stream_pair", sockets::unix_stream_pair),
    case(
        "unix_stream_pair_with_data",
        sockets::unix_stream_pair_with_data,
    ),
    case("unix_dgram_pair", sockets::unix_dgram_pair),
    case("unix_seqpacket_pair", sockets::unix_seqpacket_pair),
    case("unix_stream_listen_path", sockets::unix_stream_listen_path),
    case(
        "unix_stream_listen_abstract",
        sockets::unix_stream_listen_abstract,
    ),
    case("unix_dgram_unbound", sockets::unix_dgram_unbound),
    case("unix_stream_ext", sockets::unix_stream_ext),
    case("unix_dgram_ext", sockets::unix_dgram_ext),
    case(
        "unix_scm_rights_inflight",
        sockets::unix_scm_rights_inflight,
    ),
    case("tcp_listen4", sockets::tcp_listen4),
    case("tcp_listen6", sockets::tcp_listen6),
    case("tcp_unbound", sockets::tcp_unbound),
    case("tcp_est_client", sockets::tcp_est_client),
    case("tcp_est_server", sockets::tcp_est_server),
    case("tcp_listen_inflight", sockets::tcp_listen_inflight),
    case("udp4_bound", sockets::udp4_bound),
    case("udp4_connected", sockets::udp4_connected),
    case("udp6_bound", sockets::udp6_bound),
    case("raw_inet_icmp", sockets::raw_inet_icmp),
    case("netlink_route", sockets::netlink_route),
    case("netlink_audit", sockets::netlink_audit),
    case("netlink_generic", sockets::netlink_generic),
    case("packet_raw", sockets::packet_raw),
    case("packet_dgram", sockets::packet_dgram),
    case("vsock_stream", sockets::vsock_stream),
    case("eventfd", anon::eventfd),
    case("epoll_empty", anon::epoll_empty),
    case("epoll_eventfd", anon::epoll_eventfd),
    case("epoll_timerfd", anon::epoll_timerfd),
    case("epoll_nested", anon::epoll_nested),
    case("signalfd", anon::signalfd),
    case("timerfd_armed", anon::timerfd_armed),
    case("timerfd_disarmed", anon::timerfd_disarmed),
    case("inotify_watch", anon::inotify_watch),
    case("inotify_empty", anon::inotify_empty),
    case("fanotify_mark", anon::fanotify_mark),
    case("memfd", files::memfd),
    case("memfd_sealed", files::memfd_sealed),
    case("memfd_hugetlb", files::memfd_hugetlb),
    case("pidfd_self", anon::pidfd_self),
    case("pidfd_child", anon::pidfd_child),
    case("pidfd_ext", anon::pidfd_ext),
    case("userfaultfd", anon::userfaultfd),
    case("io_uring", anon::io_uring),
    case("perf_event", anon::perf_event),
    case("bpf_map_array", anon::bpf_map_array),
    case("bpf_map_hash", anon::bpf_map_hash),
    case("bpf_map_percpu_array", anon::bpf_map_percpu_array),
    case("bpf_map_ringbuf", anon::bpf_map_ringbuf),
    case("bpf_prog", anon::bpf_prog),
    case("unix_stream_orphan", sockets::unix_stream_orphan),
    case("dev_null", devices::dev_null),
    case("dev_zero", devices::dev_zero),
    case("dev_urandom", devices::dev_urandom),
    case("dev_random", devices::dev_random),
    case("dev_full", devices::dev_full),
    case("dev_kmsg", devices::dev_kmsg),
    case("dev_kvm", devices::dev_kvm),
    case("dev_net_tun", devices::dev_net_tun),
    case(
        "tun_attached_foreign_netns",
        namespaces::tun_attached_foreign_netns,
    ),
    case("dev_fuse", devices::dev_fuse),
    case("dev_ptmx_only", devices::dev_ptmx_only),
    case("pty_pair", devices::pty_pair),
    case("pty_ctty_devtty", devices::pty_ctty_devtty),
    case("ext_pty_slave", devices::ext_pty_slave),
    case("two_ext_pty_slaves", devices::two_ext_pty_slaves),
    case("ns_net_dev_net_tun", namespaces::ns_net_dev_net_tun),
    case("ns_net_tun_attached", namespaces::ns_net_tun_attached),
    case("ns_net_tcp_unbound", namespaces::ns_net_tcp_unbound),
    case("ns_net_packet_raw", namespaces::ns_net_packet_raw),
    case("ns_net_ping_icmp_dgram", namespaces::ns_net_ping_icmp_dgram),
    case(
        "ns_ipc_sysv_shm_attached",
        namespaces::ns_ipc_sysv_shm_attached,
    ),
    // Beyond the oracle table.
    case("bpf_link", anon::bpf_link),
    case("memfd_secret", anon::memfd_secret),
    case("landlock_ruleset", anon::landlock_ruleset),
    case("inet_sctp", sockets::inet_sctp),
    case("alg_socket", sockets::alg_socket),
    case("tcp_est_both", sockets::tcp_est_both),
    case(
        "unix_stream_pair_in_tree",
        sockets::unix_stream_pair_in_tree,
    ),
    case("aio_ring", mappings::aio_ring),
    case("io_uring_mapped", mappings::io_uring_mapped),
    case("perf_event_mmap", mappings::perf_event_mmap),
    case(
        "mmap_overlay_private_nofd",
        mappings::mmap_overlay_private_nofd,
    ),
    case("inotify_overlay", anon::inotify_overlay),
    // Issue 15: lock owners, socket queues, filters and rings, dead pidfds, fsnotify handles.
    case("ofd_lock", files::ofd_lock),
    case("posix_lock_ext", files::posix_lock_ext),
    case("flock_ext_shared", files::flock_ext_shared),
    case("flock_pipe", files::flock_pipe),
    case("posix_lock_memfd", files::posix_lock_memfd),
    case("lease_read", files::lease_read),
    case(
        "unix_stream_inflight_in_tree",
        sockets::unix_stream_inflight_in_tree,
    ),
    case(
        "unix_stream_inflight_ext",
        sockets::unix_stream_inflight_ext,
    ),
    case("udp4_corked", sockets::udp4_corked),
    case("udp4_rqueue", sockets::udp4_rqueue),
    case("sock_filter_classic", sockets::sock_filter_classic),
    case("sock_filter_ebpf", sockets::sock_filter_ebpf),
    case("packet_rx_ring", sockets::packet_rx_ring),
    case("packet_rx_ring_nofd", sockets::packet_rx_ring_nofd),
    case("pidfd_dead", anon::pidfd_dead),
    case("pidfd_thread", anon::pidfd_thread),
    case("pidns_nested_child", namespaces::pidns_nested_child),
    case("inotify_procfs", anon::inotify_procfs),
    case("inotify_sysfs", anon::inotify_sysfs),
];
