//! Replays a real scan through the binary, with no kernel access: `--replay` judges the facts
//! saved by `ckpt-watch --pid N --save-snapshot` (resolve → classify → report).
//!
//! `fixtures/zoo-snapshot.json` merges ten such snapshots, one per fdzoo subject (io_uring,
//! userfaultfd, tcp_est_client, tcp_listen_inflight, reg_deleted_big, unix_stream_ext,
//! ext_pty_slave, eventfd, pipe_pair, noshell), taken on Linux 6.18 while they ran; `procs` keeps
//! only those ten subjects (a live `--pid` scan saves every process on the host). The subjects' stdout/stderr were files, stdin /dev/null. Pids differ
//! on every run, so each test finds its subject by what it holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zoo-snapshot.json")
}

fn snapshot() -> Value {
    let text = std::fs::read_to_string(fixture()).expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The open files (not mappings) of the snapshot.
fn fds(snap: &Value) -> impl Iterator<Item = &Value> {
    snap["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| !f["fd"].is_null())
}

/// The one fd 3 matching `pred`, and its pid.
fn subject(snap: &Value, what: &str, pred: impl Fn(&Value) -> bool) -> (u64, Value) {
    let found: Vec<&Value> = fds(snap).filter(|f| f["fd"] == 3 && pred(f)).collect();
    assert_eq!(found.len(), 1, "exactly one subject holding {what}");
    (found[0]["pid"].as_u64().unwrap(), found[0].clone())
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs the binary on the fixture with the `criu-4` profile (never the one for the host's CRIU).
fn replay(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt-watch"))
        .arg("--replay")
        .arg(fixture())
        .args(["--profile", "criu-4"])
        .args(args)
        .env_remove("CKPT_WATCH_LOG")
        .output()
        .expect("run ckpt-watch");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn replay_pid(pid: u64, extra: &[&str]) -> Run {
    let pid = pid.to_string();
    let mut args = vec!["--pid", pid.as_str(), "--json"];
    args.extend_from_slice(extra);
    let run = replay(&args);
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    run
}

/// The report of fd 3 in a process report.
fn fd3(report: &Value) -> &Value {
    report["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["fd"] == 3)
        .expect("fd 3 reported")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

#[track_caller]
fn assert_file(f: &Value, verdict: &str, kind: &str, fops: &str, rule: &str, options: &[&str]) {
    assert_eq!(
        (
            f["verdict"].as_str(),
            f["kind"].as_str(),
            f["fops"].as_str(),
            f["rule"].as_str()
        ),
        (Some(verdict), Some(kind), Some(fops), Some(rule)),
        "{f}"
    );
    assert_eq!(strings(&f["options"]), options, "{f}");
}

#[test]
fn io_uring_blocks_with_exit_1() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "io_uring", |f| f["name"] == "[io_uring]");
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 1);
    let r = run.json();
    assert_eq!(
        (r["pid"].as_u64(), r["verdict"].as_str()),
        (Some(pid), Some("blocks"))
    );
    assert_file(
        fd3(&r),
        "blocks",
        "io_uring",
        "io_uring_fops",
        "io-uring",
        &[],
    );
    assert_eq!(fd3(&r)["what"], "anon_inode:[io_uring]");
    assert!(strings(&r["options"]).is_empty());
}

#[test]
fn userfaultfd_blocks_with_exit_1() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "userfaultfd", |f| f["name"] == "[userfaultfd]");
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 1);
    let f = fd3(&run.json()).clone();
    assert_file(
        &f,
        "blocks",
        "[userfaultfd]",
        "userfaultfd_fops",
        "anon-unsupported",
        &[],
    );
    assert_eq!(
        f["reason"],
        "CRIU has no dumper for anon inode [userfaultfd] (userfaultfd_fops)"
    );
}

#[test]
fn established_tcp_needs_tcp_established_with_exit_3() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "an established TCP socket", |f| {
        f["socket"]["family"] == 2 && f["socket"]["state"] == 1
    });
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 3);
    let r = run.json();
    assert_eq!(r["verdict"], "needs");
    assert_eq!(strings(&r["options"]), ["--tcp-established"]);
    assert_file(
        fd3(&r),
        "needs",
        "tcp",
        "socket_file_ops",
        "tcp-connected",
        &["--tcp-established", "--tcp-close"],
    );
}

#[test]
fn given_options_turn_needs_into_ok() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "an established TCP socket", |f| {
        f["socket"]["family"] == 2 && f["socket"]["state"] == 1
    });
    for option in ["--tcp-established", "--tcp-close"] {
        let run = replay_pid(pid, &["--with", option]);
        assert_eq!(run.code, 0, "{option}: {}", run.stdout);
        assert_eq!(fd3(&run.json())["verdict"], "ok");
    }
}

#[test]
fn listener_with_a_pending_connection_needs_skip_in_flight() {
    let snap = snapshot();
    let (pid, f) = subject(&snap, "a TCP listener", |f| {
        f["socket"]["family"] == 2 && f["socket"]["state"] == 10
    });
    assert!(f["socket"]["backlog"].as_u64().unwrap() > 0);
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 3);
    assert_file(
        fd3(&run.json()),
        "needs",
        "tcp",
        "socket_file_ops",
        "tcp-listen-inflight",
        &["--skip-in-flight"],
    );
}

#[test]
fn big_deleted_file_needs_a_ghost_limit_rounded_up_to_mib() {
    let snap = snapshot();
    let (pid, f) = subject(&snap, "a deleted regular file", |f| {
        f["file_type"] == "reg" && f["nlink"] == 0
    });
    let allocated = f["allocated"].as_u64().unwrap();
    assert!(
        allocated > 1 << 20,
        "the fixture's file is over the 1 MiB default"
    );
    let limit = format!("--ghost-limit {}M", allocated.div_ceil(1 << 20));
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 3);
    let r = run.json();
    assert_file(
        fd3(&r),
        "needs",
        "deleted-file",
        "ext4_file_operations",
        "ghost-too-big",
        &[limit.as_str()],
    );
    assert_eq!(limit, "--ghost-limit 2M");
    assert_eq!(strings(&r["options"]), [limit.as_str()]);
}

#[test]
fn unix_stream_peer_outside_needs_external_with_its_inode() {
    let snap = snapshot();
    let (pid, f) = subject(&snap, "a connected unix stream socket", |f| {
        f["socket"]["family"] == 1 && !f["socket"]["peer"].is_null()
    });
    let external = format!("--external unix[{}]", f["ino"].as_u64().unwrap());
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 3);
    let r = run.json();
    assert_file(
        fd3(&r),
        "needs",
        "unix",
        "socket_file_ops",
        "unix-stream-peer-outside",
        &[external.as_str()],
    );
    // --ext-unix-sk is not enough for a stream peer.
    assert_eq!(replay_pid(pid, &["--with", "--ext-unix-sk"]).code, 3);
    assert_eq!(replay_pid(pid, &["--with", &external]).code, 0);
}

#[test]
fn pty_slave_without_its_master_needs_shell_job_or_external_tty() {
    let snap = snapshot();
    let (pid, f) = subject(&snap, "a pty slave", |f| f["rdev"]["major"] == 136);
    // glibc makedev() of rdev and of the devpts dev, in hex, as CRIU spells the tty id.
    let makedev = |d: &Value| {
        let (ma, mi) = (d["major"].as_u64().unwrap(), d["minor"].as_u64().unwrap());
        (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12) | ((ma & !0xfff) << 32)
    };
    let external = format!(
        "--external tty[{:x}:{:x}]",
        makedev(&f["rdev"]),
        makedev(&f["dev"])
    );
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 3);
    let r = run.json();
    assert_file(
        fd3(&r),
        "needs",
        "tty",
        "tty_fops",
        "pty-slave-master-outside",
        &["--shell-job", external.as_str(), "--orphan-pts-master"],
    );
    assert_eq!(strings(&r["options"]), ["--shell-job"]);
}

#[test]
fn eventfd_and_pipes_are_fine_with_exit_0() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "an eventfd", |f| f["name"] == "[eventfd]");
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 0);
    let r = run.json();
    assert_eq!(r["verdict"], "ok");
    assert_file(
        fd3(&r),
        "ok",
        "[eventfd]",
        "eventfd_fops",
        "anon-supported",
        &[],
    );
    // stdin is /dev/null, stdout and stderr files: all fine, with named ops tables.
    let files = r["files"].as_array().unwrap();
    assert_eq!(files[0]["fops"], "null_fops");
    assert_eq!(files[1]["fops"], "ext4_file_operations");

    let (pid, f) = subject(&snap, "a pipe", |f| f["file_type"] == "fifo");
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 0);
    let r = run.json();
    let pipe = format!("pipe:[{}]", f["ino"].as_u64().unwrap());
    for fd in [3, 4] {
        let p = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["fd"] == fd)
            .expect("both pipe ends");
        assert_file(p, "ok", "pipe", "pipeanon_fops", "fifo", &[]);
        assert_eq!(p["what"], pipe.as_str());
    }
}

#[test]
fn mappings_are_reported_and_fine() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "io_uring", |f| f["name"] == "[io_uring]");
    let r = replay_pid(pid, &[]).json();
    let maps = r["mappings"].as_array().unwrap();
    assert!(!maps.is_empty());
    for m in maps {
        assert_file(
            m,
            "ok",
            "mapped-file",
            "ext4_file_operations",
            "map-file",
            &[],
        );
        assert!(m["range"].as_str().unwrap().contains('-'), "{m}");
        assert!(m.get("fd").is_none(), "{m}");
    }
}

#[test]
fn non_session_leader_needs_shell_job_from_the_task_rule() {
    let snap = snapshot();
    let procs = snap["procs"].as_object().unwrap();
    let with_files: Vec<u64> = snap["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pid"].as_u64().unwrap())
        .collect();
    let pid = procs
        .values()
        .find(|p| p["sid"] != p["pid"] && with_files.contains(&p["pid"].as_u64().unwrap()))
        .expect("the noshell subject")["pid"]
        .as_u64()
        .unwrap();
    let run = replay_pid(pid, &[]);
    assert_eq!(run.code, 3);
    let r = run.json();
    assert!(
        r["files"].as_array().unwrap().is_empty(),
        "noshell holds no fds"
    );
    let task = &r["task"][0];
    assert_eq!(
        (
            task["rule"].as_str(),
            task["verdict"].as_str(),
            task["kind"].as_str()
        ),
        (Some("not-session-leader"), Some("needs"), Some("task"))
    );
    assert_eq!(strings(&r["options"]), ["--shell-job"]);
    assert_eq!(replay_pid(pid, &["--with", "--shell-job"]).code, 0);
}

#[test]
fn text_report_of_one_process() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "io_uring", |f| f["name"] == "[io_uring]");
    let run = replay(&["--pid", &pid.to_string()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("pid {pid} (fdzoo)"));
    let fd = lines
        .iter()
        .find(|l| l.trim_start().starts_with("3 "))
        .expect("a line for fd 3");
    for word in [
        "io_uring",
        "io_uring_fops",
        "blocks",
        "[anon_inode:[io_uring]]",
    ] {
        assert!(fd.contains(word), "{fd}");
    }
    // Only what is not ok is listed.
    assert!(!run.stdout.contains("null_fops"), "{}", run.stdout);
    assert_eq!(
        lines.last().unwrap(),
        &"verdict (criu-4, 1 process): blocks: a checkpoint would fail"
    );

    let (pid, _) = subject(&snap, "an established TCP socket", |f| {
        f["socket"]["family"] == 2 && f["socket"]["state"] == 1
    });
    let run = replay(&["--pid", &pid.to_string()]);
    assert_eq!(run.code, 3);
    assert!(
        run.stdout
            .contains("connected TCP socket; use --tcp-established or --tcp-close"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().last().is_some_and(|l| l.starts_with(
            "verdict (criu-4, 1 process): needs: checkpointable with --tcp-established; \
             restore will need --tcp-established"
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn verbose_text_lists_every_fd_and_mapping() {
    let snap = snapshot();
    let (pid, _) = subject(&snap, "an eventfd", |f| f["name"] == "[eventfd]");
    let run = replay(&["--pid", &pid.to_string(), "--verbose"]);
    assert_eq!(run.code, 0);
    for word in [
        "null_fops",
        "eventfd_fops",
        "map ",
        "ok: checkpointable as it is",
    ] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
}

#[test]
fn whole_snapshot_per_process_judges_every_process_and_exits_with_the_worst() {
    let snap = snapshot();
    let pids: std::collections::BTreeSet<u64> = snap["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 10);

    let run = replay(&["--json", "--processes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v = run.json();
    assert_eq!(
        (v["profile"].as_str(), v["verdict"].as_str()),
        (Some("criu-4"), Some("blocks"))
    );
    let s = &v["summary"];
    let counts = ["processes", "ok", "needs", "unknown", "blocks"].map(|k| s[k].as_u64());
    assert_eq!(counts, [10, 2, 6, 0, 2].map(Some), "{s}");

    let run = replay(&["--processes"]);
    assert_eq!(run.code, 1);
    let last = run.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(
            "summary (criu-4): 10 processes: 2 ok, 6 need options, 0 unknown, 2 blocked"
        ),
        "{last}"
    );
}

#[test]
fn an_unknown_pid_is_an_error_not_a_verdict() {
    let snap = snapshot();
    let max = fds(&snap)
        .map(|f| f["pid"].as_u64().unwrap())
        .max()
        .unwrap();
    let procs = snap["procs"].as_object().unwrap();
    let absent = (max + 1..)
        .find(|p| !procs.contains_key(&p.to_string()))
        .unwrap();
    let run = replay(&["--pid", &absent.to_string()]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn an_unreadable_snapshot_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt-watch"))
        .args(["--profile", "criu-4", "--replay"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/no-such-snapshot.json"))
        .output()
        .expect("run ckpt-watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-snapshot.json"), "{stderr}");
}

/// Without `--processes` the scan speaks in workloads: the snapshot's processes carry no cgroup,
/// so each session is one, rooted at its leader when the leader is there; the worst first.
#[test]
fn whole_snapshot_by_workload_worst_first() {
    let snap = snapshot();
    let sessions: std::collections::BTreeSet<u64> = snap["procs"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["sid"].as_u64().unwrap())
        .collect();
    let run = replay(&["--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v = run.json();
    let ws = v["workloads"].as_array().unwrap();
    assert_eq!(ws.len(), sessions.len(), "{v}");
    assert!(ws.iter().all(|w| w["kind"] == "session"), "{v}");
    let rank = |w: &Value| match w["verdict"].as_str().unwrap() {
        "blocks" => 3,
        "unknown" => 2,
        "needs" => 1,
        _ => 0,
    };
    assert!(
        ws.windows(2).all(|p| rank(&p[0]) >= rank(&p[1])),
        "not worst first: {v}"
    );
    assert_eq!(
        (v["verdict"].as_str(), ws[0]["verdict"].as_str()),
        (Some("blocks"), Some("blocks"))
    );
    for w in ws {
        let root = w["root"].as_u64().unwrap();
        let leader = snap["procs"][root.to_string()]["sid"].as_u64();
        if sessions.contains(&root) {
            assert_eq!(leader, Some(root), "a present leader is the root: {w}");
        }
    }
    assert_eq!(v["summary"]["workloads"].as_u64(), Some(ws.len() as u64));
    let text = replay(&[]);
    let last = text.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("summary (criu-4): {} workloads:", ws.len())),
        "{last}"
    );
    assert!(
        text.stdout.lines().nth(1).unwrap().starts_with("session "),
        "{}",
        text.stdout
    );
}
