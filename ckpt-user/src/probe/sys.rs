//! The `bpf(2)` calls aya 0.14 does not make for us.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// `bpf(cmd, attr)`: `attr` is the prefix of `union bpf_attr` that `cmd` reads; the kernel
/// zero-fills what a shorter attr leaves out.
pub fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<RawFd> {
    // SAFETY: `attr` is a live `union bpf_attr` prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd as RawFd)
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct GetInfo {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// How many times the kernel did not run `prog` because it was already running on that CPU
/// (`bpf_prog_info.recursion_misses`, Linux ≥ 5.12; 0 before). aya 0.14's `ProgramInfo`
/// does not expose it.
pub fn recursion_misses(prog: BorrowedFd<'_>) -> std::io::Result<u64> {
    // SAFETY: plain integers; all-zero is what the kernel expects of fields it does not know.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = GetInfo {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.recursion_misses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    /// `union bpf_attr` for `BPF_PROG_LOAD`, up to the log buffer.
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
    }

    /// Root loads the smallest program there is (`r0 = 0; exit` as a socket filter); its
    /// info is read, and nothing has skipped it. An fd that is no program is an error.
    #[test]
    fn reads_the_recursion_misses_of_a_loaded_program() {
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        let mut load = ProgLoad {
            prog_type: 1,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        let fd = bpf(5, &mut load).expect("loading a socket filter (run the tests as root)");
        // SAFETY: a new fd nothing else owns.
        let prog = unsafe { OwnedFd::from_raw_fd(fd) };
        assert_eq!(recursion_misses(prog.as_fd()).unwrap(), 0);
        let not_a_program = std::fs::File::open("/dev/null").unwrap();
        assert!(recursion_misses(not_a_program.as_fd()).is_err());
    }

    /// The offsets of include/uapi/linux/bpf.h.
    #[test]
    fn layouts_are_the_kernels() {
        assert_eq!(
            (offset_of!(GetInfo, info_len), offset_of!(GetInfo, info)),
            (4, 8)
        );
        assert_eq!(size_of::<GetInfo>(), 16);
    }
}
