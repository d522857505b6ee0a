//! A process's CPU time and memory, as `/proc` reports them.

use std::time::Duration;

use anyhow::Context;

/// User + system CPU time of `pid` so far (`/proc/PID/stat` utime + stime).
pub fn cpu_time(pid: libc::pid_t) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("{path}: no utime/stime"))?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second))
}

/// utime + stime in clock ticks: fields 14 and 15, counted after the `(comm)` field, which may
/// itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/PID/status` size such as `VmRSS` or `VmHWM`, in bytes.
pub fn status_bytes(pid: libc::pid_t, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status_kb(&status, key)
        .map(|kb| kb * 1024)
        .with_context(|| format!("{path}: no {key}"))
}

fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Resident memory by what backs it, from `/proc/PID/smaps`, in bytes.
#[derive(Clone, Copy, Default)]
pub struct RssParts {
    /// Heap, mmapped allocations, stacks.
    pub anonymous: u64,
    /// BPF maps mapped into the process (the event ring buffer).
    pub bpf: u64,
    /// The binary and its libraries.
    pub files: u64,
}

pub fn rss_parts(pid: libc::pid_t) -> anyhow::Result<RssParts> {
    let path = format!("/proc/{pid}/smaps");
    let smaps = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parts_of(&smaps))
}

fn parts_of(smaps: &str) -> RssParts {
    let mut parts = RssParts::default();
    let mut name = "";
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        // A mapping's header: `start-end perms offset dev inode [name]`.
        if first.contains('-') && !first.ends_with(':') {
            name = fields.nth(4).unwrap_or_default();
            continue;
        }
        if first != "Rss:" {
            continue;
        }
        let bytes = fields
            .next()
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        match name {
            n if n.starts_with("anon_inode:bpf") => parts.bpf += bytes,
            n if n.starts_with('/') => parts.files += bytes,
            _ => parts.anonymous += bytes,
        }
    }
    parts
}

/// Bytes as megabytes (MiB, as `ps` and `top` count them).
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_comm() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 1 1";
        assert_eq!(cpu_ticks(stat), Some(12));
    }

    #[test]
    fn smaps_rss_is_split_by_what_backs_it() {
        let smaps = "55d0-55e0 r-xp 00000000 fe:01 12 /usr/bin/ckpt-watch\nRss:  8 kB\n\
                     55f0-5600 rw-p 00000000 00:00 0  [heap]\nRss:  100 kB\n\
                     7f00-7f10 rw-p 00000000 00:00 0\nRss:  20 kB\n\
                     7f20-7f30 r--s 00000000 00:0e 99 anon_inode:bpf-map\nRss:  4 kB\n";
        let parts = parts_of(smaps);
        assert_eq!(
            (parts.anonymous, parts.bpf, parts.files),
            (120 * 1024, 4 * 1024, 8 * 1024)
        );
    }

    #[test]
    fn status_sizes_are_read_in_kb() {
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(1024));
        assert_eq!(status_kb(status, "VmHWM"), Some(2048));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }
}
