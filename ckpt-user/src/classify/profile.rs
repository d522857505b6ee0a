//! The profile format (DESIGN.md §5): TOML, an ordered list of rules, first match wins.

use serde::{Deserialize, Serialize};

use crate::resolve::KnownOps;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Needs,
    Unknown,
    Blocks,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Needs => "needs",
            Self::Unknown => "unknown",
            Self::Blocks => "blocks",
        }
    }
}

/// Where a rule applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliesTo {
    #[default]
    Any,
    Fd,
    Mapping,
}

/// One value or a list of them; a condition matches when any value does.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            Self::One(v) => std::slice::from_ref(v).iter(),
            Self::Many(v) => v.iter(),
        }
    }
}

/// A number or an inclusive range written `"136-143"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NumOrRange {
    Num(u64),
    Range(String),
}

/// Where a related object (a unix peer, a pidfd's process, a pty's master) lives relative to
/// the set of tasks being dumped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    None,
    Inside,
    Outside,
}

/// Conditions on one file; every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cond {
    /// Ops table name: its data symbol, or the catalogue's name for its members.
    pub ops: Option<OneOrMany<String>>,
    /// A member function symbol the ops table points to (any member).
    pub member: Option<OneOrMany<String>>,
    /// The dentry name exactly: `[eventfd]`, `inotify`, `bpf-map` (a socket has none).
    pub name: Option<OneOrMany<String>>,
    pub name_prefix: Option<OneOrMany<String>>,
    /// `reg dir chr blk fifo sock lnk none`.
    pub file_type: Option<OneOrMany<String>>,
    pub major: Option<OneOrMany<NumOrRange>>,
    pub minor: Option<OneOrMany<NumOrRange>>,
    pub fs_type: Option<OneOrMany<String>>,
    pub fs_magic: Option<OneOrMany<u64>>,
    /// Socket family by name (`unix inet inet6 netlink packet vsock ...`).
    pub family: Option<OneOrMany<String>>,
    /// `stream dgram raw rdm seqpacket dccp packet`.
    pub sock_type: Option<OneOrMany<String>>,
    pub protocol: Option<OneOrMany<u64>>,
    /// TCP state names as in `/proc/net/tcp`: `established listen close syn_sent ...`.
    pub tcp_state: Option<OneOrMany<String>>,
    /// A listener with connections not yet accepted.
    pub inflight: Option<bool>,
    pub peer: Option<OneOrMany<Place>>,
    /// The unix peer is bound to a name.
    pub peer_named: Option<bool>,
    pub pidfd_target: Option<OneOrMany<Place>>,
    /// BPF map type by name (`hash array ringbuf ...`); false when the type is unknown.
    pub bpf_map_type: Option<OneOrMany<String>>,
    pub tty_master: Option<OneOrMany<Place>>,
    /// The dump holds more than this many pty slaves whose masters it lacks.
    pub external_ptys_over: Option<usize>,
    /// An nsfs file of a namespace some task of the dump lives in.
    pub ns_member: Option<bool>,
    pub own_netns: Option<bool>,
    pub own_ipcns: Option<bool>,
    /// No links left (`i_nlink == 0`).
    pub deleted: Option<bool>,
    /// The opened name is gone (dentry unhashed), whatever the link count.
    pub unlinked: Option<bool>,
    /// Larger than this many bytes (`st_size`).
    pub size_over: Option<u64>,
    /// More than this many bytes allocated (`st_blocks * 512`).
    pub allocated_over: Option<u64>,
    pub locked: Option<bool>,
    pub mount_visible: Option<bool>,
    pub shared: Option<bool>,
    /// The kernel side could read the inode (false: nothing to judge by).
    pub inode_known: Option<bool>,
    /// Socket facts could be read.
    pub socket_known: Option<bool>,
    /// The socket's filter: `none`, `classic` (SO_ATTACH_FILTER) or `ebpf` (SO_ATTACH_BPF).
    pub sock_filter: Option<OneOrMany<String>>,
    /// A UDP socket with UDP_CORK set.
    pub udp_corked: Option<bool>,
    /// Bytes wait in the socket's write queue.
    pub send_queued: Option<bool>,
    /// Bytes wait in the socket's receive queue.
    pub recv_queued: Option<bool>,
    /// Any of these bits is set in the file's open flags (`f_flags`, octal as in fcntl.h).
    pub f_flags_any: Option<u32>,
    /// A pidfd whose process has exited and been reaped.
    pub pidfd_dead: Option<bool>,
    /// For a mapped socket (a packet ring): whether a task of the dump holds the socket's fd.
    pub socket_fd: Option<OneOrMany<Place>>,
    /// How CRIU can dump an inotify/fanotify fd's marks: `reachable`, `scan-path`, `lost`,
    /// `no-handle`.
    pub watches: Option<OneOrMany<String>>,
    /// On the kernel's internal shmem mount, where memfds, SysV segments and shared anonymous
    /// memory live (CRIU knows them by its device, not by their names).
    pub internal_shm: Option<bool>,
}

/// Conditions on the dumped tree's root task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCond {
    pub session_leader: Option<bool>,
    /// Traced by a debugger (TracerPid != 0).
    pub traced: Option<bool>,
    /// In a pid namespace other than the dump root's.
    pub nested_pidns: Option<bool>,
    /// Holding a lock on any of its files.
    pub holds_locks: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// What the file is, for reports (`io_uring`, `tcp`, `regular`).
    pub kind: Option<String>,
    pub verdict: Verdict,
    #[serde(default)]
    pub reason: String,
    /// With `needs`: options of which any one makes the dump pass. `{placeholders}` are filled
    /// from the file's facts.
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// Alternatives: the rule matches when any of them holds (an empty list matches all).
    #[serde(default)]
    pub when: Vec<Cond>,
}

/// What the kernel offers the checkpointer, whatever it dumps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelCond {
    /// The kernel maps a special area of this name into every process (`[vvar_vclock]`).
    pub special_mapping: Option<OneOrMany<String>>,
}

/// A check that holds or not as a whole, each independent of the others (all that match
/// apply, unlike file rules): on the dump's root task, or on the kernel.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRule<C> {
    pub id: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub options: Vec<String>,
    /// Alternatives; an empty list matches always.
    #[serde(default = "Vec::new")]
    pub when: Vec<C>,
}

pub type TaskRule = CheckRule<TaskCond>;

/// A known incompatibility between this checkpointer and a kind of kernel: it holds on a host
/// with or without the checkpointer installed.
pub type KernelRule = CheckRule<KernelCond>;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    pub checkpointer: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// A built-in profile this one modifies: its rules with the same `id` replace the parent's
    /// in place, its other rules come first.
    pub extends: Option<String>,
    /// Options this checkpointer cannot take from a config file when runc drives it over RPC:
    /// for a runc-driven engine without a flag for them, a remedy needing one of these blocks.
    #[serde(default)]
    pub rpc_config_broken: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub profile: Meta,
    #[serde(default)]
    pub ops: Vec<KnownOps>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default, rename = "task_rule")]
    pub task_rules: Vec<TaskRule>,
    #[serde(default, rename = "kernel_rule")]
    pub kernel_rules: Vec<KernelRule>,
}
