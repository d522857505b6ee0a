//! Typed facts about one open file or file-backed mapping, decoded from the kernel's records.
//! Raw kernel values keep their encoding in the record; here they become what they mean.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use ckpt_common::{FileFacts, VmaFacts, flags, known};
use serde::{Deserialize, Serialize};

/// A name the kernel reports for many files (a filesystem type, `null`, `libc.so.6`,
/// `[eventfd]`): one shared copy per distinct name, not one allocation per open file.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Text(Arc<str>);

/// Distinct names seen by this thread, so far. A host has a few thousand.
const INTERNED_MAX: usize = 1 << 16;

thread_local! {
    /// Looked up twice per open file of a host scan: foldhash, not SipHash, which took most of
    /// the lookup. Its seed is random per process, so names chosen to collide cannot be
    /// computed in advance; and the set is capped.
    static INTERNED: RefCell<HashSet<Arc<str>, foldhash::fast::RandomState>> =
        RefCell::new(HashSet::default());
}

impl Text {
    /// The shared copy of `s`.
    pub fn interned(s: &str) -> Self {
        INTERNED.with(|set| {
            let mut set = set.borrow_mut();
            if let Some(shared) = set.get(s) {
                return Text(shared.clone());
            }
            let shared: Arc<str> = Arc::from(s);
            // Beyond the cap (names chosen to flood it) new names are simply not shared.
            if set.len() < INTERNED_MAX {
                set.insert(shared.clone());
            }
            Text(shared)
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Arc::from(s))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0.to_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Reg,
    Dir,
    Chr,
    Blk,
    Fifo,
    Sock,
    Lnk,
    /// Anonymous inodes (eventfd, io_uring, ...) carry no S_IFMT bits.
    None,
}

impl FileType {
    pub fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o100000 => Self::Reg,
            0o040000 => Self::Dir,
            0o020000 => Self::Chr,
            0o060000 => Self::Blk,
            0o010000 => Self::Fifo,
            0o140000 => Self::Sock,
            0o120000 => Self::Lnk,
            _ => Self::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reg => "reg",
            Self::Dir => "dir",
            Self::Chr => "chr",
            Self::Blk => "blk",
            Self::Fifo => "fifo",
            Self::Sock => "sock",
            Self::Lnk => "lnk",
            Self::None => "none",
        }
    }
}

/// A device number split from the kernel's internal `dev_t` (major << 20 | minor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    pub fn from_kernel(dev: u32) -> Self {
        Self {
            major: dev >> 20,
            minor: dev & 0xf_ffff,
        }
    }

    /// The number as `stat(2)` reports it (glibc's makedev), which CRIU prints in options.
    pub fn user_encoding(self) -> u64 {
        let (ma, mi) = (self.major as u64, self.minor as u64);
        (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12) | ((ma & !0xfff) << 32)
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixPeer {
    /// Inode of the peer's socket; 0 when the peer has no socket (released, or not accepted).
    pub ino: u64,
    /// The peer was released (its end closed).
    pub closed: bool,
    /// The peer is bound to a name.
    pub named: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketFact {
    pub family: u16,
    pub sk_type: u16,
    pub protocol: u16,
    /// `sk_state`: TCP_* numbering for every family.
    pub state: u16,
    /// Unaccepted connections (listeners), when known.
    pub backlog: Option<u32>,
    /// For unix sockets whose peer is known: `None` = no peer.
    pub peer: Option<UnixPeer>,
    /// Whether the peer could be read at all (unix sockets on kernels with `unix_sock.peer`).
    pub peer_known: bool,
    /// The attached socket filter, when the kernel side could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<SockFilter>,
    /// UDP_CORK is set (UDP and UDP-Lite sockets; `Some(false)` for other readable sockets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_corked: Option<bool>,
    /// Bytes in the write and receive queues (`sk_wmem_alloc_get`, `sk_rmem_alloc_get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wqueue: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rqueue: Option<u32>,
    /// The daemon's kernel side could not watch this TCP socket's changes of state (its map
    /// of watched sockets was full): judged ok in its present state, it may leave it unseen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unwatched: bool,
}

/// A socket filter: none, a classic BPF program (SO_ATTACH_FILTER, which SO_GET_FILTER gives
/// back), or an eBPF program (SO_ATTACH_BPF, which it cannot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SockFilter {
    None,
    Classic,
    Ebpf,
}

impl SockFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Classic => "classic",
            Self::Ebpf => "ebpf",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub vm_flags: u64,
    pub pgoff: u64,
}

const VM_SHARED: u64 = 0x8;

impl Mapping {
    /// A mapping of a file not looked for: anywhere, shared, the worst a checkpointer could meet.
    pub fn unknown() -> Self {
        Self {
            start: 0,
            end: u64::MAX,
            vm_flags: VM_SHARED | 0x3,
            pgoff: 0,
        }
    }

    pub fn shared(&self) -> bool {
        self.vm_flags & VM_SHARED != 0
    }
}

/// One open file (`fd` set) or one file-backed mapping (`mapping` set) of process `pid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFact {
    pub pid: u32,
    pub fd: Option<u32>,
    /// Boxed: few files are mappings, and the daemon keeps thousands of facts.
    pub mapping: Option<Box<Mapping>>,
    pub f_op: u64,
    pub file_type: FileType,
    pub mode: u32,
    pub rdev: Option<DevNum>,
    pub dev: DevNum,
    pub ino: u64,
    pub size: u64,
    /// Bytes allocated on disk (`i_blocks * 512`).
    pub allocated: u64,
    pub nlink: u32,
    pub fs_type: Text,
    pub fs_magic: u64,
    /// The dentry name: `[eventfd]`, `bpf-map`, `memfd:x`, or a path's last component.
    pub name: Text,
    pub f_flags: u32,
    /// The name it was opened by is gone (unlinked, or a pseudo file that never had one).
    pub unlinked: bool,
    pub mount_visible: Option<bool>,
    pub mnt_id: Option<u32>,
    pub locked: Option<bool>,
    /// `locked` is the kernel side's guess: the inode has more locks than it walked. A scan
    /// settles it from /proc (`scope::file_locks`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locks_unwalked: bool,
    /// Boxed: most files are no socket, and a host scan holds a fact per open file.
    pub socket: Option<Box<SocketFact>>,
    pub pidfd_target: Option<u32>,
    /// For a pidfd: its process has exited and been reaped (`None`: unknown, or not a pidfd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfd_dead: Option<bool>,
    pub tty_index: Option<u32>,
    /// `enum bpf_map_type` of a BPF map.
    pub bpf_map_type: Option<u32>,
    /// Whether inode facts could be read; without them nothing can be judged.
    pub inode_known: bool,
    /// For an inotify or fanotify fd: whether CRIU can dump its marks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watches: Option<Box<crate::scope::fsnotify::Watches>>,
}

fn c_string(bytes: &[u8]) -> Text {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Text::interned(&String::from_utf8_lossy(&bytes[..end]))
}

const TCP_CLOSE: u32 = 7;
const SOCKFS_MAGIC: u64 = 0x534f_434b;

/// The facts a file record and a mapping record share (both carry the same inode fields), with
/// everything fd-specific unset.
macro_rules! inode_part {
    ($r:expr) => {{
        let file_type = FileType::from_mode($r.mode);
        FileFact {
            pid: $r.tgid,
            fd: None,
            mapping: None,
            f_op: $r.f_op,
            file_type,
            mode: $r.mode,
            rdev: matches!(file_type, FileType::Chr | FileType::Blk)
                .then(|| DevNum::from_kernel($r.rdev)),
            dev: DevNum::from_kernel($r.dev),
            ino: $r.ino,
            size: $r.size,
            allocated: $r.blocks * 512,
            nlink: $r.nlink,
            fs_type: c_string(&$r.fs_type),
            fs_magic: $r.s_magic,
            name: c_string(&$r.name),
            f_flags: 0,
            unlinked: $r.flags & flags::UNLINKED != 0,
            mount_visible: None,
            mnt_id: None,
            locked: None,
            locks_unwalked: false,
            socket: None,
            pidfd_target: None,
            pidfd_dead: None,
            tty_index: None,
            bpf_map_type: None,
            inode_known: $r.known & known::INODE != 0,
            watches: None,
        }
    }};
}

impl FileFact {
    /// A socket as `socket(2)` leaves it: closed, unbound, with no filter, peer or queued bytes
    /// (its ops table and inode unknown, which no socket rule needs). What a kind of socket is
    /// judged by before any of its files was seen.
    pub fn new_socket(family: u16, sk_type: u16, protocol: u16) -> Self {
        FileFact {
            pid: 0,
            fd: Some(0),
            mapping: None,
            f_op: 0,
            file_type: FileType::Sock,
            mode: 0o140777,
            rdev: None,
            dev: DevNum { major: 0, minor: 0 },
            ino: 0,
            size: 0,
            allocated: 0,
            nlink: 1,
            fs_type: Text::interned("sockfs"),
            fs_magic: SOCKFS_MAGIC,
            name: Text::interned(""),
            f_flags: 0o2,
            unlinked: false,
            mount_visible: Some(false),
            mnt_id: None,
            locked: Some(false),
            locks_unwalked: false,
            socket: Some(Box::new(SocketFact {
                family,
                sk_type,
                protocol,
                state: TCP_CLOSE as u16,
                backlog: None,
                peer: None,
                peer_known: false,
                filter: Some(SockFilter::None),
                udp_corked: Some(false),
                wqueue: Some(0),
                rqueue: Some(0),
                unwatched: false,
            })),
            pidfd_target: None,
            pidfd_dead: None,
            tty_index: None,
            bpf_map_type: None,
            inode_known: true,
            watches: None,
        }
    }

    /// What the kernel's table of ok ops tables (`OK_FOPS`) holds for this file's table, once
    /// every file of its kind (`only_plain`: every plain one) is judged ok: its file type and,
    /// when `rdev_bound`, its device.
    pub fn ok_fops(&self, rdev_bound: bool, only_plain: bool) -> ckpt_common::OkFops {
        let rdev = match (rdev_bound, self.rdev) {
            (true, Some(d)) => (d.major << 20) | d.minor,
            _ => ckpt_common::ANY_RDEV,
        };
        ckpt_common::OkFops {
            file_type: (self.mode & 0o170000) >> 12,
            rdev,
            only_plain: only_plain.into(),
            _pad: 0,
        }
    }

    pub fn from_file(r: &FileFacts) -> Self {
        let socket = (r.known & known::SOCKET != 0).then(|| {
            Box::new(SocketFact {
                family: r.sk_family,
                sk_type: r.sk_type,
                protocol: r.sk_protocol,
                state: r.sk_state,
                backlog: (r.known & known::BACKLOG != 0).then_some(r.sk_backlog),
                peer: (r.flags & flags::HAS_PEER != 0).then_some(UnixPeer {
                    ino: r.peer_ino,
                    closed: r.peer_state == TCP_CLOSE,
                    named: r.flags & flags::PEER_NAMED != 0,
                }),
                peer_known: r.known & known::UNIX_PEER != 0,
                filter: (r.known & known::SOCK_EXTRA != 0).then_some(
                    match (
                        r.flags & flags::SK_FILTER != 0,
                        r.flags & flags::SK_FILTER_EBPF != 0,
                    ) {
                        (false, _) => SockFilter::None,
                        (true, false) => SockFilter::Classic,
                        (true, true) => SockFilter::Ebpf,
                    },
                ),
                udp_corked: (r.known & known::SOCK_EXTRA != 0)
                    .then_some(r.flags & flags::UDP_CORKED != 0),
                wqueue: (r.known & known::SOCK_EXTRA != 0).then_some(r.sk_wqueue),
                rqueue: (r.known & known::SOCK_EXTRA != 0).then_some(r.sk_rqueue),
                unwatched: r.flags & flags::UNWATCHED != 0,
            })
        });
        let mount_known = r.known & known::MOUNT != 0;
        Self {
            fd: Some(r.fd),
            f_flags: r.f_flags,
            mount_visible: mount_known.then_some(r.flags & flags::MOUNT_VISIBLE != 0),
            mnt_id: mount_known.then_some(r.mnt_id),
            locked: (r.known & known::LOCKS != 0).then_some(r.flags & flags::LOCKED != 0),
            locks_unwalked: r.flags & flags::LOCKS_UNWALKED != 0,
            socket,
            pidfd_target: (r.known & known::PIDFD != 0).then_some(r.aux as u32),
            pidfd_dead: (r.known & known::PIDFD_ALIVE != 0)
                .then_some(r.flags & flags::PIDFD_DEAD != 0),
            tty_index: (r.known & known::TTY != 0).then_some(r.aux as u32),
            bpf_map_type: (r.known & known::BPF_MAP != 0).then_some(r.aux as u32),
            ..inode_part!(r)
        }
    }

    pub fn from_vma(r: &VmaFacts) -> Self {
        Self {
            mapping: Some(Box::new(Mapping {
                start: r.start,
                end: r.end,
                vm_flags: r.vm_flags,
                pgoff: r.pgoff,
            })),
            mount_visible: Some(r.flags & flags::MOUNT_VISIBLE != 0),
            ..inode_part!(r)
        }
    }

    /// This open file as a mapping of it at `m` is reported: the inode's facts, everything
    /// fd-specific unset, as [`FileFact::from_vma`] leaves them.
    pub fn as_mapping(&self, m: Mapping) -> Self {
        Self {
            fd: None,
            mapping: Some(Box::new(m)),
            f_flags: 0,
            mnt_id: None,
            locked: None,
            locks_unwalked: false,
            socket: None,
            pidfd_target: None,
            pidfd_dead: None,
            tty_index: None,
            bpf_map_type: None,
            watches: None,
            ..self.clone()
        }
    }

    /// `st_mode` as CRIU prints it in its errors.
    pub fn mode_octal(&self) -> String {
        format!("{:o}", self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names repeated across files share one copy; they read and serialize as strings.
    #[test]
    fn names_are_shared_and_read_as_strings() {
        let a = Text::interned("libc.so.6");
        let b = Text::interned("libc.so.6");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "libc.so.6");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"libc.so.6\"");
        let back: Text = serde_json::from_str("\"[eventfd]\"").unwrap();
        assert_eq!(back.as_str(), "[eventfd]");
    }

    #[test]
    fn file_types_from_mode() {
        assert_eq!(FileType::from_mode(0o100644), FileType::Reg);
        assert_eq!(FileType::from_mode(0o20666), FileType::Chr);
        assert_eq!(FileType::from_mode(0o140777), FileType::Sock);
        assert_eq!(FileType::from_mode(0o10600), FileType::Fifo);
        assert_eq!(FileType::from_mode(0o600), FileType::None);
    }

    #[test]
    fn dev_numbers_split_and_reencode() {
        let pts0 = DevNum::from_kernel(136 << 20);
        assert_eq!((pts0.major, pts0.minor), (136, 0));
        assert_eq!(pts0.user_encoding(), 0x8800);
        let null = DevNum::from_kernel((1 << 20) | 3);
        assert_eq!(null.to_string(), "1:3");
        let big = DevNum {
            major: 259,
            minor: 300,
        };
        assert_eq!(
            big.user_encoding(),
            (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12)
        );
    }

    #[test]
    fn c_strings_stop_at_nul() {
        assert_eq!(c_string(b"[eventfd]\0garbage"), "[eventfd]");
        assert_eq!(c_string(b"full"), "full");
    }
}
