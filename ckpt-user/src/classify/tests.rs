//! The `criu-4` profile rule by rule: for each rule a file that matches it (checked against
//! `shared/oracle/criu-4.2-zoo.md` where the oracle has the case) and, where a condition
//! decides, a near miss that must fall to another rule. Facts are built with [`base`] and the
//! `with_*` edits of [`Build`], never as whole struct literals.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use super::load::parse_profile;
use super::*;
use crate::facts::{DevNum, FileType, Mapping, SockFilter, SocketFact, UnixPeer};
use crate::resolve::Via;
use crate::scope::fsnotify::Watches;

// ── Facts ────────────────────────────────────────────────────────────────────────────────────

const MIB: u64 = 1 << 20;

/// An open fd 3 of pid 100, with the mode, filesystem and visibility a real file of that type
/// has (values from a live scan of the fdzoo fixtures).
pub(crate) fn base(file_type: FileType) -> FileFact {
    let (mode, fs_type, fs_magic, dev, name, visible) = match file_type {
        FileType::Reg => (0o100644, "ext4", 0xef53, (254, 0), "reg.txt", true),
        FileType::Dir => (0o40755, "ext4", 0xef53, (254, 0), "zoo", true),
        FileType::Lnk => (0o120777, "ext4", 0xef53, (254, 0), "link", true),
        FileType::Chr => (0o20666, "devtmpfs", 0x1021994, (0, 6), "null", true),
        FileType::Blk => (0o60660, "devtmpfs", 0x1021994, (0, 6), "vda", true),
        FileType::Fifo => (0o10600, "pipefs", 0x50495045, (0, 15), "", false),
        // The kernel side reads no socket's name.
        FileType::Sock => (0o140777, "sockfs", 0x534f434b, (0, 9), "", false),
        FileType::None => (
            0o600,
            "anon_inodefs",
            0x9041934,
            (0, 16),
            "[eventfd]",
            false,
        ),
    };
    FileFact {
        pid: 100,
        fd: Some(3),
        mapping: None,
        f_op: 0xffff_ffff_8260_0000,
        file_type,
        mode,
        rdev: None,
        dev: DevNum {
            major: dev.0,
            minor: dev.1,
        },
        ino: 85393,
        size: 0,
        allocated: 0,
        nlink: 1,
        fs_type: fs_type.into(),
        fs_magic,
        name: name.into(),
        f_flags: 2,
        // Pseudo files (pipes, sockets, anon inodes) never had a name to unlink.
        unlinked: !visible,
        mount_visible: Some(visible),
        mnt_id: Some(if visible { 27 } else { 17 }),
        locked: Some(false),
        locks_unwalked: false,
        socket: None,
        pidfd_target: None,
        pidfd_dead: None,
        tty_index: None,
        bpf_map_type: None,
        inode_known: true,
        watches: None,
    }
}

/// Chained edits on a fact: `base(FileType::Chr).with_rdev(136, 0).with_fs("devpts")`.
trait Build: Sized {
    fn with(self, edit: impl FnOnce(&mut FileFact)) -> Self;

    fn with_name(self, name: &str) -> Self {
        self.with(|f| f.name = name.into())
    }
    fn with_fs(self, fs_type: &str) -> Self {
        self.with(|f| f.fs_type = fs_type.into())
    }
    fn with_ino(self, ino: u64) -> Self {
        self.with(|f| f.ino = ino)
    }
    fn with_dev(self, major: u32, minor: u32) -> Self {
        self.with(|f| f.dev = DevNum { major, minor })
    }
    fn with_rdev(self, major: u32, minor: u32) -> Self {
        self.with(|f| f.rdev = Some(DevNum { major, minor }))
    }
    /// On a mount the task cannot see (internal, detached, or another namespace's).
    fn with_hidden_mount(self, mnt_id: u32) -> Self {
        self.with(|f| {
            f.mount_visible = Some(false);
            f.mnt_id = Some(mnt_id);
        })
    }
    /// Unlinked with no links left, of `size` bytes, all of them allocated.
    fn with_deleted(self, size: u64) -> Self {
        self.with(|f| {
            f.nlink = 0;
            f.unlinked = true;
            f.size = size;
            f.allocated = size;
        })
    }
    /// Nothing allocated on disk, whatever the size (a sparse file).
    fn with_sparse(self) -> Self {
        self.with(|f| f.allocated = 0)
    }
    fn with_lock(self) -> Self {
        self.with(|f| f.locked = Some(true))
    }
    fn with_socket(self, family: &str, sk_type: &str, protocol: u16, state: &str) -> Self {
        self.with(|f| {
            f.socket = Some(Box::new(SocketFact {
                family: names::family(family).expect("family name"),
                sk_type: names::sock_type(sk_type).expect("socket type name"),
                protocol,
                state: names::tcp_state(state).expect("TCP state name"),
                backlog: Some(0),
                peer: None,
                peer_known: family == "unix",
                filter: None,
                udp_corked: None,
                wqueue: None,
                rqueue: None,
                unwatched: false,
            }))
        })
    }
    /// A unix peer (the caller's [`Context`] says where it lives).
    fn with_peer(self, ino: u64, named: bool) -> Self {
        self.with(|f| {
            f.socket.as_mut().expect("a socket").peer = Some(UnixPeer {
                ino,
                closed: false,
                named,
            })
        })
    }
    fn with_backlog(self, backlog: Option<u32>) -> Self {
        self.with(|f| f.socket.as_mut().expect("a socket").backlog = backlog)
    }
    /// The same file as a mapping (no fd) instead of an open fd.
    fn with_mapping(self, shared: bool) -> Self {
        self.with(|f| {
            f.fd = None;
            f.mapping = Some(Box::new(Mapping {
                start: 0x7f4e_52cd_e000,
                end: 0x7f4e_52ce_0000,
                vm_flags: if shared { 0x8 | 0x3 } else { 0x3 },
                pgoff: 0,
            }));
            f.mnt_id = None;
            f.locked = None;
        })
    }
}

impl Build for FileFact {
    fn with(mut self, edit: impl FnOnce(&mut FileFact)) -> Self {
        edit(&mut self);
        self
    }
}

fn reg() -> FileFact {
    base(FileType::Reg)
}

fn anon(name: &str) -> FileFact {
    base(FileType::None).with_name(name)
}

/// An inotify fd whose marks CRIU reaches as `watches` says.
fn watching(watches: Watches) -> FileFact {
    FileFact {
        watches: Some(Box::new(watches)),
        ..anon("inotify")
    }
}

fn chr(major: u32, minor: u32) -> FileFact {
    base(FileType::Chr).with_rdev(major, minor)
}

fn sock(family: &str, sk_type: &str, protocol: u16, state: &str) -> FileFact {
    base(FileType::Sock).with_socket(family, sk_type, protocol, state)
}

fn unix(sk_type: &str) -> FileFact {
    sock("unix", sk_type, 0, "close")
}

fn tcp(state: &str) -> FileFact {
    sock("inet", "stream", 6, state)
}

/// A pty slave `/dev/pts/0` (rdev 136:0) on the devpts mounted as dev 0:26.
fn pts0() -> FileFact {
    chr(136, 0)
        .with_fs("devpts")
        .with_dev(0, 26)
        .with_name("0")
        .with(|f| f.tty_index = Some(0))
}

/// The context of a file off the kernel's internal shmem mount, whose device is known.
fn ctx() -> Context {
    Context {
        internal_shm: Some(false),
        ..Context::default()
    }
}

/// The context of a file on the kernel's internal shmem mount: a memfd, a SysV segment, shared
/// anonymous memory.
fn shm() -> Context {
    Context {
        internal_shm: Some(true),
        ..ctx()
    }
}

fn peer(place: Place) -> Context {
    Context {
        peer: Some(place),
        ..ctx()
    }
}

fn ops(name: &str) -> OpsIdentity {
    OpsIdentity {
        addr: 0xffff_ffff_8260_0000,
        name: Some(name.into()),
        module: None,
        members: BTreeMap::new(),
        via: Via::DataSymbol,
    }
}

// ── Judging ──────────────────────────────────────────────────────────────────────────────────

fn criu4() -> &'static Profile {
    static PROFILE: OnceLock<Profile> = OnceLock::new();
    PROFILE.get_or_init(|| load_profile("criu-4").expect("criu-4 loads"))
}

/// [`classify`], checked against the verdict alone that the daemon asks for, from rules kept
/// per kind across every test's files (all judged without ops tables, as the cache's contract
/// asks).
#[track_caller]
fn judge(f: &FileFact, c: &Context) -> Judgement {
    static KINDS: OnceLock<KindRules> = OnceLock::new();
    let j = classify(criu4(), f, None, c);
    let kinds = KINDS.get_or_init(KindRules::default);
    assert_eq!(kinds.verdict(criu4(), f, None, c), j.verdict);
    j
}

/// As [`judge`], with an ops table of its own, and so rules kept for this file alone.
#[track_caller]
fn judge_ops(f: &FileFact, o: &OpsIdentity, c: &Context) -> Judgement {
    let j = classify(criu4(), f, Some(o), c);
    let kinds = KindRules::default();
    assert_eq!(kinds.verdict(criu4(), f, Some(o), c), j.verdict);
    j
}

#[track_caller]
fn expect(j: &Judgement, verdict: Verdict, rule: &str, options: &[&str]) {
    let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        (j.verdict, j.rule.as_str(), &j.options),
        (verdict, rule, &options),
        "{j:#?}"
    );
}

fn profile_of(rules: &str) -> Profile {
    let text =
        format!("[profile]\nname = \"test\"\ncheckpointer = \"criu\"\nversion = \"0\"\n{rules}");
    parse_profile(&text, "test").expect("test profile parses")
}

// ── One matching example per rule ────────────────────────────────────────────────────────────

struct Example {
    /// The oracle case it stands for, or what it is.
    what: &'static str,
    fact: FileFact,
    ops: Option<OpsIdentity>,
    ctx: Context,
    verdict: Verdict,
    rule: &'static str,
    kind: &'static str,
    options: &'static [&'static str],
}

fn ex(
    what: &'static str,
    fact: FileFact,
    ctx: Context,
    (verdict, rule, kind): (Verdict, &'static str, &'static str),
    options: &'static [&'static str],
) -> Example {
    Example {
        what,
        fact,
        ops: None,
        ctx,
        verdict,
        rule,
        kind,
        options,
    }
}

impl Example {
    fn with_ops(mut self, name: &str) -> Self {
        self.ops = Some(ops(name));
        self
    }
}

use Verdict::{Blocks, Needs, Ok as Fine, Unknown};

/// Every rule of `criu-4` with a file that reaches it, in profile order.
fn examples() -> Vec<Example> {
    let own_netns = Context {
        own_netns: true,
        ..ctx()
    };
    let sysv = || {
        reg()
            .with_fs("tmpfs")
            .with_name("SYSV00000000")
            .with_hidden_mount(0)
            .with(|f| f.unlinked = true)
            .with_mapping(true)
    };
    vec![
        ex(
            "inode unreadable",
            anon("").with(|f| f.inode_known = false),
            ctx(),
            (Unknown, "facts-unreadable", "none"),
            &[],
        ),
        ex(
            "sysv_shm_attached",
            sysv(),
            shm(),
            (Blocks, "map-sysv-shm-foreign-ipcns", "sysv-shm"),
            &[],
        ),
        ex(
            "ns_ipc_sysv_shm_attached",
            sysv(),
            Context {
                own_ipcns: true,
                ..shm()
            },
            (Fine, "map-sysv-shm", "sysv-shm"),
            &[],
        ),
        ex(
            "io_uring_mapped",
            anon("[io_uring]").with_mapping(true),
            ctx(),
            (Blocks, "map-io-uring", "io_uring"),
            &[],
        ),
        ex(
            "aio_ring",
            anon("[aio]").with_fs("aio").with_mapping(true),
            ctx(),
            (Fine, "map-aio-ring", "aio"),
            &[],
        ),
        ex(
            "mmap_anon_shared",
            reg()
                .with_fs("tmpfs")
                .with_name("dev/zero")
                .with_hidden_mount(0)
                .with_mapping(true),
            shm(),
            (Fine, "map-shmem", "shmem"),
            &[],
        ),
        ex(
            "MAP_HUGETLB",
            reg()
                .with_fs("hugetlbfs")
                .with_name("anon_hugepage")
                .with_hidden_mount(0)
                .with_mapping(true),
            ctx(),
            (Fine, "map-hugetlb", "hugetlb"),
            &[],
        ),
        ex(
            "mmap_devzero_private",
            chr(1, 5).with_name("zero").with_mapping(false),
            ctx(),
            (Fine, "map-mem-device", "mem-device"),
            &[],
        ),
        ex(
            "perf_event_mmap",
            anon("[perf_event]").with_mapping(true),
            ctx(),
            (Blocks, "map-device", "device-mapping"),
            &[],
        ),
        ex(
            "mapped file on a detached mount",
            reg().with_hidden_mount(52).with_mapping(true),
            ctx(),
            (Blocks, "map-file-hidden-mount", "mapped-file"),
            &[],
        ),
        ex(
            "mapped deleted 2 MiB file",
            reg().with_deleted(2 * MIB).with_mapping(false),
            ctx(),
            (Needs, "map-ghost-too-big", "mapped-file"),
            &["--ghost-limit 2M"],
        ),
        ex(
            "mmap_file_shared_nofd",
            reg().with_mapping(true),
            ctx(),
            (Fine, "map-file", "mapped-file"),
            &[],
        ),
        ex(
            "socket without socket facts",
            base(FileType::Sock),
            ctx(),
            (Unknown, "socket-facts-unreadable", "socket"),
            &[],
        ),
        ex(
            "unix_stream_ext",
            unix("stream").with_ino(637636).with_peer(637640, true),
            peer(Place::Outside),
            (Needs, "unix-stream-peer-outside", "unix"),
            &["--external unix[637636]"],
        ),
        ex(
            "unix_dgram_ext",
            unix("dgram").with_ino(639479).with_peer(639480, true),
            peer(Place::Outside),
            (Needs, "unix-dgram-named-peer-outside", "unix"),
            &["--ext-unix-sk", "--external unix[639479]"],
        ),
        ex(
            "unix dgram, unnamed peer outside",
            unix("dgram").with_ino(700).with_peer(701, false),
            peer(Place::Outside),
            (Needs, "unix-dgram-unnamed-peer-outside", "unix"),
            &["--external unix[700]"],
        ),
        ex(
            "unix_stream_pair",
            unix("stream").with_peer(634638, false),
            peer(Place::Inside),
            (Fine, "unix", "unix"),
            &[],
        ),
        ex(
            "tcp_listen_inflight",
            tcp("listen").with_backlog(Some(1)),
            ctx(),
            (Needs, "tcp-listen-inflight", "tcp"),
            &["--skip-in-flight"],
        ),
        ex(
            "tcp_listen4",
            tcp("listen"),
            ctx(),
            (Fine, "tcp-idle", "tcp"),
            &[],
        ),
        ex(
            "tcp_est_client",
            tcp("established"),
            ctx(),
            (Needs, "tcp-connected", "tcp"),
            &["--tcp-established", "--tcp-close"],
        ),
        ex(
            "TCP in SYN_RECV",
            tcp("syn_recv"),
            ctx(),
            (Blocks, "tcp-other-state", "tcp"),
            &[],
        ),
        ex(
            "raw_inet_icmp",
            sock("inet", "raw", 1, "close"),
            ctx(),
            (Fine, "inet-raw", "inet-raw"),
            &[],
        ),
        ex(
            "udp4_bound",
            sock("inet", "dgram", 17, "close"),
            ctx(),
            (Fine, "inet-dgram", "udp"),
            &[],
        ),
        ex(
            "inet_sctp",
            sock("inet", "seqpacket", 132, "close"),
            ctx(),
            (Blocks, "inet-unsupported-proto", "inet"),
            &[],
        ),
        ex(
            "netlink_route",
            sock("netlink", "raw", 0, "close"),
            ctx(),
            (Fine, "netlink-packet", "socket"),
            &[],
        ),
        ex(
            "vsock_stream",
            sock("vsock", "stream", 0, "close"),
            ctx(),
            (Blocks, "socket-unsupported-family", "socket"),
            &[],
        ),
        ex(
            "pidfd_ext",
            anon("[pidfd]").with_fs("pidfs"),
            Context {
                pidfd_target: Some(Place::Outside),
                ..ctx()
            },
            (Blocks, "pidfd-outside", "pidfd"),
            &[],
        ),
        ex(
            "pidfd whose target could not be read",
            anon("[pidfd]").with_fs("pidfs"),
            ctx(),
            (Unknown, "pidfd-target-unknown", "pidfd"),
            &[],
        ),
        ex(
            "pidfd_self",
            anon("[pidfd]").with_fs("pidfs"),
            Context {
                pidfd_target: Some(Place::Inside),
                ..ctx()
            },
            (Fine, "pidfd", "pidfd"),
            &[],
        ),
        ex(
            "io_uring",
            anon("[io_uring]"),
            ctx(),
            (Blocks, "io-uring", "io_uring"),
            &[],
        ),
        ex(
            "inotify watching an overlay file outside CRIU's irmap hints",
            watching(Watches::ScanPath {
                ino: 7,
                path: "/srv/app.conf".into(),
            }),
            ctx(),
            (Needs, "fsnotify-scan-path", "inotify"),
            &["--irmap-scan-path /srv/app.conf"],
        ),
        ex(
            "inotify watching an overlay inode no path leads to",
            watching(Watches::Lost { ino: 7 }),
            ctx(),
            (Blocks, "fsnotify-lost", "inotify"),
            &[],
        ),
        ex(
            "inotify watching an overlay inode the kernel gives no handle",
            watching(Watches::NoHandle { ino: 7 }),
            ctx(),
            (Blocks, "fsnotify-no-handle", "inotify"),
            &[],
        ),
        ex(
            "eventfd",
            anon("[eventfd]"),
            ctx(),
            (Fine, "anon-supported", "[eventfd]"),
            &[],
        ),
        ex(
            "bpf_map_hash",
            anon("bpf-map").with(|f| f.bpf_map_type = Some(1)),
            ctx(),
            (Fine, "bpf-map-dumpable", "bpf-map"),
            &[],
        ),
        ex(
            "bpf_map_ringbuf",
            anon("bpf-map").with(|f| f.bpf_map_type = Some(27)),
            ctx(),
            (Blocks, "bpf-map-type", "bpf-map"),
            &[],
        ),
        ex(
            "userfaultfd",
            anon("[userfaultfd]"),
            ctx(),
            (Blocks, "anon-unsupported", "[userfaultfd]"),
            &[],
        ),
        ex(
            "memfd_secret",
            base(FileType::Reg)
                .with_fs("secretmem")
                .with_name("[secretmem]")
                .with_hidden_mount(20)
                .with_deleted(0),
            ctx(),
            (Blocks, "secretmem", "memfd_secret"),
            &[],
        ),
        ex(
            "ext_pty_slave",
            pts0(),
            Context {
                tty_master: Some(Place::Outside),
                ..ctx()
            },
            (Needs, "pty-slave-master-outside", "tty"),
            &[
                "--shell-job",
                "--external tty[8800:1a]",
                "--orphan-pts-master",
            ],
        ),
        ex(
            "two_ext_pty_slaves",
            pts0(),
            Context {
                tty_master: Some(Place::Outside),
                external_ptys: 2,
                ..ctx()
            },
            (Needs, "pty-slaves-master-outside", "tty"),
            &["--external tty[8800:1a]"],
        ),
        ex(
            "dev_ptmx_only",
            chr(5, 2).with_name("ptmx").with(|f| f.tty_index = Some(0)),
            ctx(),
            (Fine, "tty", "tty"),
            &[],
        ),
        ex(
            "dev_net_tun",
            chr(10, 200).with_name("tun"),
            ctx(),
            (Blocks, "tun-foreign-netns", "tun"),
            &[],
        ),
        ex(
            "ns_net_dev_net_tun",
            chr(10, 200).with_name("tun"),
            own_netns,
            (Fine, "tun", "tun"),
            &[],
        ),
        ex(
            "autofs control device",
            chr(10, 235).with_name("autofs"),
            ctx(),
            (Fine, "autofs", "autofs"),
            &[],
        ),
        ex(
            "dev_null",
            chr(1, 3),
            ctx(),
            (Fine, "mem-device", "mem-device"),
            &[],
        ),
        ex(
            "dev_kvm",
            chr(10, 232).with_name("kvm"),
            ctx(),
            (Blocks, "device-unsupported", "device"),
            &[],
        )
        .with_ops("kvm_chardev_ops"),
        ex(
            "pipe_pair",
            base(FileType::Fifo),
            ctx(),
            (Fine, "fifo", "pipe"),
            &[],
        ),
        ex(
            "nsfs of a foreign namespace",
            reg()
                .with_fs("nsfs")
                .with_name("net:[4026532000]")
                .with_hidden_mount(4),
            Context {
                ns_member: Some(false),
                ..ctx()
            },
            (Blocks, "nsfs-foreign", "nsfs"),
            &[],
        ),
        ex(
            "nsfs_own_net",
            reg()
                .with_fs("nsfs")
                .with_name("net:[4026531833]")
                .with_hidden_mount(4),
            Context {
                ns_member: Some(true),
                ..ctx()
            },
            (Fine, "nsfs", "nsfs"),
            &[],
        ),
        ex(
            "memfd",
            reg()
                .with_fs("tmpfs")
                .with_name("memfd:zoo-memfd")
                .with_hidden_mount(1)
                .with_deleted(4096),
            shm(),
            (Fine, "memfd", "memfd"),
            &[],
        ),
        ex(
            "open_tree_clone",
            base(FileType::Dir).with_name("/").with_hidden_mount(52),
            ctx(),
            (Blocks, "hidden-mount", "file"),
            &[],
        ),
        ex(
            "flock_ex",
            reg().with_lock(),
            ctx(),
            (Needs, "file-locks", "locked-file"),
            &["--file-locks"],
        ),
        ex(
            "reg_deleted_big",
            reg().with_deleted(2 * MIB),
            ctx(),
            (Needs, "ghost-too-big", "deleted-file"),
            &["--ghost-limit 2M"],
        ),
        ex(
            "reg_deleted_small",
            reg().with_deleted(4096),
            ctx(),
            (Fine, "ghost", "deleted-file"),
            &[],
        ),
        ex(
            "reg_deleted_linked",
            reg().with(|f| {
                f.unlinked = true;
                f.nlink = 1;
            }),
            ctx(),
            (Needs, "unlinked-but-linked", "unlinked-file"),
            &["--link-remap"],
        ),
        ex("reg_ext4", reg(), ctx(), (Fine, "file", "file"), &[]),
        // Issue 15: each proven by a real CRIU 4.2.1 dump of the fdzoo case of that name.
        ex(
            "packet_rx_ring",
            sock("packet", "raw", 0, "close")
                .with(|f| f.socket = None)
                .with_mapping(true),
            Context {
                socket_fd: Some(Place::Inside),
                ..ctx()
            },
            (Fine, "map-packet-ring", "packet-ring"),
            &[],
        ),
        ex(
            "packet_rx_ring_nofd",
            sock("packet", "raw", 0, "close")
                .with(|f| f.socket = None)
                .with_mapping(true),
            Context {
                socket_fd: Some(Place::Outside),
                ..ctx()
            },
            (Blocks, "map-socket-not-open", "packet-ring"),
            &[],
        ),
        ex(
            "sock_filter_ebpf",
            sock("inet", "dgram", 17, "close")
                .with(|f| f.socket.as_mut().expect("a socket").filter = Some(SockFilter::Ebpf)),
            ctx(),
            (Blocks, "sock-filter-ebpf", "socket"),
            &[],
        ),
        ex(
            "udp4_corked",
            sock("inet", "dgram", 17, "close")
                .with(|f| f.socket.as_mut().expect("a socket").udp_corked = Some(true)),
            ctx(),
            (Blocks, "udp-corked", "udp"),
            &[],
        ),
        ex(
            "udp4_rqueue",
            sock("inet", "dgram", 17, "close")
                .with(|f| f.socket.as_mut().expect("a socket").rqueue = Some(100)),
            ctx(),
            (Fine, "udp-read-queue-dropped", "udp"),
            &[],
        ),
        ex(
            "pidfd_thread",
            anon("[pidfd]")
                .with_fs("pidfs")
                .with(|f| f.f_flags = 0o200 | 0o2),
            Context {
                pidfd_target: Some(Place::Inside),
                ..ctx()
            },
            (Blocks, "pidfd-thread", "pidfd"),
            &[],
        ),
        ex(
            "pidfd_dead",
            anon("[pidfd]")
                .with_fs("pidfs")
                .with(|f| f.pidfd_dead = Some(true)),
            Context {
                pidfd_target: Some(Place::Outside),
                ..ctx()
            },
            (Fine, "pidfd-dead", "pidfd"),
            &[],
        ),
    ]
}

#[test]
fn every_example_reaches_its_rule() {
    for e in examples() {
        let j = classify(criu4(), &e.fact, e.ops.as_ref(), &e.ctx);
        assert_eq!(
            (j.verdict, j.rule.as_str(), j.kind.as_str()),
            (e.verdict, e.rule, e.kind),
            "{}: {j:#?}",
            e.what
        );
        let options: Vec<&str> = j.options.iter().map(String::as_str).collect();
        assert_eq!(options, e.options, "{}", e.what);
        assert!(
            !j.reason.contains('{') && !j.options.iter().any(|o| o.contains('{')),
            "{}: unexpanded placeholder in {j:#?}",
            e.what
        );
    }
}

#[test]
fn every_rule_of_criu4_has_an_example() {
    let covered: BTreeSet<&str> = examples().iter().map(|e| e.rule).collect();
    let missing: Vec<&str> = criu4()
        .rules
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(missing.is_empty(), "rules without an example: {missing:?}");
}

// ── Mappings ─────────────────────────────────────────────────────────────────────────────────

#[test]
fn sysv_shm_is_recognised_by_its_ops_alone() {
    let shm = reg()
        .with_fs("tmpfs")
        .with_name("not-sysv")
        .with_mapping(true);
    let o = ops("shm_file_operations");
    expect(
        &judge_ops(&shm, &o, &ctx()),
        Blocks,
        "map-sysv-shm-foreign-ipcns",
        &[],
    );
    let own = Context {
        own_ipcns: true,
        ..ctx()
    };
    expect(&judge_ops(&shm, &o, &own), Fine, "map-sysv-shm", &[]);
}

#[test]
fn mapping_rules_do_not_apply_to_fds() {
    // The same io_uring file as an fd is judged by the fd rule.
    expect(&judge(&anon("[io_uring]"), &ctx()), Blocks, "io-uring", &[]);
    // A SysV-named tmpfs file held as an fd is not a SysV mapping: hidden tmpfs file.
    let fd = reg()
        .with_fs("tmpfs")
        .with_name("SYSV00000000")
        .with_hidden_mount(1);
    expect(&judge(&fd, &ctx()), Blocks, "hidden-mount", &[]);
}

#[test]
fn memfd_mapping_is_shmem() {
    let memfd_map = reg()
        .with_fs("tmpfs")
        .with_name("memfd:zoo-memfd-map")
        .with_hidden_mount(1)
        .with_deleted(8192)
        .with_mapping(true);
    expect(&judge(&memfd_map, &shm()), Fine, "map-shmem", &[]);
}

#[test]
fn device_mapping_reason_names_the_device_and_its_ops() {
    let drm = chr(226, 0).with_name("card0").with_mapping(true);
    let j = judge_ops(&drm, &ops("drm_gem_fops"), &ctx());
    expect(&j, Blocks, "map-device", &[]);
    assert_eq!(
        j.reason,
        "mapping of device 226:0 (drm_gem_fops): CRIU dumps no device memory"
    );
}

#[test]
fn mapped_deleted_file_up_to_the_ghost_limit_is_fine() {
    let at_limit = reg().with_deleted(MIB).with_mapping(true);
    expect(&judge(&at_limit, &ctx()), Fine, "map-file", &[]);
    let over = reg().with_deleted(3 * MIB + 1).with_mapping(true);
    expect(
        &judge(&over, &ctx()),
        Needs,
        "map-ghost-too-big",
        &["--ghost-limit 4M"],
    );
}

#[test]
fn hidden_mapped_file_reason_names_the_filesystem() {
    let j = judge(&reg().with_hidden_mount(52).with_mapping(true), &ctx());
    assert_eq!(
        j.reason,
        "mapped file on a mount the task cannot see (ext4): CRIU cannot find it in mountinfo"
    );
}

// ── Sockets ──────────────────────────────────────────────────────────────────────────────────

#[test]
fn unix_stream_and_seqpacket_peer_inside_is_fine() {
    for ty in ["stream", "seqpacket"] {
        let s = unix(ty).with_peer(9, false);
        expect(&judge(&s, &peer(Place::Inside)), Fine, "unix", &[]);
    }
}

#[test]
fn unix_seqpacket_peer_outside_needs_external_not_ext_unix_sk() {
    let s = unix("seqpacket").with_ino(636468).with_peer(1, true);
    expect(
        &judge(&s, &peer(Place::Outside)),
        Needs,
        "unix-stream-peer-outside",
        &["--external unix[636468]"],
    );
}

#[test]
fn unix_stream_peer_outside_reason_names_the_family() {
    let j = judge(&unix("stream").with_peer(1, true), &peer(Place::Outside));
    assert!(
        j.reason
            .starts_with("peer of this unix AF_UNIX stream/seqpacket socket"),
        "{}",
        j.reason
    );
}

#[test]
fn unix_dgram_peer_outside_but_unnamed_offers_only_external() {
    let s = unix("dgram").with_ino(4242).with_peer(4243, false);
    let j = judge(&s, &peer(Place::Outside));
    expect(
        &j,
        Needs,
        "unix-dgram-unnamed-peer-outside",
        &["--external unix[4242]"],
    );
    assert!(!j.options.contains(&"--ext-unix-sk".to_string()));
}

#[test]
fn unix_without_peer_or_with_closed_peer_is_fine() {
    // unix_dgram_unbound, unix_stream_listen_*: no peer at all.
    expect(&judge(&unix("dgram"), &ctx()), Fine, "unix", &[]);
    // unix_stream_orphan: the scope reports a closed peer as Place::None.
    let orphan = unix("stream").with_peer(0, false);
    expect(&judge(&orphan, &peer(Place::None)), Fine, "unix", &[]);
}

#[test]
fn tcp_listener_backlog_decides_inflight() {
    expect(
        &judge(&tcp("listen").with_backlog(Some(0)), &ctx()),
        Fine,
        "tcp-idle",
        &[],
    );
    expect(
        &judge(&tcp("listen").with_backlog(Some(1)), &ctx()),
        Needs,
        "tcp-listen-inflight",
        &["--skip-in-flight"],
    );
}

#[test]
fn tcp_unbound_and_v6_listen_are_fine() {
    expect(&judge(&tcp("close"), &ctx()), Fine, "tcp-idle", &[]);
    let v6 = sock("inet6", "stream", 6, "listen");
    expect(&judge(&v6, &ctx()), Fine, "tcp-idle", &[]);
}

#[test]
fn every_connected_tcp_state_needs_tcp_established() {
    for state in [
        "established",
        "syn_sent",
        "fin_wait1",
        "fin_wait2",
        "close_wait",
        "last_ack",
        "closing",
    ] {
        let j = judge(&sock("inet6", "stream", 6, state), &ctx());
        expect(
            &j,
            Needs,
            "tcp-connected",
            &["--tcp-established", "--tcp-close"],
        );
    }
}

#[test]
fn tcp_state_names_apply_to_tcp_only() {
    // An SCTP one-to-one socket uses the TCP state numbers but is not TCP.
    let sctp = sock("inet", "stream", 132, "established");
    let j = judge(&sctp, &ctx());
    expect(&j, Blocks, "inet-unsupported-proto", &[]);
    assert_eq!(
        j.reason,
        "AF_INET socket protocol CRIU does not support (only TCP, UDP, UDP-Lite, ICMP ping and raw)"
    );
    // A unix stream socket in "established" is judged as unix.
    let u = unix("stream").with_socket("unix", "stream", 0, "established");
    expect(&judge(&u, &ctx()), Fine, "unix", &[]);
}

#[test]
fn ping_and_udp6_sockets_are_fine() {
    for (family, proto) in [("inet", 1), ("inet6", 58), ("inet6", 17), ("inet", 136)] {
        let s = sock(family, "dgram", proto, "close");
        expect(&judge(&s, &ctx()), Fine, "inet-dgram", &[]);
    }
}

#[test]
fn packet_sockets_are_fine_and_other_families_block() {
    let packet = sock("packet", "dgram", 0, "close");
    expect(&judge(&packet, &ctx()), Fine, "netlink-packet", &[]);
    let alg = sock("alg", "seqpacket", 0, "close");
    let j = judge(&alg, &ctx());
    expect(&j, Blocks, "socket-unsupported-family", &[]);
    assert_eq!(
        j.reason,
        "CRIU has no dumper for AF_ALG sockets (Unknown socket collected)"
    );
}

// ── Anonymous inodes ─────────────────────────────────────────────────────────────────────────

#[test]
fn pidfd_on_anon_inodefs_is_recognised_by_name() {
    // Before pidfs (Linux < 6.9) a pidfd is an anon inode named [pidfd].
    let old = anon("[pidfd]");
    let outside = Context {
        pidfd_target: Some(Place::Outside),
        ..ctx()
    };
    expect(&judge(&old, &outside), Blocks, "pidfd-outside", &[]);
    let inside = Context {
        pidfd_target: Some(Place::Inside),
        ..ctx()
    };
    expect(&judge(&old, &inside), Fine, "pidfd", &[]);
}

#[test]
fn pidfd_on_pidfs_is_recognised_by_filesystem() {
    let pidfs = anon("").with_fs("pidfs");
    let inside = Context {
        pidfd_target: Some(Place::Inside),
        ..ctx()
    };
    expect(&judge(&pidfs, &inside), Fine, "pidfd", &[]);
    // A target that could not be read is not guessed to be outside.
    let unknown_target = ctx();
    expect(
        &judge(&pidfs, &unknown_target),
        Unknown,
        "pidfd-target-unknown",
        &[],
    );
}

#[test]
fn io_uring_by_name_and_by_ops_alone() {
    expect(&judge(&anon("[io_uring]"), &ctx()), Blocks, "io-uring", &[]);
    // The ops identity decides even when the dentry name says nothing.
    let renamed = anon("[something-else]");
    let mut by_members = ops("io_uring_fops");
    by_members.via = Via::Members;
    let j = judge_ops(&renamed, &by_members, &ctx());
    expect(&j, Blocks, "io-uring", &[]);
    assert_eq!(j.kind, "io_uring");
    // Without the identity the same file is just an unsupported anon inode.
    let j = judge(&renamed, &ctx());
    expect(&j, Blocks, "anon-unsupported", &[]);
    assert_eq!(j.kind, "[something-else]");
}

#[test]
fn supported_anon_inodes_are_fine_with_their_name_as_kind() {
    for name in [
        "[eventfd]",
        "[eventpoll]",
        "[signalfd]",
        "[timerfd]",
        "inotify",
        "[fanotify]",
    ] {
        let j = judge(&anon(name), &ctx());
        expect(&j, Fine, "anon-supported", &[]);
        assert_eq!(j.kind, name);
    }
}

#[test]
fn only_hash_and_array_bpf_maps_dump() {
    let map = |t: Option<u32>| anon("bpf-map").with(|f| f.bpf_map_type = t);
    for hash_or_array in [1, 2] {
        expect(
            &judge(&map(Some(hash_or_array)), &ctx()),
            Fine,
            "bpf-map-dumpable",
            &[],
        );
    }
    let ringbuf = judge(&map(Some(27)), &ctx());
    expect(&ringbuf, Blocks, "bpf-map-type", &[]);
    assert_eq!(ringbuf.kind, "bpf-map");
    assert_eq!(
        ringbuf.reason,
        "CRIU dumps only hash and array BPF maps; this one is ringbuf"
    );
    let percpu = judge(&map(Some(6)), &ctx());
    assert!(percpu.reason.ends_with("is percpu_array"), "{percpu:?}");
    // A type the kernel side could not read is not taken for a dumpable one.
    let unread = judge(&map(None), &ctx());
    expect(&unread, Blocks, "bpf-map-type", &[]);
    assert!(unread.reason.ends_with("is of unknown type"), "{unread:?}");
}

#[test]
fn unsupported_anon_inodes_block() {
    for name in [
        "[userfaultfd]",
        "[perf_event]",
        "bpf-prog",
        "[fscontext]",
        "bpf_link",
        "landlock-ruleset",
    ] {
        let j = judge(&anon(name), &ctx());
        expect(&j, Blocks, "anon-unsupported", &[]);
        assert_eq!(j.kind, name);
    }
}

#[test]
fn unsupported_anon_reason_names_the_ops() {
    let with_ops = judge_ops(&anon("[userfaultfd]"), &ops("userfaultfd_fops"), &ctx());
    assert_eq!(
        with_ops.reason,
        "CRIU has no dumper for anon inode [userfaultfd] (userfaultfd_fops)"
    );
    let without = judge(&anon("[userfaultfd]"), &ctx());
    assert_eq!(
        without.reason,
        "CRIU has no dumper for anon inode [userfaultfd] (0xffffffff82600000)"
    );
}

#[test]
fn secretmem_is_recognised_by_its_ops_alone() {
    let f = anon("").with_fs("weird");
    expect(
        &judge_ops(&f, &ops("secretmem_fops"), &ctx()),
        Blocks,
        "secretmem",
        &[],
    );
}

// ── Devices ──────────────────────────────────────────────────────────────────────────────────

#[test]
fn pty_slave_option_encodes_rdev_and_devpts_dev_like_stat() {
    let outside = Context {
        tty_master: Some(Place::Outside),
        ..ctx()
    };
    let j = judge(&pts0(), &outside);
    assert_eq!(j.options[1], "--external tty[8800:1a]");
    // Minors above 255 spill into the high bits as in glibc's makedev():
    // makedev(136, 300) = 0x10882c, makedev(0, 300) = 0x10002c.
    let pts300 = pts0().with_rdev(136, 300).with_dev(0, 300);
    let j = judge(&pts300, &outside);
    assert_eq!(j.options[1], "--external tty[10882c:10002c]");
}

#[test]
fn pty_slave_with_master_inside_is_fine() {
    let inside = Context {
        tty_master: Some(Place::Inside),
        ..ctx()
    };
    expect(&judge(&pts0(), &inside), Fine, "tty", &[]);
}

#[test]
fn controlling_tty_and_ptmx_are_fine() {
    // pty_ctty_devtty: /dev/tty is 5:0.
    expect(&judge(&chr(5, 0), &ctx()), Fine, "tty", &[]);
    expect(&judge(&chr(4, 1), &ctx()), Fine, "tty", &[]);
}

// CRIU's dump_chrdev() takes a character device as a tty only when get_tty_driver() knows it
// (criu/tty.c): 5:0 /dev/tty, 5:1 console, 5:2 ptmx, 4:1..63 virtual consoles, 128..135
// pty masters, 136 pty slaves, and the serial majors 188 (USB) and 204 (low-density). Any
// other minor of majors 4 and 5 is "Can't dump file ... (chr 4:64)".

#[test]
fn virtual_consoles_are_ttys() {
    for minor in [1, 7, 63] {
        expect(&judge(&chr(4, minor), &ctx()), Fine, "tty", &[]);
    }
}

#[test]
fn tty0_and_uart_serial_ports_are_not_ttys_criu_can_dump() {
    // /dev/tty0 (4:0) and /dev/ttyS0 (4:64): get_tty_driver() returns NULL for them.
    for minor in [0, 64, 255] {
        let j = judge(&chr(4, minor), &ctx());
        expect(&j, Blocks, "device-unsupported", &[]);
    }
}

#[test]
fn ttyaux_minors_beyond_ptmx_are_not_ttys_criu_can_dump() {
    // 5:3 is /dev/ttyprintk: TTYAUX_MAJOR knows minors 0, 1 and 2 only.
    expect(
        &judge(&chr(5, 3), &ctx()),
        Blocks,
        "device-unsupported",
        &[],
    );
}

#[test]
fn usb_and_low_density_serial_ports_are_ttys() {
    // /dev/ttyUSB0 (188:0) and /dev/ttyAMA0 (204:64) have CRIU's serial driver.
    for (major, minor) in [(188, 0), (204, 64)] {
        expect(&judge(&chr(major, minor), &ctx()), Fine, "tty", &[]);
    }
}

#[test]
fn pty_slaves_above_index_255_are_not_ptys_to_criu() {
    // get_tty_driver() knows only major 136 for slaves: /dev/pts/256 is 137:0.
    let inside = Context {
        tty_master: Some(Place::Inside),
        ..ctx()
    };
    let j = judge(&chr(137, 0).with_fs("devpts"), &inside);
    expect(&j, Blocks, "device-unsupported", &[]);
}

#[test]
fn tun_needs_the_tasks_own_netns() {
    let tun = chr(10, 200);
    expect(&judge(&tun, &ctx()), Blocks, "tun-foreign-netns", &[]);
    let own = Context {
        own_netns: true,
        ..ctx()
    };
    expect(&judge(&tun, &own), Fine, "tun", &[]);
}

#[test]
fn memory_devices_are_fine() {
    for minor in [3, 5, 7, 8, 9, 11] {
        expect(&judge(&chr(1, minor), &ctx()), Fine, "mem-device", &[]);
    }
}

#[test]
fn other_devices_block_naming_the_device() {
    let fuse = chr(10, 229).with_name("fuse");
    let j = judge_ops(&fuse, &ops("fuse_dev_operations"), &ctx());
    expect(&j, Blocks, "device-unsupported", &[]);
    assert_eq!(
        j.reason,
        "CRIU cannot dump devtmpfs device 10:229 (fuse_dev_operations): no dumper for that driver"
    );
    let disk = base(FileType::Blk).with_rdev(8, 0);
    expect(&judge(&disk, &ctx()), Blocks, "device-unsupported", &[]);
}

// ── Files ────────────────────────────────────────────────────────────────────────────────────

#[test]
fn memfd_on_hidden_tmpfs_is_fine_but_other_hidden_tmpfs_files_block() {
    let memfd = reg()
        .with_fs("tmpfs")
        .with_name("memfd:x")
        .with_hidden_mount(1);
    expect(&judge(&memfd, &shm()), Fine, "memfd", &[]);
    let internal = memfd.clone().with_name("dev/zero");
    let j = judge(&internal, &shm());
    expect(&j, Blocks, "hidden-mount", &[]);
    assert_eq!(
        j.reason,
        "file on a mount the task cannot see (tmpfs, mnt_id 1): a detached or internal mount, CRIU cannot find it in mountinfo"
    );
    // A memfd: name on a visible tmpfs is an ordinary file.
    let visible = memfd.with(|f| f.mount_visible = Some(true));
    expect(&judge(&visible, &ctx()), Fine, "file", &[]);
}

#[test]
fn memfd_on_hugetlbfs_blocks_as_hidden_mount() {
    // memfd_hugetlb: "Can't lookup mount=18 for fd=3".
    let huge = reg()
        .with_fs("hugetlbfs")
        .with_name("memfd:zoo-memfd-huge")
        .with_hidden_mount(18)
        .with_deleted(0);
    expect(&judge(&huge, &ctx()), Blocks, "hidden-mount", &[]);
}

#[test]
fn big_memfd_needs_no_ghost_limit() {
    // First match wins: memfd is before ghost-too-big.
    let big = reg()
        .with_fs("tmpfs")
        .with_name("memfd:big")
        .with_hidden_mount(1)
        .with_deleted(64 * MIB);
    expect(&judge(&big, &shm()), Fine, "memfd", &[]);
}

#[test]
fn ghost_limit_is_rounded_up_to_whole_mib() {
    expect(&judge(&reg().with_deleted(MIB), &ctx()), Fine, "ghost", &[]);
    expect(
        &judge(&reg().with_deleted(MIB + 1), &ctx()),
        Needs,
        "ghost-too-big",
        &["--ghost-limit 2M"],
    );
    let j = judge(&reg().with_deleted(2 * MIB), &ctx());
    assert!(j.reason.contains("size 2097152 bytes"), "{}", j.reason);
}

#[test]
fn ghost_limit_counts_allocated_blocks_not_size() {
    // CRIU >= 3.18 compares st_blocks * 512 with the limit: a sparse 2 MiB file is small.
    let sparse = reg().with_deleted(2 * MIB).with_sparse();
    expect(&judge(&sparse, &ctx()), Fine, "ghost", &[]);
    let half = reg().with_deleted(8 * MIB).with(|f| f.allocated = 3 * MIB);
    expect(
        &judge(&half, &ctx()),
        Needs,
        "ghost-too-big",
        &["--ghost-limit 3M"],
    );
    let mapped = sparse.with_mapping(true);
    expect(&judge(&mapped, &ctx()), Fine, "map-file", &[]);
}

#[test]
fn deleted_directory_is_a_ghost() {
    let d = base(FileType::Dir).with_deleted(4096);
    expect(&judge(&d, &ctx()), Fine, "ghost", &[]);
}

#[test]
fn locks_take_precedence_over_ghosts() {
    let j = judge(&reg().with_lock().with_deleted(2 * MIB), &ctx());
    expect(&j, Needs, "file-locks", &["--file-locks"]);
}

#[test]
fn hidden_mount_takes_precedence_over_locks() {
    let j = judge(&reg().with_lock().with_hidden_mount(52), &ctx());
    expect(&j, Blocks, "hidden-mount", &[]);
}

#[test]
fn unlocked_or_lock_unknown_file_is_fine() {
    expect(&judge(&reg(), &ctx()), Fine, "file", &[]);
    let unknown = reg().with(|f| f.locked = None);
    expect(&judge(&unknown, &ctx()), Fine, "file", &[]);
}

#[test]
fn linked_file_whose_name_is_still_there_is_fine() {
    let hard_linked = reg().with(|f| f.nlink = 2);
    expect(&judge(&hard_linked, &ctx()), Fine, "file", &[]);
}

#[test]
fn procfs_sysfs_and_symlinks_are_files() {
    let proc_status = reg().with_fs("proc").with_name("status");
    expect(&judge(&proc_status, &ctx()), Fine, "file", &[]);
    let sys = reg().with_fs("sysfs").with_name("enabled");
    expect(&judge(&sys, &ctx()), Fine, "file", &[]);
    expect(&judge(&base(FileType::Lnk), &ctx()), Fine, "file", &[]);
}

#[test]
fn foreign_namespace_file_blocks_own_is_fine() {
    let ns = reg().with_fs("nsfs").with_name("ipc:[4026531839]");
    let foreign = Context {
        ns_member: Some(false),
        ..ctx()
    };
    expect(&judge(&ns, &foreign), Blocks, "nsfs-foreign", &[]);
    let member = Context {
        ns_member: Some(true),
        ..ctx()
    };
    expect(&judge(&ns, &member), Fine, "nsfs", &[]);
}

// ── Unknown ──────────────────────────────────────────────────────────────────────────────────

#[test]
fn unreadable_inode_is_unknown_before_anything_else() {
    // Even a file that looks like io_uring by name: without inode facts nothing is judged.
    let f = anon("[io_uring]").with(|f| f.inode_known = false);
    let j = judge_ops(&f, &ops("io_uring_fops"), &ctx());
    expect(&j, Unknown, "facts-unreadable", &[]);
    assert_eq!(j.kind, "none");
}

#[test]
fn no_matching_rule_is_unknown() {
    let empty = profile_of("");
    let j = classify(&empty, &anon("[eventfd]"), None, &ctx());
    expect(&j, Unknown, NO_RULE, &[]);
    assert_eq!(j.kind, "[eventfd]");
    assert_eq!(
        j.reason,
        "profile test has no rule for this file (ops 0xffffffff82600000, none on anon_inodefs)"
    );
    let j = classify(&empty, &reg(), Some(&ops("ext4_file_operations")), &ctx());
    assert_eq!((j.verdict, j.kind.as_str()), (Unknown, "reg"));
    assert!(
        j.reason.contains("ops ext4_file_operations, reg on ext4"),
        "{}",
        j.reason
    );
}

#[test]
fn criu4_never_guesses_for_an_unclassified_kind() {
    // Not a socket, device, anon inode or file CRIU knows: no rule, so unknown, not ok.
    let odd = base(FileType::None)
        .with_fs("weirdfs")
        .with_name("[mystery]");
    let mut unnamed = ops("x");
    unnamed.name = None;
    unnamed.via = Via::Unnamed;
    unnamed
        .members
        .insert("release".into(), "mystery_release".into());
    let j = judge_ops(&odd, &unnamed, &ctx());
    expect(&j, Unknown, NO_RULE, &[]);
    assert!(j.reason.contains("ops ~mystery_release"), "{}", j.reason);
}

// ── Profile mechanics: order, templating, conditions ─────────────────────────────────────────

#[test]
fn first_matching_rule_wins() {
    let rules = |a: &str, b: &str| {
        profile_of(&format!(
            "[[rule]]\nid = \"{a}\"\nverdict = \"blocks\"\nwhen = [{{ file_type = \"reg\" }}]\n\
             [[rule]]\nid = \"{b}\"\nverdict = \"ok\"\nwhen = [{{ file_type = \"reg\" }}]\n"
        ))
    };
    let j = classify(&rules("first", "second"), &reg(), None, &ctx());
    assert_eq!((j.rule.as_str(), j.verdict), ("first", Blocks));
    let j = classify(&rules("second", "first"), &reg(), None, &ctx());
    assert_eq!(j.rule, "second");
}

#[test]
fn a_rule_without_conditions_matches_everything() {
    let p = profile_of("[[rule]]\nid = \"all\"\nverdict = \"ok\"\n");
    for f in [reg(), anon("[x]"), tcp("listen"), reg().with_mapping(true)] {
        assert_eq!(classify(&p, &f, None, &ctx()).rule, "all");
    }
}

#[test]
fn alternatives_match_when_any_holds_and_conditions_when_all_hold() {
    let p = profile_of(
        "[[rule]]\nid = \"r\"\nverdict = \"blocks\"\n\
         when = [{ fs_type = \"ext4\", name = \"a\" }, { fs_type = \"xfs\" }]\n",
    );
    let hit = |f: &FileFact| classify(&p, f, None, &ctx()).rule == "r";
    assert!(hit(&reg().with_name("a")));
    assert!(hit(&reg().with_fs("xfs")));
    assert!(!hit(&reg().with_name("b")));
}

#[test]
fn applies_to_separates_fds_from_mappings() {
    let p = profile_of(
        "[[rule]]\nid = \"fd\"\nverdict = \"ok\"\napplies_to = \"fd\"\n\
         [[rule]]\nid = \"map\"\nverdict = \"ok\"\napplies_to = \"mapping\"\n",
    );
    assert_eq!(classify(&p, &reg(), None, &ctx()).rule, "fd");
    assert_eq!(
        classify(&p, &reg().with_mapping(false), None, &ctx()).rule,
        "map"
    );
}

#[test]
fn kind_is_templated_and_defaults_to_the_file_type() {
    let p = profile_of(
        "[[rule]]\nid = \"t\"\nkind = \"{fs_type}/{name}\"\nverdict = \"ok\"\n\
         when = [{ file_type = \"none\" }]\n\
         [[rule]]\nid = \"d\"\nverdict = \"ok\"\n",
    );
    assert_eq!(
        classify(&p, &anon("[eventfd]"), None, &ctx()).kind,
        "anon_inodefs/[eventfd]"
    );
    assert_eq!(
        classify(&p, &base(FileType::Fifo), None, &ctx()).kind,
        "fifo"
    );
}

#[test]
fn every_placeholder_expands() {
    let p = profile_of(
        "[[rule]]\nid = \"t\"\nverdict = \"needs\"\n\
         reason = \"{ino} {peer_ino} {name} {fs_type} {mode} {major}:{minor} {size} {family} {mnt_id} {ops}\"\n\
         options = [\"{rdev_hex}:{dev_hex} {ghost_limit}\"]\n",
    );
    let s = unix("stream")
        .with_ino(7)
        .with_peer(8, false)
        .with_name("n")
        .with(|f| f.size = 5);
    let j = classify(&p, &s, Some(&ops("socket_file_ops")), &ctx());
    assert_eq!(
        j.reason,
        "7 8 n sockfs 140777 0:9 5 AF_UNIX 17 socket_file_ops"
    );
    // No rdev: the file's own device stands in for it.
    assert_eq!(j.options, ["9:9 1M"]);
}

#[test]
fn member_condition_matches_a_function_of_the_ops_table() {
    let p = profile_of(
        "[[rule]]\nid = \"poll\"\nverdict = \"blocks\"\nwhen = [{ member = \"io_uring_poll\" }]\n",
    );
    let mut o = ops("whatever");
    o.members.insert("poll".into(), "io_uring_poll".into());
    assert_eq!(classify(&p, &anon("[x]"), Some(&o), &ctx()).rule, "poll");
    assert_eq!(classify(&p, &anon("[x]"), None, &ctx()).rule, NO_RULE);
}

#[test]
fn ranges_and_numbers_match_device_numbers() {
    let p = profile_of(
        "[[rule]]\nid = \"r\"\nverdict = \"ok\"\nwhen = [{ major = [\"136-143\", 4] }]\n",
    );
    let hit = |f: &FileFact| classify(&p, f, None, &ctx()).rule == "r";
    assert!(hit(&chr(136, 0)) && hit(&chr(143, 9)) && hit(&chr(4, 1)));
    assert!(!hit(&chr(135, 0)) && !hit(&chr(144, 0)));
    // A file without rdev has no major.
    assert!(!hit(&reg()));
}

// ── Task rules ───────────────────────────────────────────────────────────────────────────────

fn task(session_leader: bool, traced: bool) -> Vec<(Verdict, String, Vec<String>)> {
    classify_task(
        criu4(),
        &TaskFacts {
            session_leader,
            traced,
            nested_pidns: false,
            locked_fds: Vec::new(),
        },
    )
    .into_iter()
    .map(|j| {
        assert_eq!(j.kind, "task");
        (j.verdict, j.rule, j.options)
    })
    .collect()
}

#[test]
fn session_leader_not_traced_passes_every_task_rule() {
    assert!(task(true, false).is_empty());
}

#[test]
fn not_a_session_leader_needs_shell_job() {
    assert_eq!(
        task(false, false),
        [(
            Needs,
            String::from("not-session-leader"),
            vec![String::from("--shell-job")]
        )]
    );
}

#[test]
fn traced_task_blocks() {
    assert_eq!(
        task(true, true),
        [(Blocks, String::from("traced"), Vec::<String>::new())]
    );
}

#[test]
fn a_task_in_a_nested_pid_namespace_blocks() {
    let rules: Vec<(Verdict, String)> = classify_task(
        criu4(),
        &TaskFacts {
            session_leader: true,
            traced: false,
            nested_pidns: true,
            locked_fds: Vec::new(),
        },
    )
    .into_iter()
    .map(|j| (j.verdict, j.rule))
    .collect();
    assert_eq!(rules, [(Blocks, String::from("nested-pidns"))]);
}

/// CRIU stops at any lock of a dumped task (criu/file-lock.c), whatever the locked file's
/// kind: the task rule names the fds, in both profiles.
#[test]
fn a_task_holding_locks_needs_file_locks_and_is_told_which_fds() {
    let criu317 = load_profile("criu-3.17").expect("criu-3.17 loads");
    for profile in [criu4(), &criu317] {
        let judged = classify_task(
            profile,
            &TaskFacts {
                session_leader: true,
                locked_fds: vec![4, 7],
                ..TaskFacts::default()
            },
        );
        let j = judged
            .iter()
            .find(|j| j.rule == "holds-file-locks")
            .expect("the lock rule");
        assert_eq!(
            (j.verdict, j.reason.as_str(), j.options.as_slice()),
            (
                Needs,
                "the task holds a file lock (on fd 4, 7)",
                [String::from("--file-locks")].as_slice()
            )
        );
    }
}

#[test]
fn task_rules_all_apply_not_only_the_first() {
    let rules: Vec<String> = task(false, true).into_iter().map(|(_, r, _)| r).collect();
    assert_eq!(rules, ["not-session-leader", "traced"]);
}

#[test]
fn a_classic_filter_is_dumped_an_ebpf_one_is_not() {
    let filtered = |kind| {
        sock("netlink", "raw", 0, "close")
            .with(move |f| f.socket.as_mut().expect("a socket").filter = Some(kind))
    };
    expect(
        &judge(&filtered(SockFilter::Classic), &ctx()),
        Fine,
        "netlink-packet",
        &[],
    );
    expect(
        &judge(&filtered(SockFilter::Ebpf), &ctx()),
        Blocks,
        "sock-filter-ebpf",
        &[],
    );
}

#[test]
fn socket_kinds_ok_whatever_their_state_are_found() {
    let ok_kind = |f: &FileFact| always_ok(criu4(), f, None, Assume::Nothing);
    assert_eq!(ok_kind(&sock("inet", "dgram", 17, "close")), Some(false));
    assert_eq!(ok_kind(&sock("netlink", "raw", 0, "close")), Some(false));
    assert_eq!(
        ok_kind(&sock("inet", "stream", 6, "close")),
        None,
        "a TCP socket's state decides"
    );
    assert_eq!(
        ok_kind(&sock("unix", "stream", 0, "close")),
        None,
        "a unix socket's peer decides"
    );
    assert_eq!(ok_kind(&sock("alg", "seqpacket", 0, "close")), None);
    let unreadable = sock("inet", "dgram", 17, "close").with(|f| f.socket = None);
    assert_eq!(ok_kind(&unreadable), None, "no kind to stand for");
}

// ── The classifier ───────────────────────────────────────────────────────────────────────────

/// One classifier judges every example, and variants of each in its state and context, as
/// [`classify`] does, in either order: what it learns of a kind from one file (the rules it could
/// match) must hold for every other file of that kind.
#[test]
fn a_classifier_judges_every_file_as_classify_does() {
    let mut examples = examples();
    // Each named ops table at its own address, so that files are told apart by their tables
    // as on a real host.
    let mut tables = OpsTables::default();
    for (e, addr) in examples.iter_mut().zip(0xffff_ffff_9000_0000u64..) {
        if let Some(o) = &mut e.ops {
            let addr = tables
                .iter()
                .find(|(_, t)| t.name == o.name)
                .map_or(addr, |(a, _)| *a);
            o.addr = addr;
            e.fact.f_op = addr;
            tables.insert(addr, o.clone());
        }
    }
    let variants: [fn(&mut FileFact, &mut Context); 9] = [
        |f, _| f.inode_known = !f.inode_known,
        |f, _| {
            f.nlink = 0;
            f.size = 1 << 40;
        },
        |f, _| f.unlinked = !f.unlinked,
        |f, _| f.mount_visible = Some(false),
        |f, _| f.locked = Some(true),
        |f, _| f.name = "memfd:x".into(),
        |f, _| {
            if let Some(s) = &mut f.socket {
                s.state = 1;
                s.peer = None;
                s.backlog = Some(1);
            }
        },
        |_, c| {
            c.peer = Some(Place::Outside);
            c.tty_master = Some(Place::Outside);
            c.external_ptys = 2;
        },
        |_, c| {
            c.own_netns = !c.own_netns;
            c.ns_member = Some(false);
        },
    ];
    let mut files: Vec<(String, FileFact, Context)> = Vec::new();
    for e in &examples {
        files.push((e.what.to_string(), e.fact.clone(), e.ctx.clone()));
        for (i, vary) in variants.iter().enumerate() {
            let (mut f, mut c) = (e.fact.clone(), e.ctx.clone());
            vary(&mut f, &mut c);
            files.push((format!("{}, variant {i}", e.what), f, c));
        }
    }
    let criu317 = load_profile("criu-3.17").expect("criu-3.17 loads");
    for profile in [criu4(), &criu317] {
        for reversed in [false, true] {
            let classifier = Classifier::new(profile, &tables);
            let mut order: Vec<&(String, FileFact, Context)> = files.iter().collect();
            if reversed {
                order.reverse();
            }
            for (what, f, c) in order {
                assert_eq!(
                    classifier.classify(f, c),
                    classify(profile, f, tables.get(&f.f_op), c),
                    "{what} ({})",
                    profile.profile.name
                );
            }
        }
    }
}

/// A kind judged ok whatever its state (or, with [`Assume::Plain`], whatever its state when
/// plain) is ok in every state of the variants the assumption allows, in every context: the
/// kernel counts such files without any other look at them. (Socket kinds are judged as fresh
/// sockets, for the daemon's installs: `socket_kinds_ok_whatever_their_state_are_found`.)
#[test]
fn a_kind_always_ok_is_ok_in_every_state_allowed() {
    let plain = |f: &FileFact| {
        f.mount_visible == Some(true) && f.locked == Some(false) && f.nlink > 0 && !f.unlinked
    };
    let variants: [fn(&mut FileFact, &mut Context); 8] = [
        |_, _| {},
        |f, _| {
            f.nlink = 0;
            f.size = 1 << 40;
            f.allocated = 1 << 40;
        },
        |f, _| f.unlinked = !f.unlinked,
        |f, _| f.mount_visible = Some(false),
        |f, _| f.locked = Some(true),
        |f, _| (f.mount_visible, f.locked) = (Some(true), Some(false)),
        |f, _| f.size = 1 << 40,
        |_, c| {
            c.own_netns = !c.own_netns;
            c.own_ipcns = !c.own_ipcns;
            c.peer = Some(Place::Outside);
            c.pidfd_target = Some(Place::Outside);
            c.tty_master = Some(Place::Outside);
            c.external_ptys = 2;
        },
    ];
    let criu317 = load_profile("criu-3.17").expect("criu-3.17 loads");
    let mut found = BTreeMap::new();
    for profile in [criu4(), &criu317] {
        let files = examples()
            .into_iter()
            .filter(|e| e.fact.mapping.is_none() && e.fact.file_type != FileType::Sock);
        for e in files {
            for assume in [Assume::Nothing, Assume::Plain] {
                let ops = e.ops.as_ref();
                if always_ok(profile, &e.fact, ops, assume).is_none() {
                    continue;
                }
                *found.entry(assume == Assume::Plain).or_insert(0) += 1;
                for (i, vary) in variants.iter().enumerate() {
                    let (mut f, mut c) = (e.fact.clone(), e.ctx.clone());
                    vary(&mut f, &mut c);
                    if assume == Assume::Plain && !plain(&f) {
                        continue;
                    }
                    let j = classify(profile, &f, ops, &c);
                    assert_eq!(
                        (j.verdict, i),
                        (Fine, i),
                        "{} ({}, {assume:?}): {}",
                        e.what,
                        profile.profile.name,
                        j.rule
                    );
                }
            }
        }
    }
    // Both assumptions find kinds: pipes and eventfds whatever their state, files when plain.
    assert!(found.get(&false).is_some_and(|&n| n > 5), "{found:?}");
    assert!(found.get(&true) > found.get(&false), "{found:?}");
}

/// A process names its own files: a regular file (or its mapping) named like an anonymous inode
/// is judged as the file it is, never as the anonymous inode (a pidfd would be `ok`).
#[test]
fn a_file_named_like_an_anonymous_inode_is_judged_as_a_file() {
    let criu317 = load_profile("criu-3.17").expect("criu-3.17 loads");
    for profile in [criu4(), &criu317] {
        for name in ["[pidfd]", "[io_uring]", "bpf-map", "[eventfd]", "inotify"] {
            let big = reg().with_name(name).with_deleted(10 * MIB);
            let j = classify(profile, &big, None, &ctx());
            assert_eq!(
                (j.verdict, j.rule.as_str()),
                (Needs, "ghost-too-big"),
                "{name} ({})",
                profile.profile.name
            );
            let hidden = reg().with_name(name).with_hidden_mount(7);
            let j = classify(profile, &hidden.clone().with_mapping(false), None, &ctx());
            assert_eq!(j.rule, "map-file-hidden-mount", "{name} mapped");
            let j = classify(profile, &hidden, None, &ctx());
            assert_eq!(j.rule, "hidden-mount", "{name}");
        }
    }
}

/// A task names its own files and can hide its own tmpfs (a lazy unmount in its own mount
/// namespace): a `memfd:` or `SYSV` file, or a shared mapping, off the kernel's internal shmem
/// mount is judged as the hidden file it is, and so is one whose mount is unknown.
#[test]
fn memfd_and_sysv_names_off_the_internal_shmem_mount_are_hidden_files() {
    let criu317 = load_profile("criu-3.17").expect("criu-3.17 loads");
    let detached = |name: &str| reg().with_fs("tmpfs").with_name(name).with_hidden_mount(9);
    for profile in [criu4(), &criu317] {
        for c in [ctx(), Context::default()] {
            let j = classify(profile, &detached("memfd:x"), None, &c);
            assert_eq!(j.rule, "hidden-mount", "{c:?}");
            for name in ["SYSV00000000", "memfd:x", "dev/zero"] {
                let mapped = detached(name).with_mapping(true);
                let j = classify(profile, &mapped, None, &c);
                assert_eq!(j.rule, "map-file-hidden-mount", "{name} {c:?}");
            }
        }
        let j = classify(profile, &detached("memfd:x"), None, &shm());
        assert_eq!(j.rule, "memfd");
    }
}

/// A kind borrowed from a file finds the kind built from it, and no other: the table would
/// otherwise file each kind again (or under another's rules) without any test seeing it.
#[test]
fn a_borrowed_kind_hashes_and_compares_as_its_owned_kind() {
    use std::hash::BuildHasher;
    let mut shm = reg();
    shm.fs_type = "tmpfs".into();
    let files = [
        reg(),
        shm,
        reg().with_mapping(false),
        anon("[eventfd]"),
        anon("[timerfd]"),
        chr(1, 3),
        chr(1, 5),
        unix("stream"),
        tcp("listen"),
    ];
    let hasher = foldhash::fast::RandomState::default();
    for (i, f) in files.iter().enumerate() {
        let borrowed = KindOf::of(f);
        assert_eq!(
            hasher.hash_one(&borrowed),
            hasher.hash_one(Kind::of(f)),
            "file {i}"
        );
        for (j, g) in files.iter().enumerate() {
            assert_eq!(borrowed.is(&Kind::of(g)), i == j, "file {i} against {j}");
        }
    }
}
