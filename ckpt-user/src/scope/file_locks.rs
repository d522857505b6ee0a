//! Locks the kernel side stopped walking (`FileFact::locks_unwalked`: the inode has more locks
//! than it walks), settled the way CRIU learns a task's locks on an fd: the `lock:` lines of
//! `/proc/PID/fdinfo/FD`, which list exactly the locks that open file holds for that task
//! (fs/locks.c `show_fd_locks`: a flock, OFD lock or lease owned by the file, a POSIX lock
//! owned by the task's files table). Few files have more locks than the walk; the rest cost nothing.

use crate::facts::FileFact;
use crate::scope::map_files::fdinfo_mnt_id;

/// An fd whose lock verdict is the kernel side's guess.
pub fn wants_a_look(f: &FileFact) -> bool {
    f.fd.is_some() && f.locks_unwalked
}

/// Settles the locks of every fd [`wants_a_look`] picks among `which` (indices into `files`).
/// An fd whose fdinfo cannot be read (the process exited) or now describes another file (the
/// fd was closed and reused) keeps the guess, "held": never `ok` on a guess.
pub fn see_locks_as_criu(files: &mut [FileFact], which: &[usize]) {
    super::each_fdinfo(files, which, wants_a_look, |f, info| {
        if let Some(held) = own_locks(info, f.mnt_id, f.ino) {
            f.locked = Some(held);
            f.locks_unwalked = false;
        }
    });
}

/// Whether fdinfo `text` lists a lock of the kinds the kernel side walks (flock, POSIX, OFD,
/// lease: CRIU stops at each without --file-locks); `None` when it is not the file on mount
/// `mnt_id` with inode `ino`. The `ino:`
/// line is recent (Linux 5.14); without it the mount alone must match.
fn own_locks(text: &str, mnt_id: Option<u32>, ino: u64) -> Option<bool> {
    if mnt_id.is_none() || fdinfo_mnt_id(text) != mnt_id {
        return None;
    }
    let shown_ino = text.lines().find_map(|l| l.strip_prefix("ino:"));
    if let Some(shown) = shown_ino
        && shown.trim().parse::<u64>().ok() != Some(ino)
    {
        return None;
    }
    // `lock:\t1: FLOCK  ADVISORY  WRITE 1234 fe:00:10095030 0 EOF`
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("lock:"))
            .any(|l| {
                matches!(
                    l.split_whitespace().nth(1),
                    Some("FLOCK" | "POSIX" | "OFDLCK" | "LEASE")
                )
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "pos:\t0\nflags:\t0100002\nmnt_id:\t27\nino:\t10095030\n";

    #[test]
    fn the_fds_own_locks_of_the_walked_kinds_count() {
        assert_eq!(own_locks(HEAD, Some(27), 10095030), Some(false));
        for (line, held) in [
            (
                "lock:\t1: FLOCK  ADVISORY  READ 21940 fe:00:10095030 0 EOF\n",
                true,
            ),
            (
                "lock:\t1: POSIX  ADVISORY  WRITE 77 fe:00:10095030 0 9\n",
                true,
            ),
            (
                "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:10095030 0 EOF\n",
                true,
            ),
            (
                "lock:\t1: LEASE  ACTIVE    READ 77 fe:00:10095030 0 EOF\n",
                true,
            ),
            (
                "lock:\t1: DELEG  ACTIVE    READ 77 fe:00:10095030 0 EOF\n",
                false,
            ),
        ] {
            let text = format!("{HEAD}{line}");
            assert_eq!(own_locks(&text, Some(27), 10095030), Some(held), "{line}");
        }
    }

    #[test]
    fn another_file_behind_the_fd_settles_nothing() {
        let locked = format!("{HEAD}lock:\t1: FLOCK  ADVISORY  READ 1 fe:00:10095030 0 EOF\n");
        assert_eq!(
            own_locks(&locked, Some(28), 10095030),
            None,
            "another mount"
        );
        assert_eq!(own_locks(HEAD, Some(27), 1), None, "another inode");
        assert_eq!(own_locks(HEAD, None, 10095030), None, "a mount never read");
        assert_eq!(own_locks("pos:\t0\n", Some(27), 10095030), None);
        let before_5_14 = "pos:\t0\nflags:\t02\nmnt_id:\t27\n";
        assert_eq!(own_locks(before_5_14, Some(27), 10095030), Some(false));
    }
}
