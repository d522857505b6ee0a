//! `iter/task_file`: one [`FileFacts`] per open file of every task (without its socket members
//! when it is no socket), and one [`OpsRecord`] the first time each ops table is seen.

use aya_ebpf::{helpers::generated::bpf_seq_write, macros::map, maps::PerCpuArray};
use ckpt_common::{FILE_FACTS_NO_SOCK_LEN, FileFacts, OpsRecord, TAG_FILE_NO_SOCK, known};
use core::ffi::c_void;

use crate::file_facts;
use crate::kread::{self, FsTypeCache, Mem, Typed, off};

/// Records are built here, not on the 512-byte BPF stack.
#[map]
static FILE_SCRATCH: PerCpuArray<FileFacts> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FILE_OPS_SCRATCH: PerCpuArray<OpsRecord> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FILE_FS_TYPE: FsTypeCache = PerCpuArray::with_max_entries(1, 0);

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

    let tgid = Typed::read::<u32>(task, off!(task_tgid))?;
    if !kread::wanted(task, tgid) {
        return None;
    }

    let rec = FILE_SCRATCH.get_ptr_mut(0)?;
    let rec = unsafe { &mut *rec };
    // Reported before the file's record, which user space resolves through it; settled after.
    let f_op = Typed::ptr(file, off!(file_f_op));
    file_facts::emit_ops_once(seq, f_op, &FILE_OPS_SCRATCH);
    file_facts::fill::<Typed, LOCK_WALK>(rec, task, tgid, fd, file, f_op, Some(&FILE_FS_TYPE));
    // Most files are no sockets: their records end before the socket members, all zero.
    let size = if rec.known & known::SOCKET == 0 {
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
    file_facts::settle_ops(written, &FILE_OPS_SCRATCH);
    Some(())
}
