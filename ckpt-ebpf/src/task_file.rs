//! `iter/task_file`: one [`FileFacts`] per open file of every task (without its socket members
//! when it is no socket), and one [`OpsRecord`] the first time each ops table is seen.

use aya_ebpf::{
    helpers::generated::bpf_seq_write,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use ckpt_common::{
    FILE_FACTS_NO_SOCK_LEN, FLAG_WATCH_SOCKETS, FileFacts, OpsRecord, TAG_FILE_NO_SOCK, flags,
    known,
};
use core::ffi::c_void;

use crate::events::{self, SockOk};
use crate::file_facts::{self, SEEN_OPS};
use crate::kread::{self, FsTypeCache, Mem, Typed, off};

/// Records are built here, not on the 512-byte BPF stack.
#[map]
static FILE_SCRATCH: PerCpuArray<FileFacts> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FILE_OPS_SCRATCH: PerCpuArray<OpsRecord> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FILE_FS_TYPE: FsTypeCache = PerCpuArray::with_max_entries(1, 0);

/// For `ckpt_task_file_counting`: per process, its files that `OK_FOPS` says are ok, counted
/// here instead of reported. Sized by user space; an element is allocated when a process is
/// first counted, and a process that finds the map full has its files reported as usual.
#[map]
static OK_COUNTS: HashMap<u32, u64> = HashMap::with_max_entries(1, file_facts::BPF_F_NO_PREALLOC);

/// Locks walked per list of an inode: the verifier's work, paid by every scan's start-up, grows
/// faster than this bound. Beyond it the record says so (`flags::LOCKS_UNWALKED`) and user
/// space reads the task's own locks on the fd from /proc.
const LOCK_WALK: u32 = 4;

/// `struct bpf_iter__task_file` is BPF ABI: meta, task, fd, file, each 8-byte aligned.
const CTX_META: usize = 0;
const CTX_TASK: usize = 8;
const CTX_FD: usize = 16;
const CTX_FILE: usize = 24;

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn ckpt_task_file(ctx: *mut c_void) -> i32 {
    let _ = try_task_file::<false>(ctx);
    0
}

/// The same walk for a host scan that lists only what is not ok: files of kinds user space
/// put in `OK_FOPS` are counted per process (`OK_COUNTS`) instead of reported. A program of
/// its own, not a flag: every other scan would pay the verifier for the dead code.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn ckpt_task_file_counting(ctx: *mut c_void) -> i32 {
    let _ = try_task_file::<true>(ctx);
    0
}

#[inline(always)]
fn try_task_file<const COUNTING: bool>(ctx: *mut c_void) -> Option<()> {
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

    let tgid = Typed::read::<u32>(task, off!(task_tgid))?;
    if !kread::wanted(task, tgid) {
        return None;
    }
    // The kernel walks a thread's files only when its table is not the leader's.
    let pid = Typed::read::<u32>(task, off!(task_pid))?;
    if !kread::in_process_table::<Typed>(task, pid == tgid) {
        return None;
    }

    let rec = FILE_SCRATCH.get_ptr_mut(0)?;
    let f_op = file_facts::untyped(
        unsafe { &raw mut (*rec).f_op },
        Typed::ptr(file, off!(file_f_op)),
    );
    if COUNTING {
        // Whatever its kind, a file the task holds a lock on is reported: CRIU stops at any
        // lock of a dumped task without --file-locks (criu/file-lock.c).
        let counted = match ok_kind(file, f_op) {
            Some(only_plain) => {
                (!only_plain || file_facts::plain_but_locks::<Typed>(file, task))
                    && file_facts::unlocked::<Typed, LOCK_WALK>(file, task)
                    && count_ok(tgid)
            }
            None => false,
        };
        if counted {
            return None;
        }
    }

    let rec = unsafe { &mut *rec };
    // Reported before the file's record, which user space resolves through it; settled after.
    file_facts::emit_ops_once(seq, f_op, &SEEN_OPS, &FILE_OPS_SCRATCH);
    file_facts::fill::<Typed, LOCK_WALK>(rec, task, tgid, fd, file, f_op, Some((&FILE_FS_TYPE, 0)));
    let socket = rec.known & known::SOCKET != 0;
    // The daemon's rescan watches what it finds as an install would, or the socket, ok now,
    // could leave its state unseen (a connect by sendto(MSG_FASTOPEN) or io_uring). The
    // flag is a constant: a scan's verifier never sees the branch.
    if !COUNTING && socket && off!(flags) & FLAG_WATCH_SOCKETS != 0 {
        match events::ok_socket(file, tgid, fd) {
            (SockOk::Watched | SockOk::No, state) => rec.sk_state = state as u16,
            (SockOk::Unwatched, _) => rec.flags |= flags::UNWATCHED,
            (SockOk::Always, _) => {}
        }
    }
    // Most files are no sockets: their records end before the socket members, all zero.
    let size = if !socket {
        rec.tag = TAG_FILE_NO_SOCK;
        FILE_FACTS_NO_SOCK_LEN
    } else {
        core::mem::size_of::<FileFacts>()
    };

    let written = unsafe {
        bpf_seq_write(
            seq as *mut _,
            rec as *const FileFacts as *const c_void,
            size as u32,
        )
    };
    // On overflow the kernel discards this object's output and runs us again for the same file
    // after flushing: that run must report the ops table again if this one did.
    file_facts::settle_ops(written, &SEEN_OPS, &FILE_OPS_SCRATCH);
    Some(())
}

/// Whether `file` is ok by its ops table (`OK_FOPS`): `Some(only_plain)` as
/// `file_facts::ok_by_table`.
#[inline(always)]
fn ok_kind(file: u64, f_op: u64) -> Option<bool> {
    let inode = Typed::ptr(file, off!(file_f_inode));
    let mode = Typed::read::<u16>(inode, off!(inode_i_mode)).unwrap_or(0) as u32;
    let rdev = Typed::read::<u32>(inode, off!(inode_i_rdev)).unwrap_or(0);
    file_facts::ok_by_table(f_op, mode, rdev)
}

/// Counts one more ok file of process `tgid` in `OK_COUNTS`; false (the file is to be
/// reported) when the map is full.
#[inline(always)]
fn count_ok(tgid: u32) -> bool {
    match OK_COUNTS.get_ptr_mut(&tgid) {
        Some(n) => {
            // SAFETY: the map's value, which lives as long as its element: elements are only
            // ever added during a scan. A plain add: the map is this scan's own, and its one
            // walk runs on one CPU at a time.
            unsafe { *n += 1 };
            true
        }
        None => OK_COUNTS.insert(&tgid, &1, file_facts::BPF_NOEXIST).is_ok(),
    }
}
