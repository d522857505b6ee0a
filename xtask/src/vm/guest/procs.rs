//! A whole-host scan in the guest: the processes the kernel tells a scan (`iter/task`) must be
//! what /proc tells of them, on every kernel of the matrix. /proc is read here by hand, apart
//! from ckpt-watch's own reader, so that neither can hide a mistake of the other.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::super::records::Record;

const SNAPSHOT: &str = "/tmp/host-processes.json";
const CASE: &str = "host processes";

/// The comparison's outcome: an error record when the kernel's account is refused or wrong.
pub fn check() -> Option<Record> {
    match compare().and_then(|compared| Ok((compared, counted_alike()?))) {
        Ok((compared, fds)) => {
            eprintln!(
                "vm-guest: host processes: {compared} told by the kernel as /proc tells them; {fds} fds judged alike counted or listed"
            );
            None
        }
        Err(e) => Some(Record::Error {
            case: CASE.into(),
            what: format!("{e:#}"),
        }),
    }
}

/// Processes that differ from the runner where a mistake would show: a session of its own, a
/// network namespace of its own, a tracer.
struct Subjects(Vec<Child>);

impl Subjects {
    fn start() -> anyhow::Result<Self> {
        let mut subjects = Self(Vec::new());
        for args in [
            &["setsid", "sleep", "60"][..],
            &["unshare", "-n", "sleep", "60"],
            &["sleep", "60"],
        ] {
            let child = Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", args.join(" ")))?;
            subjects.0.push(child);
        }
        let traced = subjects.0[2].id() as libc::pid_t;
        // SAFETY: PTRACE_SEIZE neither stops the child nor touches our memory.
        if unsafe { libc::ptrace(libc::PTRACE_SEIZE, traced, 0, 0) } != 0 {
            bail!("PTRACE_SEIZE {traced}: {}", std::io::Error::last_os_error());
        }
        // Past exec, with the names and namespaces they keep.
        std::thread::sleep(Duration::from_millis(300));
        Ok(subjects)
    }
}

impl Drop for Subjects {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn compare() -> anyhow::Result<usize> {
    let subjects = Subjects::start()?;
    let out = Command::new("/bin/ckpt-watch")
        .args([
            "--json",
            "--profile",
            "criu-3.17",
            "--save-snapshot",
            SNAPSHOT,
        ])
        .output()
        .context("running ckpt-watch")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) {
        bail!("the host scan failed: {stderr}");
    }
    if stderr.contains("read from /proc instead") {
        bail!("the kernel refused the process iterator: {stderr}");
    }
    let snapshot: Value = serde_json::from_slice(&std::fs::read(SNAPSHOT)?)?;
    let procs = snapshot["procs"]
        .as_object()
        .context("a snapshot without processes")?;
    for child in &subjects.0 {
        if !procs.contains_key(&child.id().to_string()) {
            bail!("subject {} is not among the scan's processes", child.id());
        }
    }
    let mut compared = 0;
    for (pid, told) in procs {
        // Gone since the scan: nothing left to compare.
        let Some(mut seen) = from_proc(pid) else {
            continue;
        };
        // /proc escapes and trims a name; the kernel's is the name itself.
        let name = told["comm"].as_str().unwrap_or_default();
        if name.trim() != name || !name.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            seen["comm"] = told["comm"].clone();
        }
        for field in [
            "ppid",
            "sid",
            "pgid",
            "tracer_pid",
            "uid",
            "gid",
            "comm",
            "netns",
            "ipcns",
            "pidns",
        ] {
            let told_value = told.get(field).unwrap_or(&Value::Null);
            if *told_value != seen[field] {
                bail!(
                    "pid {pid}: {field} is {told_value} in the scan, {} in /proc",
                    seen[field]
                );
            }
        }
        compared += 1;
    }
    let traced = &procs[&subjects.0[2].id().to_string()];
    if traced["tracer_pid"] == 0 || procs[&subjects.0[1].id().to_string()]["netns"].is_null() {
        bail!(
            "the subjects' tracer or namespace are missing: {}",
            json!(procs)
        );
    }
    Ok(compared)
}

/// A host scan that lists only what is not ok has its kernel count the fds of ok kinds; one
/// that lists every fd (`-v`) has them all reported. On this quiet guest both judge the same
/// fds (a few may open or close between the two).
fn counted_alike() -> anyhow::Result<u64> {
    let scan = |verbose: bool| -> anyhow::Result<u64> {
        let mut cmd = Command::new("/bin/ckpt-watch");
        cmd.args(["--processes", "--profile", "criu-3.17"]);
        if verbose {
            cmd.arg("-v");
        }
        let out = cmd.output().context("running ckpt-watch")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() == Some(2) {
            bail!(
                "the host scan (-v: {verbose}) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("summary"))
            .context("no summary line")?;
        let fds = summary
            .rsplit_once('(')
            .and_then(|(_, tail)| tail.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no fd count in {summary:?}"))?;
        Ok(fds)
    };
    let (counted, listed) = (scan(false)?, scan(true)?);
    if counted.abs_diff(listed) > 16 || listed == 0 {
        bail!("a counting host scan judged {counted} fds, a listing one {listed}");
    }
    Ok(counted)
}

/// What `/proc/PID/status` and `/proc/PID/ns/*` say of `pid`, with the snapshot's field names.
fn from_proc(pid: &str) -> Option<Value> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut seen = json!({ "tracer_pid": 0 });
    let number = |v: &str| v.split_whitespace().next()?.parse::<u64>().ok();
    let ids = |v: &str| -> Vec<u64> {
        v.split_whitespace()
            .take(3)
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => seen["comm"] = json!(value),
            "PPid" => seen["ppid"] = json!(number(value)?),
            "TracerPid" => seen["tracer_pid"] = json!(number(value)?),
            "NSsid" => seen["sid"] = json!(number(value)?),
            "NSpgid" => seen["pgid"] = json!(number(value)?),
            "Uid" => seen["uid"] = json!(ids(value)),
            "Gid" => seen["gid"] = json!(ids(value)),
            _ => {}
        }
    }
    for ns in ["net", "ipc", "pid"] {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
        let inode = link.and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            l.split_once('[')?.1.strip_suffix(']')?.parse::<u64>().ok()
        });
        seen[format!("{ns}ns")] = json!(inode);
    }
    Some(seen)
}
