//! Mappings as CRIU sees them. CRIU does not follow `vma->vm_file`: it opens
//! `/proc/PID/map_files/START-END` and looks the opened file's mount (`mnt_id` in fdinfo) up in
//! the task's mountinfo (criu/proc_parse.c `vma_get_mapfile`, then the mount lookup of
//! files-reg.c). On overlayfs the two differ: since Linux 6.8 a mapped overlay file's
//! `vm_file` is a *backing file* on the layer's private mount, which no mount namespace holds,
//! while `map_files` resolves to the overlay file on the container's root mount. So a mapping
//! the kernel side found on a hidden mount is looked at again here, the way CRIU will.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::facts::{FileFact, Text};

/// Mount ids of one mountinfo text, with each mount's filesystem type.
pub fn mount_types(mountinfo: &str) -> HashMap<u32, String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let id = left.split(' ').next()?.parse().ok()?;
            let fs = right.split(' ').next()?;
            Some((id, fs.to_string()))
        })
        .collect()
}

/// The `mnt_id:` line of an fdinfo text.
pub fn fdinfo_mnt_id(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The mount CRIU finds for the mapping at `start-end` of `pid`: the `mnt_id` of the file that
/// `/proc/PID/map_files` opens. `O_PATH`, as CRIU opens it: no read access is needed.
fn map_files_mount(pid: u32, start: u64, end: u64) -> Option<u32> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/map_files/{start:x}-{end:x}"))
        .ok()?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    fdinfo_mnt_id(&info)
}

/// A mapping reported on a mount hidden from its process.
pub fn wants_a_look(f: &FileFact) -> bool {
    f.mapping.is_some() && f.mount_visible == Some(false)
}

/// Re-judges the mount of every mapping reported on a hidden mount through `map_files`. A
/// mapping that cannot be looked at (the process exited, the range changed) keeps the kernel
/// side's facts: never `ok` on a guess.
/// `which`: indices into `files`, a superset of the mappings [`wants_a_look`] picks.
pub fn see_mappings_as_criu(files: &mut [FileFact], which: &[usize]) {
    let mut mounts: HashMap<u32, Option<HashMap<u32, String>>> = HashMap::new();
    for &i in which {
        let f = &mut files[i];
        let Some(m) = f.mapping.as_ref().filter(|_| wants_a_look(f)) else {
            continue;
        };
        let Some(id) = map_files_mount(f.pid, m.start, m.end) else {
            continue;
        };
        let table = mounts.entry(f.pid).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{}/mountinfo", f.pid))
                .ok()
                .map(|t| mount_types(&t))
        });
        if let Some(fs) = table.as_ref().and_then(|t| t.get(&id)) {
            f.mount_visible = Some(true);
            f.mnt_id = Some(id);
            f.fs_type = Text::interned(fs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_ids_and_types() {
        let text = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
23 22 0:5 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k
24 22 8:1 /data /mnt/my\\040dir rw - ext4 /dev/sda1 rw";
        let t = mount_types(text);
        assert_eq!(t.get(&22).map(String::as_str), Some("overlay"));
        assert_eq!(t.get(&24).map(String::as_str), Some("ext4"));
        assert_eq!(t.len(), 3);
        assert!(mount_types("garbage\n\n1 2 3").is_empty());
    }

    #[test]
    fn fdinfo_mount_id() {
        let info = "pos:\t0\nflags:\t012100000\nmnt_id:\t417\nino:\t1234\n";
        assert_eq!(fdinfo_mnt_id(info), Some(417));
        assert_eq!(fdinfo_mnt_id("pos:\t0\n"), None);
    }

    /// This process's own executable: `map_files` gives the mount /proc/self/mountinfo lists.
    #[test]
    fn own_mapping_resolves_to_a_listed_mount() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let line = maps
            .lines()
            .find(|l| l.ends_with(exe.to_str().unwrap()))
            .expect("the executable is mapped");
        let (start, end) = line.split(' ').next().unwrap().split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let Some(id) = map_files_mount(std::process::id(), start, end) else {
            // Opening map_files needs CAP_SYS_ADMIN; the integration tests run as root.
            assert_ne!(unsafe { libc::geteuid() }, 0, "root can open map_files");
            return;
        };
        let table = mount_types(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        assert!(table.contains_key(&id), "mnt_id {id} not in mountinfo");
    }
}
