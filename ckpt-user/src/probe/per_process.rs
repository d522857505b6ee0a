//! An iterator scoped to one process (`bpf_iter_link_info.task.pid`, Linux ≥ 6.1), which aya
//! does not expose. A `--pid` scan of a small tree then visits the tree's files, not every
//! file of the host: its program still filters by tgid, so the scope only saves time.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

use super::sys::bpf;

/// The prefix of `union bpf_attr` that `BPF_LINK_CREATE` reads for an iterator
/// (include/uapi/linux/bpf.h); the kernel zero-fills what a shorter attr leaves out.
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
}

/// `bpf_iter_link_info.task`: iterate the tasks of process `pid` only.
#[repr(C)]
struct TaskLinkInfo {
    tid: u32,
    pid: u32,
    pid_fd: u32,
}

/// `union bpf_attr` for `BPF_ITER_CREATE`.
#[repr(C)]
struct IterCreate {
    link_fd: u32,
    flags: u32,
}

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// A readable iterator running `prog` (an `iter/task_*` program) over process `pid`'s tasks.
/// Fails on a kernel that cannot scope an iterator to a process (before 6.1 the link info is
/// larger than it knows: E2BIG).
pub fn open(prog: BorrowedFd<'_>, pid: u32) -> std::io::Result<File> {
    let info = TaskLinkInfo {
        tid: 0,
        pid,
        pid_fd: 0,
    };
    let mut link = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_TRACE_ITER,
        iter_info: &info as *const TaskLinkInfo as u64,
        iter_info_len: std::mem::size_of::<TaskLinkInfo>() as u32,
        ..Default::default()
    };
    // SAFETY: a new fd that nothing else owns; the iterator holds the link, so it is closed
    // when this File is.
    let link = unsafe { File::from_raw_fd(bpf(BPF_LINK_CREATE, &mut link)?) };
    let mut iter = IterCreate {
        link_fd: link.as_raw_fd() as u32,
        flags: 0,
    };
    // SAFETY: as above.
    Ok(unsafe { File::from_raw_fd(bpf(BPF_ITER_CREATE, &mut iter)?) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The offsets of include/uapi/linux/bpf.h.
    #[test]
    fn layouts_are_the_kernels() {
        assert_eq!(
            (
                offset_of!(LinkCreate, attach_type),
                offset_of!(LinkCreate, iter_info),
                offset_of!(LinkCreate, iter_info_len),
            ),
            (8, 16, 24)
        );
        assert_eq!(
            (offset_of!(TaskLinkInfo, pid), size_of::<TaskLinkInfo>()),
            (4, 12)
        );
        assert_eq!(size_of::<IterCreate>(), 8);
    }
}
