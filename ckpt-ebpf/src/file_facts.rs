//! Filling a [`FileFacts`] record for one fd of one task: shared by the iterator (snapshot) and
//! the install events (live), so both sides of the daemon see identical facts.

use aya_ebpf::{
    helpers::generated::bpf_seq_write,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use ckpt_common::{
    ABSENT, ANY_RDEV, FileFacts, N_OPS_MEMBERS, OkFops, OpsRecord, TAG_OPS, flags, known,
};
use core::ffi::c_void;

use crate::kread::{self, Locks, Mem, off, read_ptr};

/// Ops tables already reported (value unused). Sized far above the few hundred distinct
/// tables a host has; once full, later tables go unreported and user space says their identity
/// is unknown.
pub type SeenOps = HashMap<u64, u8>;

/// The tables the file iterator or an event reported.
#[map]
pub static SEEN_OPS: SeenOps = HashMap::with_max_entries(8192, 0);

/// The tables the mappings' iterator reported. Apart: the files' walk then reports every table
/// before its first file, which a host scan judges the file's kind by, however far ahead the
/// mappings' walk runs on its own core.
#[map]
pub static SEEN_MAPPED_OPS: SeenOps = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Map flag: elements are allocated as they are added, not all when the map is made.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// Ops tables whose files user space judged ok whatever their state, or whenever they are
/// plain (the daemon's installs, a host scan's walk); the value is the file type and device
/// number they were judged with, checked here too.
#[map]
static OK_FOPS: HashMap<u64, OkFops> = HashMap::with_max_entries(4096, 0);

pub const BPF_NOEXIST: u64 = 1;

/// Whether a file with ops table `f_op`, mode `mode` and device `rdev` is ok by `OK_FOPS`:
/// `Some(only_plain)` when it is, only if plain (see [`plain`]) when `only_plain`.
#[inline(always)]
pub fn ok_by_table(f_op: u64, mode: u32, rdev: u32) -> Option<bool> {
    let ok = unsafe { OK_FOPS.get(&f_op) }?;
    let kind =
        (mode & kread::S_IFMT) >> 12 == ok.file_type && (ok.rdev == ANY_RDEV || rdev == ok.rdev);
    kind.then_some(ok.only_plain != 0)
}

/// Whether `file`, installed in `task`, is plain but for its locks: its inode and mount known,
/// on a mount of the task's namespace, linked, and under the name it was opened by (with
/// [`unlocked`], plain). Read as [`fill`] reads them, without the rest of a record.
#[inline(always)]
pub fn plain_but_locks<M: Mem>(file: u64, task: u64) -> bool {
    let inode = M::ptr(file, off!(file_f_inode));
    let dentry = M::ptr(file, off!(file_f_path_dentry));
    inode != 0
        && M::read::<u32>(inode, off!(inode_i_nlink)).unwrap_or(0) != 0
        && dentry != 0
        && M::ptr(dentry, off!(dentry_d_hash_pprev)) != 0
        && matches!(kread::mount_facts::<M>(file, task), Some((_, true)))
}

/// Whether `task` surely holds no lock on `file` (every lock walked).
#[inline(always)]
pub fn unlocked<M: Mem, const LOCK_WALK: u32>(file: u64, task: u64) -> bool {
    matches!(
        kread::holds_lock::<M, LOCK_WALK>(file, task),
        Some(Locks::Free)
    )
}

/// Whether `f_op` is reported for the first time (and now marked seen). A lookup first: an
/// insert attempt on every file takes the bucket lock even when the table is known.
#[inline(always)]
pub fn first_sight(seen: &SeenOps, f_op: u64) -> bool {
    f_op != 0 && unsafe { seen.get(&f_op) }.is_none() && seen.insert(&f_op, &0, BPF_NOEXIST).is_ok()
}

/// `value` (a typed pointer the verifier follows, an ops table's address) as a plain number:
/// stored in `slot` of a record in a map and read back. Spilled as a map key on some paths
/// and not others, the typed pointer kept the verifier's states on every later path apart.
#[inline(always)]
pub fn untyped(slot: *mut u64, value: u64) -> u64 {
    // SAFETY: `slot` is a member of this CPU's element of the calling program's scratch map.
    unsafe {
        core::ptr::write_volatile(slot, value);
        core::ptr::read_volatile(slot)
    }
}

/// Fills the member function addresses of the ops table at `f_op`.
#[inline(always)]
pub fn fill_ops(rec: &mut OpsRecord, f_op: u64) {
    rec.tag = TAG_OPS;
    rec._pad = 0;
    rec.f_op = f_op;
    let mut i = 0;
    while i < N_OPS_MEMBERS {
        let m = unsafe { core::ptr::read_volatile(&raw const kread::OFFSETS.fop_members[i]) };
        rec.members[i] = if m == ABSENT { 0 } else { read_ptr(f_op, m) };
        i += 1;
    }
}

/// Writes the ops record of `f_op` to an iterator's `seq` the first time the table is seen.
/// If the caller's own record then does not fit, the kernel discards both and runs the program
/// again on the same object: the caller then calls [`settle_ops`], which forgets the table so
/// that run reports it again. `scratch` is the calling program's own (the two iterators of a
/// scan run at once); the `f_op` it is left holding says this run reported that table.
#[inline(always)]
pub fn emit_ops_once(
    seq: *mut c_void,
    f_op: u64,
    seen: &SeenOps,
    scratch: &PerCpuArray<OpsRecord>,
) {
    if !first_sight(seen, f_op) {
        return;
    }
    let written = scratch.get_ptr_mut(0).is_some_and(|rec| {
        let rec = unsafe { &mut *rec };
        fill_ops(rec, f_op);
        let size = core::mem::size_of::<OpsRecord>() as u32;
        unsafe {
            bpf_seq_write(
                seq as *mut _,
                rec as *const OpsRecord as *const c_void,
                size,
            ) == 0
        }
    });
    if !written {
        forget_ops(seen, f_op);
    }
}

/// After the caller has written its own record (`written`: what `bpf_seq_write` returned):
/// forgets the table this run reported, if the record did not fit, and leaves `scratch`
/// saying that this run reported none. The fact is read back from the map rather than
/// returned by [`emit_ops_once`]: as a constant true or false, the verifier would walk the
/// whole program in between once for each.
#[inline(always)]
pub fn settle_ops(written: i64, seen: &SeenOps, scratch: &PerCpuArray<OpsRecord>) {
    let Some(rec) = scratch.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's element of the program's own scratch map.
    let reported = unsafe { core::ptr::read_volatile(&raw const (*rec).f_op) };
    if reported != 0 {
        if written != 0 {
            forget_ops(seen, reported);
        }
        unsafe { core::ptr::write_volatile(&raw mut (*rec).f_op, 0) };
    }
}

/// Marks `f_op` as not reported yet.
#[inline(always)]
pub fn forget_ops(seen: &SeenOps, f_op: u64) {
    let _ = seen.remove(&f_op);
}

/// Fills every fact of `rec` for `file`, installed as `fd` in `task` (a `tgid` process);
/// `fs_cache` as for `kread::inode_facts`, `LOCK_WALK` as for `kread::holds_lock`.
#[inline(always)]
pub fn fill<M: Mem, const LOCK_WALK: u32>(
    rec: &mut FileFacts,
    task: u64,
    tgid: u32,
    fd: u32,
    file: u64,
    f_op: u64,
    fs_cache: kread::FsCacheSlot,
) {
    rec.tag = ckpt_common::TAG_FILE;
    rec.tgid = tgid;
    rec.tid = M::read::<u32>(task, off!(task_pid)).unwrap_or(tgid);
    rec.fd = fd;
    rec.f_op = f_op;
    rec.f_flags = M::read::<u32>(file, off!(file_f_flags)).unwrap_or(0);
    // `fs_type` then `name`, 8-byte aligned (ckpt-common's layout test).
    kread::zero_words::<{ (ckpt_common::FS_TYPE_LEN + ckpt_common::NAME_LEN) / 8 }>(
        (&raw mut rec.fs_type).cast(),
    );
    let facts = kread::inode_facts::<M>(file, &mut rec.fs_type, &mut rec.name, fs_cache);
    kread::store_inode!(rec, facts);

    rec.mnt_id = 0;
    // A socket's mount is the kernel's internal sockfs, the same for every socket.
    let socket = rec.mode & kread::S_IFMT == kread::S_IFSOCK;
    if let Some((id, visible)) = (!socket)
        .then(|| kread::mount_facts::<M>(file, task))
        .flatten()
    {
        rec.mnt_id = id;
        rec.known |= known::MOUNT;
        if visible {
            rec.flags |= flags::MOUNT_VISIBLE;
        }
    }

    // The socket members, from `sk_family` to the end (8-byte aligned, whole words).
    kread::zero_words::<{ (size_of::<FileFacts>() - ckpt_common::FILE_FACTS_NO_SOCK_LEN) / 8 }>(
        (&raw mut rec.sk_family).cast(),
    );
    if socket {
        if let Some(s) = kread::sock_facts::<M>(file) {
            rec.sk_family = s.family;
            rec.sk_type = s.sk_type;
            rec.sk_protocol = s.protocol;
            rec.sk_state = s.state;
            rec.sk_backlog = s.backlog;
            rec.peer_ino = s.peer_ino;
            rec.peer_state = s.peer_state;
            rec.known |= s.known;
            rec.flags |= s.flags;
            rec.sk_wqueue = s.wqueue;
            rec.sk_rqueue = s.rqueue;
        }
    }

    rec.aux = 0;
    if let Some(nr) = kread::pidfd_target::<M>(file, rec.s_magic, &rec.name) {
        rec.aux = nr;
        rec.known |= known::PIDFD;
        if let Some(dead) = kread::pidfd_dead::<M>(file, rec.s_magic, &rec.name) {
            rec.known |= known::PIDFD_ALIVE;
            if dead {
                rec.flags |= flags::PIDFD_DEAD;
            }
        }
    } else if let Some(index) = kread::tty_index::<M>(file, rec.mode, rec.rdev) {
        rec.aux = index;
        rec.known |= known::TTY;
    } else if let Some(map_type) = kread::bpf_map_type::<M>(file, rec.s_magic, &rec.name) {
        rec.aux = map_type;
        rec.known |= known::BPF_MAP;
    }

    if let Some(locks) = kread::holds_lock::<M, LOCK_WALK>(file, task) {
        rec.known |= known::LOCKS;
        match locks {
            Locks::Free => {}
            Locks::Held => rec.flags |= flags::LOCKED,
            Locks::Unwalked => rec.flags |= flags::LOCKED | flags::LOCKS_UNWALKED,
        }
    }
}
