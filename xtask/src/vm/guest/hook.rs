//! `ckpt-watch criu-hook` inside Debian's CRIU 3.17: a dump of a subject run with the hook as
//! CRIU's action script must stop at pre-dump, before CRIU seizes a task, exactly when
//! ckpt-watch judges the dump `blocks` or `needs`, and otherwise go on as it would without it.

use std::process::Command;

use anyhow::Context;

use super::super::records::Record;
use super::oracle::first_error;

/// The fdzoo cases the hook is tried on: one CRIU cannot dump, one it can.
pub const CASES: [&str; 2] = ["io_uring", "none"];

/// CRIU runs scripts without arguments: the hook is ckpt-watch under the name `criu-hook`.
const HOOK: &str = "/run/ckpt-watch/criu-hook";

/// One dump of `pid` with the hook, the subject left running.
pub fn check(case: &str, pid: u32) -> anyhow::Result<Record> {
    if std::fs::symlink_metadata(HOOK).is_err() {
        std::fs::create_dir_all("/run/ckpt-watch")?;
        std::os::unix::fs::symlink("/bin/ckpt-watch", HOOK).context("linking the hook")?;
    }
    let dir = "/tmp/criu-hook-images";
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let status = Command::new("/usr/sbin/criu")
        .args(["dump", "-t", &pid.to_string(), "--leave-running", "-D", dir])
        .args(["-o", "dump.log", "-v4", "--action-script", HOOK])
        .status()
        .context("running criu")?;
    let log = String::from_utf8_lossy(&std::fs::read(format!("{dir}/dump.log"))?).into_owned();
    let _ = std::fs::remove_dir_all(dir);
    let lines: Vec<&str> = log.lines().collect();
    let verdict_at = lines
        .iter()
        .position(|l| l.starts_with("ckpt-watch: the dump of tree"));
    let stopped_at = lines
        .iter()
        .position(|l| l.starts_with("ckpt-watch: stopping the dump"));
    // collect_pstree logs "Seized task" (and "Seizing") for every task it stops.
    let seized_at = lines.iter().position(|l| l.contains("Seiz"));
    let verdict = verdict_at.map_or("the hook printed no verdict".into(), |i| {
        lines[i].to_string()
    });
    let judged_first = matches!((verdict_at, seized_at), (Some(v), Some(s)) if v < s)
        || (verdict_at.is_some() && seized_at.is_none());
    let stops = verdict.contains(": blocks") || verdict.contains(": needs");
    let agree = judged_first
        && stops == stopped_at.is_some()
        && stops != status.success()
        && (!stops || seized_at.is_none());
    Ok(Record::Hook {
        case: case.into(),
        dumped: status.success(),
        verdict,
        error: if status.success() {
            String::new()
        } else {
            first_error(&log)
        },
        seized_before_verdict: !judged_first,
        agree,
    })
}
