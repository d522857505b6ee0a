//! `iter/task`: one [`ProcFacts`] per process of the host that can hold files, what a whole-host scan read from
//! `/proc/PID/status` and `/proc/PID/ns/*` for each (~15 µs of CPU per process, on the cores
//! the file walk needs). Values are as a reader in the initial namespaces sees them: global
//! pids, ids as the kernel keeps them.

use aya_ebpf::{helpers::generated::bpf_seq_write, macros::map, maps::PerCpuArray};
use ckpt_common::{ProcFacts, TAG_PROC, TAG_TABLE, TableRecord, proc_known};
use core::ffi::c_void;

use crate::kread::{self, Mem, Probe, Typed, off, read, read_ptr};

#[map]
static PROC_SCRATCH: PerCpuArray<ProcFacts> = PerCpuArray::with_max_entries(1, 0);
#[map]
static TABLE_SCRATCH: PerCpuArray<TableRecord> = PerCpuArray::with_max_entries(1, 0);

/// `struct bpf_iter__task` is BPF ABI: meta, task.
const CTX_META: usize = 0;
const CTX_TASK: usize = 8;

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn ckpt_task(ctx: *mut c_void) -> i32 {
    let _ = try_task(ctx);
    0
}

/// The global number of `struct pid` `pid` (`numbers[0].nr`), 0 for none.
#[inline(always)]
fn pid_nr(pid: u64) -> u32 {
    Probe::read::<u32>(pid, off!(pid_numbers) + off!(upid_nr)).unwrap_or(0)
}

fn try_task(ctx: *mut c_void) -> Option<()> {
    let base = ctx as *const u8;
    let meta = unsafe { core::ptr::read_volatile(base.add(CTX_META) as *const *const *mut c_void) };
    let task = unsafe { core::ptr::read_volatile(base.add(CTX_TASK) as *const u64) };
    if meta.is_null() || task == 0 {
        return None;
    }
    let seq = unsafe { *meta };
    let tgid = Typed::read::<u32>(task, off!(task_tgid))?;
    // /proc lists processes; a thread's facts are its leader's. Past the task's own members,
    // every read is a helper call: the verifier looks each typed pointer load up by name in
    // the kernel's BTF (`__safe_rcu` and friends), ~1 ms apiece at load on 6.18, far more
    // than the helper calls cost ~2,000 tasks.
    if Typed::read::<u32>(task, off!(task_pid))? != tgid
        || Probe::ptr(task, off!(task_mm)) == 0
        || !kread::wanted(task, tgid)
    {
        return None;
    }
    let rec = PROC_SCRATCH.get_ptr_mut(0)?;
    let rec = unsafe { &mut *rec };
    rec.tag = TAG_PROC;
    rec.pid = tgid;
    // fs/proc/array.c task_state(): the real parent's tgid; the tracer (`parent` while
    // `ptrace` is set) by its thread id.
    let parent = Probe::ptr(task, off!(task_real_parent));
    rec.ppid = Probe::read::<u32>(parent, off!(task_tgid)).unwrap_or(0);
    rec.tracer_pid = 0;
    if Probe::read::<u32>(task, off!(task_ptrace)).unwrap_or(0) != 0 {
        let tracer = Probe::ptr(task, off!(task_parent));
        rec.tracer_pid = Probe::read::<u32>(tracer, off!(task_pid)).unwrap_or(0);
    }
    let signal = Probe::ptr(task, off!(task_signal));
    let pids = off!(signal_pids);
    rec.pgid = pid_nr(Probe::ptr(signal, pids + 8 * off!(pidtype_pgid)));
    rec.sid = pid_nr(Probe::ptr(signal, pids + 8 * off!(pidtype_sid)));
    let cred = Probe::ptr(task, off!(task_real_cred));
    rec.uid = [
        Probe::read::<u32>(cred, off!(cred_uid)).unwrap_or(0),
        Probe::read::<u32>(cred, off!(cred_euid)).unwrap_or(0),
        Probe::read::<u32>(cred, off!(cred_suid)).unwrap_or(0),
    ];
    rec.gid = [
        Probe::read::<u32>(cred, off!(cred_gid)).unwrap_or(0),
        Probe::read::<u32>(cred, off!(cred_egid)).unwrap_or(0),
        Probe::read::<u32>(cred, off!(cred_sgid)).unwrap_or(0),
    ];
    rec.comm = read::<[u8; 16]>(task, off!(task_comm)).unwrap_or([0; 16]);

    rec.known = 0;
    rec.netns = 0;
    rec.ipcns = 0;
    rec.pidns = 0;
    // An exiting task has no nsproxy: /proc shows no namespace links then either.
    let nsproxy = Probe::ptr(task, off!(task_nsproxy));
    let net = Probe::ptr(nsproxy, off!(nsproxy_net_ns));
    if net != 0 {
        rec.netns = Probe::read::<u32>(net, off!(net_ns_inum)).unwrap_or(0);
        rec.known |= proc_known::NETNS;
    }
    let ipc = Probe::ptr(nsproxy, off!(nsproxy_ipc_ns));
    if ipc != 0 {
        rec.ipcns = Probe::read::<u32>(ipc, off!(ipc_ns_inum)).unwrap_or(0);
        rec.known |= proc_known::IPCNS;
    }
    // task_active_pid_ns(): the namespace of the pid's own level, `numbers[level].ns`.
    let thread_pid = Probe::ptr(task, off!(task_thread_pid));
    if thread_pid != 0 {
        let level = Probe::read::<u32>(thread_pid, off!(pid_level)).unwrap_or(0) as u64;
        let upid = thread_pid + off!(pid_numbers) as u64 + level * off!(upid_size) as u64;
        let ns = read_ptr(upid, off!(upid_ns));
        if let Some(inum) = read::<u32>(ns, off!(pidns_inum)) {
            rec.pidns = inum;
            rec.known |= proc_known::PIDNS;
        }
    }
    unsafe {
        bpf_seq_write(
            seq as *mut _,
            rec as *const ProcFacts as *const c_void,
            core::mem::size_of::<ProcFacts>() as u32,
        )
    };
    Some(())
}

/// The daemon's table walk: one [`TableRecord`] per process, whether any fd is open in its
/// table or none (the file walk would tell only tables with files).
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn ckpt_fd_tables(ctx: *mut c_void) -> i32 {
    let _ = try_fd_tables(ctx);
    0
}

fn try_fd_tables(ctx: *mut c_void) -> Option<()> {
    let base = ctx as *const u8;
    let meta = unsafe { core::ptr::read_volatile(base.add(CTX_META) as *const *const *mut c_void) };
    let task = unsafe { core::ptr::read_volatile(base.add(CTX_TASK) as *const u64) };
    if meta.is_null() || task == 0 {
        return None;
    }
    let seq = unsafe { *meta };
    let tgid = Typed::read::<u32>(task, off!(task_tgid))?;
    let pid = Typed::read::<u32>(task, off!(task_pid))?;
    // Kernel threads all use one table of no process's; an exiting task has none left.
    let files = Probe::ptr(task, off!(task_files));
    if files == 0 || Probe::ptr(task, off!(task_mm)) == 0 || tgid == off!(ignore_tgid) {
        return None;
    }
    // A process's table is its leader's (`kread::in_process_table`); a thread's only once
    // the leader, exited, has none.
    if pid != tgid {
        let leader = Probe::ptr(task, off!(task_group_leader));
        if Probe::ptr(leader, off!(task_files)) != 0 {
            return None;
        }
    }
    let rec = TABLE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's element, live while the program runs.
    unsafe {
        (*rec).tag = TAG_TABLE;
        (*rec).tgid = tgid;
        (*rec).files = files;
        bpf_seq_write(
            seq as *mut _,
            rec as *const TableRecord as *const c_void,
            core::mem::size_of::<TableRecord>() as u32,
        )
    };
    Some(())
}
