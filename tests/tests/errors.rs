//! Bad input and a hostile environment: one line on stderr naming the problem and the fix,
//! exit status 2, never a panic or a backtrace.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ckpt_tests::{budget, ckpt_watch};

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");

fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

fn run(args: &[&str]) -> Output {
    Command::new(ckpt_watch(FDZOO))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn a_pid_that_does_not_exist() {
    assert_clean_error(
        &run(&["--pid", "4000000000", "--profile", "criu-4"]),
        "no process with pid 4000000000",
    );
}

#[test]
fn a_pid_that_is_not_a_number() {
    let out = run(&["--pid", "twelve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'twelve'"));
}

#[test]
fn a_malformed_with_option() {
    let pid = std::process::id().to_string();
    assert_clean_error(
        &run(&["--pid", &pid, "--with", "tcp-established"]),
        "--with",
    );
}

#[test]
fn an_unknown_profile_lists_the_built_in_ones() {
    assert_clean_error(
        &run(&["--pid", "1", "--profile", "criu-9"]),
        "criu-4, criu-3.17",
    );
}

#[test]
fn without_privileges_the_missing_capabilities_are_named() {
    let mut cmd = Command::new(ckpt_watch(FDZOO));
    cmd.args(["--pid", "1", "--profile", "criu-4"]);
    // SAFETY: setgid/setuid in the child before exec; nobody keeps no capabilities.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("runs as nobody");
    assert_clean_error(&out, "CAP_BPF and CAP_PERFMON");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sudo"));
}

#[test]
fn a_replay_without_the_pid_says_it_exited() {
    let file = tempfile::Builder::new()
        .prefix("ckpt-errors-")
        .suffix(".json")
        .tempfile()
        .unwrap();
    let snap = file.path();
    std::fs::write(snap, r#"{"files":[],"ops":{},"symbols":[],"data_symbols":0,"procs":{},"own_netns":null,"own_ipcns":null}"#).unwrap();
    let out = run(&[
        "--replay",
        snap.to_str().unwrap(),
        "--pid",
        "42",
        "--profile",
        "criu-4",
    ]);
    assert_clean_error(&out, "process 42 exited during the scan");
}

#[test]
fn a_backend_the_kernel_refuses_is_named_with_what_it_needs() {
    let mut refused = 0;
    for backend in ["fentry", "kprobe"] {
        let mut daemon = Command::new(ckpt_watch(FDZOO))
            .args(["daemon", "--profile", "criu-4", "--listen", "127.0.0.1:0"])
            .args(["--backend", backend])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts");
        // A kernel that allows the backend gets a daemon that runs until stopped.
        let deadline = Instant::now() + budget(Duration::from_secs(30));
        while daemon.try_wait().expect("waits").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if daemon.try_wait().expect("waits").is_none() {
            daemon.kill().expect("kills");
            daemon.wait().expect("reaps");
            continue;
        }
        refused += 1;
        let out = daemon.wait_with_output().expect("exited");
        assert_clean_error(
            &out,
            &format!("no install-event backend could be attached ({backend}: "),
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("drop --backend"));
    }
    if refused == 0 {
        eprintln!("skipped: this kernel allows both fentry and kprobes, so none is refused");
    }
}
