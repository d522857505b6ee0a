//! `iter/task_file`: one [`FileFacts`] per open file of every task, and one [`OpsRecord`] the
//! first time each ops table is seen.

use aya_ebpf::{
    helpers::generated::bpf_seq_write,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use ckpt_common::{ABSENT, FileFacts, N_OPS_MEMBERS, OpsRecord, TAG_FILE, TAG_OPS, flags, known};
use core::ffi::c_void;

use crate::kread::{self, off, read, read_ptr};

/// Ops tables already reported in this iteration (value unused). Sized far above the few
/// hundred distinct tables a host has; once full, later tables go unreported and user space
/// says their identity is unknown.
#[map]
static SEEN_OPS: HashMap<u64, u8> = HashMap::with_max_entries(8192, 0);

/// Records are built here, not on the 512-byte BPF stack.
#[map]
static FILE_SCRATCH: PerCpuArray<FileFacts> = PerCpuArray::with_max_entries(1, 0);
#[map]
static OPS_SCRATCH: PerCpuArray<OpsRecord> = PerCpuArray::with_max_entries(1, 0);

const BPF_NOEXIST: u64 = 1;

/// `struct bpf_iter__task_file` is BPF ABI: meta, task, fd, file, each 8-byte aligned.
const CTX_META: usize = 0;
const CTX_TASK: usize = 8;
const CTX_FD: usize = 16;
const CTX_FILE: usize = 24;

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn ckpt_task_file(ctx: *mut c_void) -> i32 {
    let _ = try_task_file(ctx);
    0
}

fn try_task_file(ctx: *mut c_void) -> Option<()> {
    let base = ctx as *const u8;
    // Each context field is read once and that copy checked: the verifier tracks the copy.
    let meta = unsafe { core::ptr::read_volatile(base.add(CTX_META) as *const *const *mut c_void) };
    let task = unsafe { core::ptr::read_volatile(base.add(CTX_TASK) as *const u64) };
    let fd = unsafe { core::ptr::read_volatile(base.add(CTX_FD) as *const u32) };
    let file = unsafe { core::ptr::read_volatile(base.add(CTX_FILE) as *const u64) };
    if meta.is_null() || task == 0 || file == 0 {
        return None;
    }
    let seq = unsafe { *meta };

    let tgid = read::<u32>(task, off!(task_tgid))?;
    let target = off!(target_tgid);
    if (target != 0 && target != tgid) || !kread::in_target_cgroup(task) {
        return None;
    }

    let f_op = read_ptr(file, off!(file_f_op));
    let mut ops_emitted = false;
    if f_op != 0 && SEEN_OPS.insert(&f_op, &0, BPF_NOEXIST).is_ok() {
        ops_emitted = emit_ops(seq, f_op);
        if !ops_emitted {
            let _ = SEEN_OPS.remove(&f_op);
        }
    }

    let rec = FILE_SCRATCH.get_ptr_mut(0)?;
    let rec = unsafe { &mut *rec };
    rec.tag = TAG_FILE;
    rec.tgid = tgid;
    rec.tid = read::<u32>(task, off!(task_pid)).unwrap_or(tgid);
    rec.fd = fd;
    rec.f_op = f_op;
    rec.f_flags = read::<u32>(file, off!(file_f_flags)).unwrap_or(0);
    rec.fs_type = [0; ckpt_common::FS_TYPE_LEN];
    rec.name = [0; ckpt_common::NAME_LEN];
    let (facts, inode) = kread::inode_facts(file, &mut rec.fs_type, &mut rec.name);
    rec.ino = facts.ino;
    rec.size = facts.size;
    rec.blocks = facts.blocks;
    rec.s_magic = facts.s_magic;
    rec.rdev = facts.rdev;
    rec.dev = facts.dev;
    rec.mode = facts.mode;
    rec.nlink = facts.nlink;
    rec.known = facts.known;
    rec.flags = if facts.unlinked { flags::UNLINKED } else { 0 };

    rec.mnt_id = 0;
    if let Some((id, visible)) = kread::mount_facts(file, task) {
        rec.mnt_id = id;
        rec.known |= known::MOUNT;
        if visible {
            rec.flags |= flags::MOUNT_VISIBLE;
        }
    }

    rec.sk_family = 0;
    rec.sk_type = 0;
    rec.sk_protocol = 0;
    rec.sk_state = 0;
    rec.sk_backlog = 0;
    rec.peer_ino = 0;
    rec.peer_state = 0;
    if rec.mode & kread::S_IFMT == kread::S_IFSOCK {
        if let Some(s) = kread::sock_facts(file) {
            rec.sk_family = s.family;
            rec.sk_type = s.sk_type;
            rec.sk_protocol = s.protocol;
            rec.sk_state = s.state;
            rec.sk_backlog = s.backlog;
            rec.peer_ino = s.peer_ino;
            rec.peer_state = s.peer_state;
            rec.known |= s.known;
            if s.has_peer {
                rec.flags |= flags::HAS_PEER;
            }
            if s.peer_named {
                rec.flags |= flags::PEER_NAMED;
            }
        }
    }

    rec.aux = 0;
    if let Some(nr) = kread::pidfd_target(file, inode, rec.s_magic, &rec.name) {
        rec.aux = nr;
        rec.known |= known::PIDFD;
    } else if let Some(index) = kread::tty_index(file, rec.mode, rec.rdev) {
        rec.aux = index;
        rec.known |= known::TTY;
    }

    if let Some(locked) = kread::holds_lock(file, inode, task) {
        rec.known |= known::LOCKS;
        if locked {
            rec.flags |= flags::LOCKED;
        }
    }

    let written = unsafe {
        bpf_seq_write(
            seq as *mut _,
            rec as *const FileFacts as *const c_void,
            core::mem::size_of::<FileFacts>() as u32,
        )
    };
    // On overflow the kernel discards this object's output and runs us again for the same file
    // after flushing: forget the ops table so that run reports it again.
    if written != 0 && ops_emitted {
        let _ = SEEN_OPS.remove(&f_op);
    }
    Some(())
}

/// Writes the function members of the ops table at `f_op`; false when it did not fit.
fn emit_ops(seq: *mut c_void, f_op: u64) -> bool {
    let Some(rec) = OPS_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let rec = unsafe { &mut *rec };
    rec.tag = TAG_OPS;
    rec._pad = 0;
    rec.f_op = f_op;
    let mut i = 0;
    while i < N_OPS_MEMBERS {
        let m = unsafe { core::ptr::read_volatile(&raw const kread::OFFSETS.fop_members[i]) };
        rec.members[i] = if m == ABSENT { 0 } else { read_ptr(f_op, m) };
        i += 1;
    }
    let written = unsafe {
        bpf_seq_write(
            seq as *mut _,
            rec as *const OpsRecord as *const c_void,
            core::mem::size_of::<OpsRecord>() as u32,
        )
    };
    written == 0
}
