//! The resolver suite: every fd of the case named by the live scan (the kernel exports its
//! ops tables as data symbols: CONFIG_KALLSYMS_ALL) and by the same snapshot replayed with
//! the data symbols taken out, which leaves only the catalogue's member-function matching.
//! The two names must be the same table; the suite also pins the names of a few cases.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use super::super::records::Record;

/// Cases whose fd ≥ 3 must carry one of these names (the kernel source's table names; 7.x
/// split anonymous pipes off into `pipeanon_fops`).
const PINNED: &[(&str, &[&str])] = &[
    ("pipe_pair", &["pipefifo_fops", "pipeanon_fops"]),
    ("eventfd", &["eventfd_fops"]),
    ("unix_stream_pair", &["socket_file_ops"]),
    ("io_uring", &["io_uring_fops"]),
    ("perf_event", &["perf_fops"]),
    ("reg_ext4", &["ext4_file_operations"]),
    ("reg_tmpfs", &["shmem_file_operations"]),
    ("epoll_empty", &["eventpoll_fops"]),
    ("signalfd", &["signalfd_fops"]),
    ("timerfd_armed", &["timerfd_fops"]),
];

const LIVE_SNAPSHOT: &str = "/tmp/snapshot.json";
const MEMBERS_SNAPSHOT: &str = "/tmp/snapshot-members.json";

/// Scans `pid` live and replayed without data symbols; one record per fd, and the live
/// report (the `criu-3.17` verdict the oracle suite compares).
pub fn check(case: &str, pid: u32) -> anyhow::Result<(Value, Vec<Record>)> {
    let pid_arg = pid.to_string();
    let live = ckpt_watch(&["--pid", &pid_arg, "--save-snapshot", LIVE_SNAPSHOT])?;
    let data_symbols = strip_data_symbols(LIVE_SNAPSHOT, MEMBERS_SNAPSHOT)?;
    let members = ckpt_watch(&["--pid", &pid_arg, "--replay", MEMBERS_SNAPSHOT])?;
    let expected = PINNED
        .iter()
        .find(|(c, _)| *c == case)
        .map(|(_, names)| names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    let mut records = Vec::new();
    for file in files(&live) {
        let fd = file["fd"].as_u64().unwrap_or_default() as u32;
        let live_name = file["fops"].as_str().unwrap_or_default().to_string();
        let twin = files(&members).find(|m| m["fd"] == file["fd"]);
        records.push(Record::Resolve {
            case: case.into(),
            fd,
            what: file["what"].as_str().unwrap_or_default().into(),
            members: twin
                .map_or("(missing)", |m| m["fops"].as_str().unwrap_or_default())
                .into(),
            by_data_symbol: data_symbols.contains(&live_name),
            expected: expected.clone().filter(|_| fd >= 3),
            live: live_name,
        });
    }
    Ok((live, records))
}

/// `ckpt-watch ARGS --json -v --profile criu-3.17`, its JSON report.
pub fn ckpt_watch(args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new("/bin/ckpt-watch")
        .args(args)
        .args(["--json", "-v", "--profile", "criu-3.17"])
        .output()
        .context("running ckpt-watch")?;
    // Exit codes 0, 1, 3 and 4 are verdicts; 2 is an error, with one line on stderr.
    if out.status.code() == Some(2) || out.stdout.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.contains("DEBUG")).unwrap_or("");
        bail!(
            "ckpt-watch {} failed ({}): {last}",
            args.join(" "),
            out.status
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing ckpt-watch's JSON")
}

/// The report's fds.
fn files(report: &Value) -> impl Iterator<Item = &Value> {
    report["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["fd"].is_u64())
}

/// Copies the snapshot without its data symbols; returns the names it removed.
fn strip_data_symbols(from: &str, to: &str) -> anyhow::Result<Vec<String>> {
    let mut snapshot: Value = serde_json::from_slice(&std::fs::read(from)?)?;
    let symbols = snapshot["symbols"]
        .as_array_mut()
        .context("snapshot without symbols")?;
    let is_data = |entry: &Value| entry[1]["kind"] == "data";
    let removed = symbols
        .iter()
        .filter(|e| is_data(e))
        .filter_map(|e| e[1]["name"].as_str().map(String::from))
        .collect();
    symbols.retain(|e| !is_data(e));
    std::fs::write(to, serde_json::to_vec(&snapshot)?)?;
    Ok(removed)
}
