//! `iter/task_vma`: one [`VmaFacts`] per file-backed mapping of every process. Consecutive VMAs
//! of the same file (a library's text, data, bss...) are reported once: classification looks at
//! the file, not at each range.

use aya_ebpf::{helpers::generated::bpf_seq_write, macros::map, maps::PerCpuArray};
use ckpt_common::{FS_TYPE_LEN, NAME_LEN, OpsRecord, TAG_VMA, VmaFacts, flags};
use core::ffi::c_void;

use crate::file_facts::{self, SEEN_MAPPED_OPS};
use crate::kread::{self, FsTypeCache, Mem, Typed, off};

#[map]
static VMA_SCRATCH: PerCpuArray<VmaFacts> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VMA_OPS_SCRATCH: PerCpuArray<OpsRecord> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VMA_FS_TYPE: FsTypeCache = PerCpuArray::with_max_entries(1, 0);

/// The last (iterator session, tgid, file) reported on this CPU, to skip the next VMAs of the
/// same file. The session keeps a later scan by the same loaded program (a daemon's rescan)
/// from skipping a process's first mapping because an earlier scan ended on the same file.
#[map]
static LAST_FILE: PerCpuArray<[u64; 3]> = PerCpuArray::with_max_entries(1, 0);

/// `struct bpf_iter__task_vma` is BPF ABI: meta, task, vma.
const CTX_META: usize = 0;
/// `struct bpf_iter_meta` is BPF ABI: seq, session_id, seq_num.
const META_SESSION_ID: usize = 8;
const CTX_TASK: usize = 8;
const CTX_VMA: usize = 16;

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_vma")]
pub fn ckpt_task_vma(ctx: *mut c_void) -> i32 {
    let _ = try_task_vma(ctx);
    0
}

fn try_task_vma(ctx: *mut c_void) -> Option<()> {
    let base = ctx as *const u8;
    let meta = unsafe { core::ptr::read_volatile(base.add(CTX_META) as *const *const *mut c_void) };
    let task = unsafe { core::ptr::read_volatile(base.add(CTX_TASK) as *const u64) };
    let vma = unsafe { core::ptr::read_volatile(base.add(CTX_VMA) as *const u64) };
    if meta.is_null() || task == 0 || vma == 0 {
        return None;
    }
    let seq = unsafe { *meta };
    let session =
        unsafe { core::ptr::read_volatile((meta as *const u8).add(META_SESSION_ID) as *const u64) };
    let tgid = Typed::read::<u32>(task, off!(task_tgid))?;
    if !kread::wanted(task, tgid) {
        return None;
    }
    let file = Typed::ptr(vma, off!(vma_vm_file));
    if file == 0 {
        return None;
    }
    let last = LAST_FILE.get_ptr_mut(0)?;
    let last = unsafe { &mut *last };
    if last[0] == session && last[1] == tgid as u64 && last[2] == file {
        return None;
    }
    last[0] = session;
    last[1] = tgid as u64;
    last[2] = file;

    let rec = VMA_SCRATCH.get_ptr_mut(0)?;
    let rec = unsafe { &mut *rec };
    rec.tag = TAG_VMA;
    rec.tgid = tgid;
    rec.start = Typed::read::<u64>(vma, off!(vma_vm_start)).unwrap_or(0);
    rec.end = Typed::read::<u64>(vma, off!(vma_vm_end)).unwrap_or(0);
    rec.vm_flags = Typed::read::<u64>(vma, off!(vma_vm_flags)).unwrap_or(0);
    rec.pgoff = Typed::read::<u64>(vma, off!(vma_vm_pgoff)).unwrap_or(0);
    let f_op = file_facts::untyped(&raw mut rec.f_op, Typed::ptr(file, off!(file_f_op)));
    // A mapped file's ops table may belong to no open fd: report its members here too.
    file_facts::emit_ops_once(seq, f_op, &SEEN_MAPPED_OPS, &VMA_OPS_SCRATCH);
    // `fs_type` then `name`, 8-byte aligned (ckpt-common's layout test).
    kread::zero_words::<{ (FS_TYPE_LEN + NAME_LEN) / 8 }>((&raw mut rec.fs_type).cast());
    let facts = kread::inode_facts::<Typed>(
        file,
        &mut rec.fs_type,
        &mut rec.name,
        Some((&VMA_FS_TYPE, 0)),
    );
    kread::store_inode!(rec, facts);
    if let Some((_, visible)) = kread::mount_facts::<Typed>(file, task) {
        if visible {
            rec.flags |= flags::MOUNT_VISIBLE;
        }
    }
    let written = unsafe {
        bpf_seq_write(
            seq as *mut _,
            rec as *const VmaFacts as *const c_void,
            core::mem::size_of::<VmaFacts>() as u32,
        )
    };
    // On overflow the kernel runs us again for this VMA: report its ops table again then, and
    // forget the "same file as last time" shortcut.
    file_facts::settle_ops(written, &SEEN_MAPPED_OPS, &VMA_OPS_SCRATCH);
    if written != 0 {
        last[2] = 0;
    }
    Some(())
}
