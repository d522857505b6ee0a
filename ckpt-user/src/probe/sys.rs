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

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` for the batch operations on maps.
#[repr(C)]
#[derive(Default)]
struct Batch {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every element of the hash map `map` (`u32` keys, `u64` values, at most `max_entries` of
/// them), copied out by the kernel a bucket run at a time (`BPF_MAP_LOOKUP_BATCH`, Linux ≥ 5.6).
/// aya 0.14 walks a map with two calls per element: ~2 ms for a host's 2,000 processes, on
/// the scan's path between the walk and the verdicts.
pub fn hash_elements(map: BorrowedFd<'_>, max_entries: u32) -> std::io::Result<Vec<(u32, u64)>> {
    // Room for every element: a call fails (ENOSPC) when one bucket's elements do not fit.
    let room = max_entries.max(1);
    let mut keys = vec![0u32; room as usize];
    let mut values = vec![0u64; room as usize];
    let mut elements = Vec::new();
    // Where a call stopped, for the next to start from (a bucket index); none at first.
    let (mut from, mut stopped) = (None::<u64>, 0u64);
    loop {
        let mut attr = Batch {
            in_batch: from.as_mut().map_or(0, |b| b as *mut u64 as u64),
            out_batch: &mut stopped as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: room,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        // ENOENT: no bucket is left; the count still says what this call copied.
        let last = match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(_) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        let copied = attr.count.min(room) as usize;
        elements.extend(
            keys[..copied]
                .iter()
                .copied()
                .zip(values[..copied].iter().copied()),
        );
        if last {
            return Ok(elements);
        }
        from = Some(stopped);
    }
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

    /// `union bpf_attr` for `BPF_MAP_CREATE`, up to the map's flags.
    #[repr(C)]
    #[derive(Default)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }

    /// `union bpf_attr` for `BPF_MAP_UPDATE_ELEM`.
    #[repr(C)]
    #[derive(Default)]
    struct MapElem {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }

    /// Every element comes out once, with its value, from a full map and from one never
    /// filled, preallocated or not (as `OK_COUNTS` is made); an fd that is no map is an error.
    #[test]
    fn reads_every_element_of_a_hash_map_in_batches() {
        for (max_entries, filled, map_flags) in [(3000, 2500, 1), (64, 64, 0), (16, 0, 1)] {
            let mut create = MapCreate {
                map_type: 1,
                key_size: 4,
                value_size: 8,
                max_entries,
                map_flags,
            };
            let fd = bpf(0, &mut create).expect("creating a hash map (run the tests as root)");
            // SAFETY: a new fd nothing else owns.
            let map = unsafe { OwnedFd::from_raw_fd(fd) };
            let want: Vec<(u32, u64)> = (0..filled)
                .map(|k| (k * 7 + 1, u64::from(k) << 33))
                .collect();
            for (key, value) in &want {
                let mut update = MapElem {
                    map_fd: fd as u32,
                    key: key as *const u32 as u64,
                    value: value as *const u64 as u64,
                    ..Default::default()
                };
                bpf(2, &mut update).unwrap();
            }
            let mut got = hash_elements(map.as_fd(), max_entries).unwrap();
            got.sort_unstable();
            assert_eq!(got, want, "{max_entries} entries, {filled} filled");
        }
        let not_a_map = std::fs::File::open("/dev/null").unwrap();
        assert!(hash_elements(not_a_map.as_fd(), 16).is_err());
    }

    /// The offsets of include/uapi/linux/bpf.h.
    #[test]
    fn layouts_are_the_kernels() {
        assert_eq!(
            (offset_of!(GetInfo, info_len), offset_of!(GetInfo, info)),
            (4, 8)
        );
        assert_eq!(size_of::<GetInfo>(), 16);
        assert_eq!(
            (
                offset_of!(Batch, keys),
                offset_of!(Batch, count),
                offset_of!(Batch, map_fd),
                offset_of!(Batch, elem_flags)
            ),
            (16, 32, 36, 40)
        );
        assert_eq!(size_of::<Batch>(), 56);
    }
}
