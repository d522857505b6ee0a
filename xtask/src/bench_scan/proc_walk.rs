//! The `/proc` way to the facts ckpt-watch gathers in the kernel, as a user would get them today:
//! for every fd of every process, readlink `/proc/P/fd/N` (what it is), stat it (type, device,
//! inode) and read `/proc/P/fdinfo/N` (position, flags, mount). One line per fd on stdout.
//!
//! It runs as a hidden mode of xtask, in a child of the bench, so that its time and peak RSS
//! are measured exactly as lsof's and ckpt-watch's are.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;

/// Every pid in /proc, in the order the kernel lists them.
fn pids() -> io::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// Open fds on the host right now (the bench's denominator for fds/s).
pub fn count_host_fds() -> io::Result<usize> {
    Ok(pids()?
        .into_iter()
        // A process that exits meanwhile has no fds left to count.
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(|fds| fds.count())
        .sum())
}

pub fn run() -> anyhow::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    let mut fdinfo = String::new();
    for pid in pids()? {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue; // exited since the listing
        };
        for entry in fds.flatten() {
            let fd = entry.file_name();
            let fd = fd.to_string_lossy();
            let path = entry.path();
            // An fd closed (or a process gone) since the listing is skipped, as lsof does.
            let (Ok(target), Ok(meta)) = (fs::read_link(&path), fs::metadata(&path)) else {
                continue;
            };
            fdinfo.clear();
            let read = File::open(format!("/proc/{pid}/fdinfo/{fd}"))
                .and_then(|mut f| f.read_to_string(&mut fdinfo));
            if read.is_err() {
                continue;
            }
            let field = |name: &str| {
                fdinfo
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map_or("-", str::trim)
            };
            writeln!(
                out,
                "{pid} {fd} {:o} {}:{} {} pos={} flags={} mnt_id={} {}",
                meta.mode(),
                libc::major(meta.dev()),
                libc::minor(meta.dev()),
                meta.ino(),
                field("pos:"),
                field("flags:"),
                field("mnt_id:"),
                target.display(),
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
