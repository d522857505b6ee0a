//! Judges one file against a profile: `fn(&Profile, &FileFact, Option<&OpsIdentity>, &Context)
//! -> Judgement`, pure, testable without a kernel. The profile is data (TOML); this module only
//! knows how to evaluate its conditions.

mod load;
pub mod names;
pub mod profile;
pub mod restore;

pub use load::{BUILTIN_PROFILES, ProfileError, load_profile, parse_profile};
pub use profile::{Place, Profile, Verdict};

use std::cell::RefCell;

use serde::Serialize;

use crate::facts::{DevNum, FileFact, FileType, Text};
use crate::resolve::{OpsIdentity, OpsTables};
use profile::{AppliesTo, CheckRule, Cond, NumOrRange, OneOrMany, Rule, TaskCond};

/// Facts about a file that depend on which tasks are dumped together (computed by `scope`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub peer: Option<Place>,
    pub pidfd_target: Option<Place>,
    pub tty_master: Option<Place>,
    /// For a pty slave whose master the dump lacks: how many such ptys (distinct indexes) the
    /// dump holds in all.
    pub external_ptys: usize,
    /// For a mapped socket: whether a task of the dump holds its fd.
    pub socket_fd: Option<Place>,
    pub ns_member: Option<bool>,
    pub own_netns: bool,
    pub own_ipcns: bool,
    /// On the kernel's internal shmem mount (`None`: its device is unknown).
    pub internal_shm: Option<bool>,
}

/// Facts about the root task of a dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFacts {
    pub session_leader: bool,
    pub traced: bool,
    /// The task lives in a pid namespace other than the dump root's.
    pub nested_pidns: bool,
    /// The fds of the task's files it holds a lock on, whatever their kind: a task rule's
    /// reason names them as `{locked_fds}`.
    pub locked_fds: Vec<u32>,
}

/// The verdict on one file (or on the task itself), with why and what fixes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub kind: String,
    pub rule: String,
    pub reason: String,
    /// With `needs`: any one of these makes the dump pass.
    pub options: Vec<String>,
}

const NO_RULE: &str = "no-rule";

fn any_str(list: &OneOrMany<String>, value: &str) -> bool {
    list.iter().any(|v| v == value)
}

fn in_ranges(list: &OneOrMany<NumOrRange>, value: u64) -> bool {
    list.iter().any(|r| match r {
        NumOrRange::Num(n) => *n == value,
        NumOrRange::Range(s) => {
            names::parse_range(s).is_some_and(|(lo, hi)| (lo..=hi).contains(&value))
        }
    })
}

fn opt<T>(cond: &Option<T>, test: impl FnOnce(&T) -> bool) -> bool {
    cond.as_ref().is_none_or(test)
}

fn place_matches(list: &OneOrMany<Place>, actual: Option<Place>) -> bool {
    list.iter().any(|p| *p == actual.unwrap_or(Place::None))
}

/// TCP states are judged only for TCP sockets.
fn is_tcp(f: &FileFact) -> bool {
    f.socket.as_ref().is_some_and(|s| {
        (s.family == names::AF_INET || s.family == names::AF_INET6)
            && s.sk_type == names::SOCK_STREAM
            && s.protocol == names::IPPROTO_TCP
    })
}

/// One condition of a [`Cond`], borrowed from the profile: a `Cond` holds when each of its
/// clauses does. A [`Classifier`] keeps the clauses left to test once a file's kind is known.
#[derive(Clone, Copy, Debug)]
enum Clause<'c> {
    Ops(&'c OneOrMany<String>),
    Member(&'c OneOrMany<String>),
    Name(&'c OneOrMany<String>),
    NamePrefix(&'c OneOrMany<String>),
    FileType(&'c OneOrMany<String>),
    Major(&'c OneOrMany<NumOrRange>),
    Minor(&'c OneOrMany<NumOrRange>),
    FsType(&'c OneOrMany<String>),
    FsMagic(&'c OneOrMany<u64>),
    Family(&'c OneOrMany<String>),
    SockType(&'c OneOrMany<String>),
    Protocol(&'c OneOrMany<u64>),
    TcpState(&'c OneOrMany<String>),
    Inflight(bool),
    Peer(&'c OneOrMany<Place>),
    PeerNamed(bool),
    PidfdTarget(&'c OneOrMany<Place>),
    BpfMapType(&'c OneOrMany<String>),
    TtyMaster(&'c OneOrMany<Place>),
    ExternalPtysOver(usize),
    NsMember(bool),
    OwnNetns(bool),
    OwnIpcns(bool),
    Deleted(bool),
    Unlinked(bool),
    SizeOver(u64),
    AllocatedOver(u64),
    Locked(bool),
    MountVisible(bool),
    Shared(bool),
    InodeKnown(bool),
    SocketKnown(bool),
    SockFilter(&'c OneOrMany<String>),
    UdpCorked(bool),
    SendQueued(bool),
    RecvQueued(bool),
    PidfdDead(bool),
    FFlagsAny(u32),
    SocketFd(&'c OneOrMany<Place>),
    Watches(&'c OneOrMany<String>),
    InternalShm(bool),
}

/// Calls `$visit` (`FnMut(Clause) -> bool`) with each condition `$c` sets, in order, while it
/// returns true; true when it always did. Straight-line code that stops at the first false
/// clause: a `Cond` is tested this way for every file the daemon sees. Every field is named
/// (a condition added to `Cond` and left out here fails to compile).
macro_rules! each_clause {
    ($c:expr, $visit:expr) => {{
        use Clause as K;
        let mut visit = $visit;
        let Cond {
            ops,
            member,
            name,
            name_prefix,
            file_type,
            major,
            minor,
            fs_type,
            fs_magic,
            family,
            sock_type,
            protocol,
            tcp_state,
            inflight,
            peer,
            peer_named,
            pidfd_target,
            bpf_map_type,
            tty_master,
            external_ptys_over,
            ns_member,
            own_netns,
            own_ipcns,
            deleted,
            unlinked,
            size_over,
            allocated_over,
            locked,
            mount_visible,
            shared,
            inode_known,
            socket_known,
            sock_filter,
            udp_corked,
            send_queued,
            recv_queued,
            pidfd_dead,
            f_flags_any,
            socket_fd,
            watches,
            internal_shm,
        } = $c;
        ops.as_ref().map(K::Ops).is_none_or(&mut visit)
            && member.as_ref().map(K::Member).is_none_or(&mut visit)
            && name.as_ref().map(K::Name).is_none_or(&mut visit)
            && name_prefix
                .as_ref()
                .map(K::NamePrefix)
                .is_none_or(&mut visit)
            && file_type.as_ref().map(K::FileType).is_none_or(&mut visit)
            && major.as_ref().map(K::Major).is_none_or(&mut visit)
            && minor.as_ref().map(K::Minor).is_none_or(&mut visit)
            && fs_type.as_ref().map(K::FsType).is_none_or(&mut visit)
            && fs_magic.as_ref().map(K::FsMagic).is_none_or(&mut visit)
            && family.as_ref().map(K::Family).is_none_or(&mut visit)
            && sock_type.as_ref().map(K::SockType).is_none_or(&mut visit)
            && protocol.as_ref().map(K::Protocol).is_none_or(&mut visit)
            && tcp_state.as_ref().map(K::TcpState).is_none_or(&mut visit)
            && inflight.map(K::Inflight).is_none_or(&mut visit)
            && peer.as_ref().map(K::Peer).is_none_or(&mut visit)
            && peer_named.map(K::PeerNamed).is_none_or(&mut visit)
            && pidfd_target
                .as_ref()
                .map(K::PidfdTarget)
                .is_none_or(&mut visit)
            && bpf_map_type
                .as_ref()
                .map(K::BpfMapType)
                .is_none_or(&mut visit)
            && tty_master.as_ref().map(K::TtyMaster).is_none_or(&mut visit)
            && external_ptys_over
                .map(K::ExternalPtysOver)
                .is_none_or(&mut visit)
            && ns_member.map(K::NsMember).is_none_or(&mut visit)
            && own_netns.map(K::OwnNetns).is_none_or(&mut visit)
            && own_ipcns.map(K::OwnIpcns).is_none_or(&mut visit)
            && deleted.map(K::Deleted).is_none_or(&mut visit)
            && unlinked.map(K::Unlinked).is_none_or(&mut visit)
            && size_over.map(K::SizeOver).is_none_or(&mut visit)
            && allocated_over.map(K::AllocatedOver).is_none_or(&mut visit)
            && locked.map(K::Locked).is_none_or(&mut visit)
            && mount_visible.map(K::MountVisible).is_none_or(&mut visit)
            && shared.map(K::Shared).is_none_or(&mut visit)
            && inode_known.map(K::InodeKnown).is_none_or(&mut visit)
            && socket_known.map(K::SocketKnown).is_none_or(&mut visit)
            && sock_filter
                .as_ref()
                .map(K::SockFilter)
                .is_none_or(&mut visit)
            && udp_corked.map(K::UdpCorked).is_none_or(&mut visit)
            && send_queued.map(K::SendQueued).is_none_or(&mut visit)
            && recv_queued.map(K::RecvQueued).is_none_or(&mut visit)
            && pidfd_dead.map(K::PidfdDead).is_none_or(&mut visit)
            && f_flags_any.map(K::FFlagsAny).is_none_or(&mut visit)
            && socket_fd.as_ref().map(K::SocketFd).is_none_or(&mut visit)
            && watches.as_ref().map(K::Watches).is_none_or(&mut visit)
            && internal_shm.map(K::InternalShm).is_none_or(&mut visit)
    }};
}

/// The clauses of `c`: one per condition it sets.
fn clauses(c: &Cond) -> impl Iterator<Item = Clause<'_>> {
    let mut all = Vec::new();
    // The visitor never stops the walk: what it returns says nothing here.
    let _ = each_clause!(c, |k| {
        all.push(k);
        true
    });
    all.into_iter()
}

impl Clause<'_> {
    fn holds(self, f: &FileFact, ops: Option<&OpsIdentity>, ctx: &Context) -> bool {
        use Clause as K;
        let sock = f.socket.as_ref();
        match self {
            K::Ops(l) => ops
                .and_then(|o| o.name.as_deref())
                .is_some_and(|n| any_str(l, n)),
            K::Member(l) => ops.is_some_and(|o| l.iter().any(|m| o.has_function(m))),
            K::Name(l) => any_str(l, &f.name),
            K::NamePrefix(l) => l.iter().any(|p| f.name.starts_with(p.as_str())),
            K::FileType(l) => any_str(l, f.file_type.as_str()),
            K::Major(l) => f.rdev.is_some_and(|d| in_ranges(l, d.major as u64)),
            K::Minor(l) => f.rdev.is_some_and(|d| in_ranges(l, d.minor as u64)),
            K::FsType(l) => any_str(l, &f.fs_type),
            K::FsMagic(l) => l.iter().any(|m| *m == f.fs_magic),
            K::Family(l) => sock.is_some_and(|s| l.iter().any(|n| names::is_family(n, s.family))),
            K::SockType(l) => {
                sock.is_some_and(|s| l.iter().any(|n| names::is_sock_type(n, s.sk_type)))
            }
            K::Protocol(l) => sock.is_some_and(|s| l.iter().any(|p| *p == s.protocol as u64)),
            K::TcpState(l) => {
                is_tcp(f) && sock.is_some_and(|s| l.iter().any(|n| names::is_tcp_state(n, s.state)))
            }
            K::Inflight(b) => sock.and_then(|s| s.backlog).is_some_and(|n| (n > 0) == b),
            K::Peer(l) => place_matches(l, ctx.peer),
            K::PeerNamed(b) => sock
                .and_then(|s| s.peer.as_ref())
                .is_some_and(|p| p.named == b),
            K::PidfdTarget(l) => place_matches(l, ctx.pidfd_target),
            K::BpfMapType(l) => f
                .bpf_map_type
                .is_some_and(|t| l.iter().any(|n| names::is_bpf_map_type(n, t))),
            K::TtyMaster(l) => place_matches(l, ctx.tty_master),
            K::ExternalPtysOver(n) => ctx.external_ptys > n,
            K::NsMember(b) => ctx.ns_member == Some(b),
            K::OwnNetns(b) => ctx.own_netns == b,
            K::OwnIpcns(b) => ctx.own_ipcns == b,
            K::Deleted(b) => (f.nlink == 0) == b,
            K::Unlinked(b) => f.unlinked == b,
            K::SizeOver(n) => f.size > n,
            K::AllocatedOver(n) => f.allocated > n,
            K::Locked(b) => f.locked == Some(b),
            K::MountVisible(b) => f.mount_visible == Some(b),
            K::Shared(b) => f.mapping.as_ref().is_some_and(|m| m.shared() == b),
            K::InodeKnown(b) => f.inode_known == b,
            K::SocketKnown(b) => sock.is_some() == b,
            K::SockFilter(l) => sock
                .and_then(|s| s.filter)
                .is_some_and(|x| any_str(l, x.as_str())),
            K::UdpCorked(b) => sock.and_then(|s| s.udp_corked) == Some(b),
            K::SendQueued(b) => sock.and_then(|s| s.wqueue).is_some_and(|n| (n > 0) == b),
            K::RecvQueued(b) => sock.and_then(|s| s.rqueue).is_some_and(|n| (n > 0) == b),
            K::PidfdDead(b) => f.pidfd_dead == Some(b),
            K::FFlagsAny(m) => f.f_flags & m != 0,
            K::SocketFd(l) => place_matches(l, ctx.socket_fd),
            K::Watches(l) => f.watches.as_ref().is_some_and(|w| any_str(l, w.as_str())),
            K::InternalShm(b) => ctx.internal_shm == Some(b),
        }
    }

    /// Whether every file of one [`Kind`] answers this clause alike: it asks about the ops
    /// table, the file type, the filesystem, the device number, whether the inode and socket
    /// could be read, and (when `with_socket`) the socket's kind or (when `with_name`) the name.
    fn kind_wide(self, with_name: bool, with_socket: bool) -> bool {
        use Clause as K;
        match self {
            K::Ops(_)
            | K::Member(_)
            | K::FileType(_)
            | K::FsType(_)
            | K::FsMagic(_)
            | K::Major(_)
            | K::Minor(_)
            | K::InodeKnown(_)
            | K::SocketKnown(_) => true,
            K::Name(_) | K::NamePrefix(_) => with_name,
            K::Family(_) | K::SockType(_) | K::Protocol(_) => with_socket,
            _ => false,
        }
    }

    /// Whether this clause asks what [`Assume::Plain`] settles.
    fn of_plainness(self) -> bool {
        matches!(
            self,
            Clause::MountVisible(_) | Clause::Locked(_) | Clause::Deleted(_) | Clause::Unlinked(_)
        )
    }
}

/// What a kernel filter checks of each file itself before it drops it, so that judging a
/// kind may take it as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assume {
    /// Nothing: a file of the kind may be in any state (the daemon's installs).
    Nothing,
    /// The file is plain: on a mount of its task's namespace, unlocked, linked, and under the
    /// name it was opened by (a host scan's walk checks each file).
    Plain,
}

impl Assume {
    /// `f` as the assumption has it.
    fn apply(self, f: &FileFact) -> std::borrow::Cow<'_, FileFact> {
        match self {
            Assume::Nothing => std::borrow::Cow::Borrowed(f),
            Assume::Plain => {
                let mut plain = f.clone();
                plain.mount_visible = Some(true);
                plain.locked = Some(false);
                plain.nlink = plain.nlink.max(1);
                plain.unlinked = false;
                std::borrow::Cow::Owned(plain)
            }
        }
    }
}

fn cond_matches(c: &Cond, f: &FileFact, ops: Option<&OpsIdentity>, ctx: &Context) -> bool {
    each_clause!(c, |k: Clause| k.holds(f, ops, ctx))
}

/// Rounds a size up to whole MiB, as CRIU's `--ghost-limit` takes it (`2M`).
fn ghost_limit(size: u64) -> String {
    format!("{}M", size.div_ceil(1 << 20).max(1))
}

/// Fills `{placeholders}` in a reason or an option from the file's facts.
fn expand(template: &str, f: &FileFact, ops: Option<&OpsIdentity>) -> String {
    if !template.contains('{') {
        return template.to_string();
    }
    let sock = f.socket.as_ref();
    let rdev = f.rdev.unwrap_or(f.dev);
    let watch = f.watches.as_ref();
    let pairs: [(&str, String); 18] = [
        ("{ino}", f.ino.to_string()),
        (
            "{peer_ino}",
            sock.and_then(|s| s.peer.as_ref())
                .map_or(0, |p| p.ino)
                .to_string(),
        ),
        ("{name}", f.name.to_string()),
        ("{fs_type}", f.fs_type.to_string()),
        ("{mode}", f.mode_octal()),
        ("{major}", rdev.major.to_string()),
        ("{minor}", rdev.minor.to_string()),
        ("{rdev_hex}", format!("{:x}", rdev.user_encoding())),
        ("{dev_hex}", format!("{:x}", f.dev.user_encoding())),
        ("{size}", f.size.to_string()),
        ("{ghost_limit}", ghost_limit(f.size)),
        ("{allocated_limit}", ghost_limit(f.allocated)),
        (
            "{family}",
            sock.map_or_else(String::new, |s| names::family_name(s.family)),
        ),
        (
            "{bpf_map_type}",
            f.bpf_map_type
                .map_or_else(|| "of unknown type".into(), names::bpf_map_type_name),
        ),
        (
            "{mnt_id}",
            f.mnt_id.map_or_else(|| "?".into(), |m| m.to_string()),
        ),
        (
            "{ops}",
            ops.map_or_else(|| format!("{:#x}", f.f_op), |o| o.label()),
        ),
        (
            "{watch_ino}",
            watch.and_then(|w| w.ino()).unwrap_or(0).to_string(),
        ),
        (
            "{scan_path}",
            watch.and_then(|w| w.scan_path()).unwrap_or("?").to_string(),
        ),
    ];
    let mut out = template.to_string();
    for (key, value) in pairs {
        if out.contains(key) {
            out = out.replace(key, &value);
        }
    }
    out
}

/// Whether `rule` matches this file.
fn rule_matches(rule: &Rule, f: &FileFact, ops: Option<&OpsIdentity>, ctx: &Context) -> bool {
    applies(rule, f)
        && (rule.when.is_empty() || rule.when.iter().any(|c| cond_matches(c, f, ops, ctx)))
}

fn applies(rule: &Rule, f: &FileFact) -> bool {
    match rule.applies_to {
        AppliesTo::Any => true,
        AppliesTo::Fd => f.mapping.is_none(),
        AppliesTo::Mapping => f.mapping.is_some(),
    }
}

/// The first rule of `profile` that matches this file.
pub fn classify(
    profile: &Profile,
    f: &FileFact,
    ops: Option<&OpsIdentity>,
    ctx: &Context,
) -> Judgement {
    let rule = profile.rules.iter().find(|r| rule_matches(r, f, ops, ctx));
    judgement(profile, rule, f, ops)
}

/// The daemon's judgement of a socket the profile finds ok in a state it could not watch:
/// whatever the profile, `unknown`, never `ok`.
const UNWATCHED_RULE: &str = "state-unwatched";

/// Whether `rule` (the first that matches `f`) judges `f` ok.
pub fn judged_ok(rule: Option<&Rule>, f: &FileFact) -> bool {
    rule.is_some_and(|r| r.verdict == Verdict::Ok) && !unwatched(f)
}

/// A socket whose state the daemon could not watch (`SocketFact::unwatched`).
fn unwatched(f: &FileFact) -> bool {
    f.socket.as_ref().is_some_and(|s| s.unwatched)
}

/// The kind `r` names `f`: its file type where it names none.
fn rule_kind(r: &Rule, f: &FileFact, ops: Option<&OpsIdentity>) -> String {
    r.kind
        .as_deref()
        .map_or_else(|| f.file_type.as_str().to_string(), |k| expand(k, f, ops))
}

/// The judgement `rule` gives this file; with no rule, `unknown`.
fn judgement(
    profile: &Profile,
    rule: Option<&Rule>,
    f: &FileFact,
    ops: Option<&OpsIdentity>,
) -> Judgement {
    match rule {
        Some(r) if r.verdict == Verdict::Ok && unwatched(f) => Judgement {
            verdict: Verdict::Unknown,
            rule: UNWATCHED_RULE.into(),
            reason: "TCP socket ok in its present state, but the daemon's kernel side could not \
                     watch it (its map of watched sockets is full): it could connect unseen"
                .into(),
            options: vec![],
            kind: rule_kind(r, f, ops),
        },
        Some(r) => Judgement {
            verdict: r.verdict,
            kind: rule_kind(r, f, ops),
            rule: r.id.clone(),
            reason: expand(&r.reason, f, ops),
            options: r.options.iter().map(|o| expand(o, f, ops)).collect(),
        },
        None => Judgement {
            verdict: Verdict::Unknown,
            kind: match f.file_type {
                FileType::None => f.name.to_string(),
                t => t.as_str().to_string(),
            },
            rule: NO_RULE.into(),
            reason: format!(
                "profile {} has no rule for this file (ops {}, {} on {})",
                profile.profile.name,
                ops.map_or_else(|| format!("{:#x}", f.f_op), |o| o.label()),
                f.file_type.as_str(),
                f.fs_type
            ),
            options: vec![],
        },
    }
}

/// What every file of one kind shares, as far as rule conditions can tell: its ops table
/// (hence the table's name and members), file type and filesystem, whether it is a mapping,
/// whether its inode could be read, a socket's family, type and protocol, a device's number and
/// an anonymous inode's name.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Kind {
    f_op: u64,
    file_type: FileType,
    fs_type: Text,
    fs_magic: u64,
    mapping: bool,
    inode_known: bool,
    socket: Option<(u16, u16, u16)>,
    rdev: Option<DevNum>,
    anon_name: Option<Text>,
}

/// A file's [`Kind`] borrowed from the file: it hashes as the owned kind does (a `Text` hashes
/// as its `str`), so that finding a known kind copies nothing, nor counts a shared name up
/// and down again, for each of a host's ~200,000 files.
#[derive(Hash)]
struct KindOf<'f> {
    f_op: u64,
    file_type: FileType,
    fs_type: &'f str,
    fs_magic: u64,
    mapping: bool,
    inode_known: bool,
    socket: Option<(u16, u16, u16)>,
    rdev: Option<DevNum>,
    anon_name: Option<&'f str>,
}

impl<'f> KindOf<'f> {
    fn of(f: &'f FileFact) -> Self {
        Self {
            f_op: f.f_op,
            file_type: f.file_type,
            fs_type: f.fs_type.as_str(),
            fs_magic: f.fs_magic,
            mapping: f.mapping.is_some(),
            inode_known: f.inode_known,
            socket: f.socket.as_ref().map(|s| (s.family, s.sk_type, s.protocol)),
            rdev: f.rdev,
            anon_name: names_the_kind(f).then(|| f.name.as_str()),
        }
    }

    fn is(&self, k: &Kind) -> bool {
        self.f_op == k.f_op
            && self.file_type == k.file_type
            && self.fs_type == k.fs_type.as_str()
            && self.fs_magic == k.fs_magic
            && self.mapping == k.mapping
            && self.inode_known == k.inode_known
            && self.socket == k.socket
            && self.rdev == k.rdev
            && self.anon_name == k.anon_name.as_ref().map(Text::as_str)
    }
}

impl Kind {
    fn of(f: &FileFact) -> Self {
        Self {
            f_op: f.f_op,
            file_type: f.file_type,
            fs_type: f.fs_type.clone(),
            fs_magic: f.fs_magic,
            mapping: f.mapping.is_some(),
            inode_known: f.inode_known,
            socket: f.socket.as_ref().map(|s| (s.family, s.sk_type, s.protocol)),
            rdev: f.rdev,
            anon_name: names_the_kind(f).then(|| f.name.clone()),
        }
    }
}

/// An anonymous inode's name is its kind's (`[eventfd]`); any other file's is its own.
fn names_the_kind(f: &FileFact) -> bool {
    f.file_type == FileType::None
}

/// A rule a kind of file could match, with what is left to test of each of its alternatives
/// once the kind is known: none left means every file of the kind matches it.
struct Candidate<'a> {
    rule: u32,
    rest: Option<Box<[Box<[Clause<'a>]>]>>,
}

/// A profile ready to judge many files. A file is tried against the profile's rules in order,
/// ~60 of them, and most fail on what every file of its [`Kind`] shares (its ops table, its
/// filesystem): the rules a kind could match, and what is left to test of them, are found once
/// per kind, and its files are tried against those alone. A host holds ~200,000 open files of a
/// few hundred kinds.
pub struct Classifier<'a> {
    pub profile: &'a Profile,
    /// Ops tables by address: kinds are told apart by address, so the map is borrowed for as
    /// long as they are kept.
    pub ops: &'a OpsTables,
    /// Per kind, the rules its files could match, in profile order, up to the first that every
    /// file of the kind matches.
    candidates: KindTable<Box<[Candidate<'a>]>>,
}

/// Per kind of file, a `T` found once. A table, not a map: a kind is looked up by [`KindOf`].
struct KindTable<T> {
    table: RefCell<hashbrown::HashTable<(Kind, T)>>,
    hasher: foldhash::fast::RandomState,
}

impl<T> Default for KindTable<T> {
    fn default() -> Self {
        Self {
            table: RefCell::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<T> KindTable<T> {
    /// `read` of the entry of `f`'s kind, which `make` makes the first time.
    fn with<R>(&self, f: &FileFact, make: impl FnOnce() -> T, read: impl FnOnce(&T) -> R) -> R {
        use std::hash::BuildHasher;
        let kind = KindOf::of(f);
        let hash = self.hasher.hash_one(&kind);
        let mut table = self.table.borrow_mut();
        let (_, entry) = match table.find_entry(hash, |(k, _)| kind.is(k)) {
            Ok(known) => known.into_mut(),
            Err(_) => table
                .insert_unique(hash, (Kind::of(f), make()), |(k, _)| {
                    self.hasher.hash_one(k)
                })
                .into_mut(),
        };
        read(entry)
    }
}

/// The rules each kind of file could match, for a caller that judges files one at a time, all
/// day (the daemon's installs): by index, so that it borrows neither the profile nor the ops
/// tables its kinds were judged with, and must be emptied whenever either changes. Behind a
/// lock, uncontended, for its holder is shared with judging threads.
#[derive(Default)]
pub struct KindRules(std::sync::Mutex<KindTable<Box<[u32]>>>);

impl KindRules {
    /// The verdict of [`classify`], without the judgement's words.
    pub fn verdict(
        &self,
        profile: &Profile,
        f: &FileFact,
        ops: Option<&OpsIdentity>,
        ctx: &Context,
    ) -> Verdict {
        let make = || candidates(profile, f, ops).iter().map(|c| c.rule).collect();
        let table = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let verdict = table.with(f, make, |rules| {
            rules
                .iter()
                .map(|&i| &profile.rules[i as usize])
                .find(|r| rule_matches(r, f, ops, ctx))
                .map_or(Verdict::Unknown, |r| r.verdict)
        });
        match verdict {
            Verdict::Ok if unwatched(f) => Verdict::Unknown,
            v => v,
        }
    }

    /// Forgets every kind: the profile or an ops table's identity changed.
    pub fn clear(&mut self) {
        let table = self
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table.table.get_mut().clear();
    }
}

impl<'a> Classifier<'a> {
    pub fn new(profile: &'a Profile, ops: &'a OpsTables) -> Self {
        Self {
            profile,
            ops,
            candidates: KindTable::default(),
        }
    }

    pub fn ops_of(&self, f: &FileFact) -> Option<&'a OpsIdentity> {
        self.ops.get(&f.f_op)
    }

    /// The first rule that matches this file, as [`classify`] finds it.
    pub fn rule_for(&self, f: &FileFact, ctx: &Context) -> Option<&'a Rule> {
        let ops = self.ops_of(f);
        let make = || candidates(self.profile, f, ops);
        let rule = self.candidates.with(f, make, |candidates| {
            candidates
                .iter()
                .find(|c| {
                    c.rest.as_ref().is_none_or(|rest| {
                        rest.iter()
                            .any(|alternative| alternative.iter().all(|k| k.holds(f, ops, ctx)))
                    })
                })
                .map(|c| c.rule)
        });
        rule.map(|i| &self.profile.rules[i as usize])
    }

    /// The judgement `rule` (from [`Self::rule_for`]) gives this file.
    pub fn judgement(&self, rule: Option<&Rule>, f: &FileFact) -> Judgement {
        judgement(self.profile, rule, f, self.ops_of(f))
    }

    /// As [`classify`] judges it.
    pub fn classify(&self, f: &FileFact, ctx: &Context) -> Judgement {
        self.judgement(self.rule_for(f, ctx), f)
    }
}

/// The rules a file of `f`'s kind could match: those with an alternative whose kind-wide
/// conditions hold for `f`, each with the rest of those alternatives.
fn candidates<'a>(
    profile: &'a Profile,
    f: &FileFact,
    ops: Option<&OpsIdentity>,
) -> Box<[Candidate<'a>]> {
    let with_name = names_the_kind(f);
    let mut candidates = Vec::new();
    for (rule, r) in (0u32..).zip(&profile.rules) {
        if !applies(r, f) {
            continue;
        }
        let rest: Vec<Box<[Clause<'a>]>> = r
            .when
            .iter()
            .filter(|c| {
                clauses(c)
                    .filter(|k| k.kind_wide(with_name, true))
                    .all(|k| k.holds(f, ops, &Context::default()))
            })
            .map(|c| {
                clauses(c)
                    .filter(|k| !k.kind_wide(with_name, true))
                    .collect()
            })
            .collect();
        if r.when.is_empty() || rest.iter().any(|alternative| alternative.is_empty()) {
            candidates.push(Candidate { rule, rest: None });
            break;
        }
        if !rest.is_empty() {
            candidates.push(Candidate {
                rule,
                rest: Some(rest.into()),
            });
        }
    }
    candidates.into()
}

/// Conditions that hold for every file sharing `f`'s ops table and file type (and, for
/// devices, device number; for sockets, family, type and protocol): the table's identity, the
/// anonymous inode's name, the device numbers, what kind of socket it is. `None`: the
/// condition depends on the file's state or relations. Sets `rdev_bound` when device numbers
/// decided it.
fn static_part(
    c: &Cond,
    f: &FileFact,
    ops: Option<&OpsIdentity>,
    assume: Assume,
    rdev_bound: &mut bool,
) -> Option<bool> {
    // Socket conditions hold only for sockets, device conditions only for devices.
    let socket_only = c.family.is_some()
        || c.sock_type.is_some()
        || c.protocol.is_some()
        || c.tcp_state.is_some()
        || c.inflight.is_some()
        || c.peer.is_some()
        || c.peer_named.is_some()
        || c.sock_filter.is_some()
        || c.udp_corked.is_some()
        || c.send_queued.is_some()
        || c.recv_queued.is_some()
        || c.socket_known == Some(true);
    let device_only = c.major.is_some()
        || c.minor.is_some()
        || c.tty_master.is_some()
        || c.external_ptys_over.is_some()
        || c.external_ptys_over.is_some();
    if (socket_only && f.file_type != FileType::Sock)
        || (device_only && !matches!(f.file_type, FileType::Chr | FileType::Blk))
    {
        return Some(false);
    }
    // A socket sample stands for its kind (family, type, protocol); its state and peer vary.
    let socket_kind_known = f.socket.is_some();
    if socket_kind_known && c.tcp_state.is_some() && !is_tcp(f) {
        return Some(false);
    }
    // A filter, a cork or queued bytes come to a socket after it is installed (setsockopt,
    // send), where no event follows: the daemon's kernel filter judges a new fd as it is then,
    // and its rescans (which drop nothing) see what came later. So a condition that needs one
    // of them does not hold for a fresh socket. (An accepted socket inheriting its listener's
    // eBPF filter is the exception, left to the rescans.)
    let after_install = c
        .sock_filter
        .as_ref()
        .is_some_and(|l| l.iter().all(|v| v != "none"))
        || c.udp_corked == Some(true)
        || c.send_queued == Some(true)
        || c.recv_queued == Some(true);
    if after_install {
        return Some(false);
    }
    let socket_state =
        c.tcp_state.is_some() || c.inflight.is_some() || c.peer.is_some() || c.peer_named.is_some();
    let dynamic = (socket_only && !socket_kind_known)
        || socket_state
        || c.tty_master.is_some()
        || c.pidfd_target.is_some()
        || c.pidfd_dead.is_some()
        || c.f_flags_any.is_some()
        || c.socket_fd.is_some()
        || c.bpf_map_type.is_some()
        || c.ns_member.is_some()
        || c.own_netns.is_some()
        || c.own_ipcns.is_some()
        || (assume == Assume::Nothing
            && (c.deleted.is_some()
                || c.unlinked.is_some()
                || c.locked.is_some()
                || c.mount_visible.is_some()))
        || c.size_over.is_some()
        || c.allocated_over.is_some()
        || c.shared.is_some()
        || c.watches.is_some()
        || c.internal_shm.is_some()
        || (!names_the_kind(f) && (c.name.is_some() || c.name_prefix.is_some()));
    // The kernel checks the device number too before dropping a file (`rdev_bound`); a
    // socket's kind counts when the sample has one.
    let assumed = assume.apply(f);
    let holds = clauses(c)
        .filter(|k| {
            k.kind_wide(true, socket_kind_known) || (assume == Assume::Plain && k.of_plainness())
        })
        .all(|k| k.holds(&assumed, ops, &Context::default()));
    if c.major.is_some() || c.minor.is_some() {
        *rdev_bound = true;
    }
    match (holds, dynamic) {
        (false, _) => Some(false),
        (true, true) => None,
        (true, false) => Some(true),
    }
}

/// Whether every fd with `f`'s ops table and file type (and, for a socket, its family, type and
/// protocol) is `ok` under `profile`, whatever its state but what `assume` takes as given: the
/// first rule that could match is an `ok` rule that surely matches. `Some(bound)` when it is,
/// `bound` telling that it holds only for `f`'s device number. Such files are dropped in the
/// kernel by the daemon, and counted there by a host scan.
pub fn always_ok(
    profile: &Profile,
    f: &FileFact,
    ops: Option<&OpsIdentity>,
    assume: Assume,
) -> Option<bool> {
    if f.mapping.is_some() || !f.inode_known {
        return None;
    }
    let mut rdev_bound = false;
    for rule in profile
        .rules
        .iter()
        .filter(|r| r.applies_to != AppliesTo::Mapping)
    {
        let alternatives: Vec<Option<bool>> = if rule.when.is_empty() {
            vec![Some(true)]
        } else {
            rule.when
                .iter()
                .map(|c| static_part(c, f, ops, assume, &mut rdev_bound))
                .collect()
        };
        if alternatives.iter().any(Option::is_none) {
            return None;
        }
        if alternatives.contains(&Some(true)) {
            return (rule.verdict == Verdict::Ok).then_some(rdev_bound);
        }
    }
    None
}

fn task_cond_matches(c: &TaskCond, t: &TaskFacts) -> bool {
    opt(&c.session_leader, |&b| t.session_leader == b)
        && opt(&c.traced, |&b| t.traced == b)
        && opt(&c.nested_pidns, |&b| t.nested_pidns == b)
        && opt(&c.holds_locks, |&b| t.locked_fds.is_empty() != b)
}

/// Every check of `rules` that holds: each is an independent check the checkpointer makes.
fn checks<C>(rules: &[CheckRule<C>], kind: &str, holds: impl Fn(&C) -> bool) -> Vec<Judgement> {
    rules
        .iter()
        .filter(|r| r.when.is_empty() || r.when.iter().any(&holds))
        .map(|r| Judgement {
            verdict: r.verdict,
            kind: kind.into(),
            rule: r.id.clone(),
            reason: r.reason.clone(),
            options: r.options.clone(),
        })
        .collect()
}

/// Every task rule that matches the dump's root task.
pub fn classify_task(profile: &Profile, t: &TaskFacts) -> Vec<Judgement> {
    let mut judgements = checks(&profile.task_rules, "task", |c| task_cond_matches(c, t));
    if judgements.iter().any(|j| j.reason.contains("{locked_fds}")) {
        let fds: Vec<String> = t.locked_fds.iter().map(u32::to_string).collect();
        let fds = fds.join(", ");
        for j in &mut judgements {
            j.reason = j.reason.replace("{locked_fds}", &fds);
        }
    }
    judgements
}

/// The kernel facts kernel rules look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// Names of the special areas mapped into every process: `[vvar]`, `[vvar_vclock]`, ...
    pub special_mappings: Vec<String>,
}

impl KernelFacts {
    /// From a `/proc/PID/maps` text: every `[name]` of a mapping without a file.
    pub fn from_maps(maps: &str) -> Self {
        let mut special_mappings: Vec<String> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|n| n.starts_with('[') && n.ends_with(']'))
            .map(str::to_string)
            .collect();
        special_mappings.sort();
        special_mappings.dedup();
        Self { special_mappings }
    }
}

/// Every kernel rule that holds on this kernel (each an independent incompatibility).
pub fn classify_kernel(profile: &Profile, k: &KernelFacts) -> Vec<Judgement> {
    checks(&profile.kernel_rules, "kernel", |c| {
        opt(&c.special_mapping, |names| {
            names.iter().any(|n| k.special_mappings.contains(n))
        })
    })
}

#[cfg(test)]
pub(crate) mod tests;
