//! The daemon suite inside the guest: the very test binary the host runs
//! (`tests/tests/daemon.rs`), once per install-event backend, the backend forced through
//! `CKPT_WATCH_BACKEND`. A backend the kernel refuses makes every test fail, never skip.

use std::process::Command;

use super::super::records::Record;

/// Where the host put the suite's test binary.
pub const SUITE: &str = "/bin/daemon-suite";

/// How much slower than a real CPU the suite's latency budgets may be here: TCG emulates
/// every instruction, and the kernels' RCU grace periods (link teardown at exit) stretch too.
const TIME_SCALE: &str = "5";

/// Lines of a failed test's output carried back to the host.
const OUTPUT_TAIL: usize = 12;

/// Runs the suite with `backend` forced; one record per test, or an error if it did not run.
pub fn run(backend: &str) -> Vec<Record> {
    // One test at a time: the storm test would bury the latency tests' alerts on one vCPU.
    let out = match Command::new(SUITE)
        .arg("--test-threads=1")
        .env("CKPT_WATCH_BACKEND", backend)
        .env("CKPT_TESTS_TIME_SCALE", TIME_SCALE)
        .env("CKPT_TESTS_BIN_DIR", "/bin")
        .env("RUST_BACKTRACE", "0")
        .output()
    {
        Ok(out) => out,
        Err(e) => return vec![suite_error(backend, &format!("cannot start {SUITE}: {e}"))],
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records = parse(backend, &stdout);
    if records.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return vec![suite_error(
            backend,
            &format!(
                "the suite reported no test ({}): {}",
                out.status,
                tail(&format!("{stdout}{stderr}"), OUTPUT_TAIL)
            ),
        )];
    }
    records
}

fn suite_error(backend: &str, what: &str) -> Record {
    Record::Error {
        case: format!("daemon suite, {backend} backend"),
        what: what.into(),
    }
}

/// libtest's plain output → one record per `test NAME ... ok|FAILED` line, a failure carrying
/// the tail of its `---- NAME stdout ----` section.
fn parse(backend: &str, stdout: &str) -> Vec<Record> {
    stdout
        .lines()
        .filter_map(|line| {
            let (test, outcome) = line.strip_prefix("test ")?.rsplit_once(" ... ")?;
            let passed = match outcome {
                "ok" => true,
                "FAILED" => false,
                _ => return None,
            };
            Some(Record::Daemon {
                backend: backend.into(),
                test: test.into(),
                passed,
                output: if passed {
                    String::new()
                } else {
                    tail(&section(stdout, test), OUTPUT_TAIL)
                },
            })
        })
        .collect()
}

/// The captured output libtest prints for a failed test.
fn section(stdout: &str, test: &str) -> String {
    let header = format!("---- {test} stdout ----");
    stdout
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with("---- ") && *l != "failures:")
        .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\nrunning 3 tests\ntest a_passes ... ok\ntest b_fails ... FAILED\n\
        test c_ignored ... ignored\n\nfailures:\n\n---- b_fails stdout ----\n\
        io_uring: fd 5 in pid 77\n\nthread 'b_fails' panicked at tests/daemon.rs:9:5:\n\
        no became-blocking alert\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\nfailures:\n    b_fails\n\n\
        test result: FAILED. 1 passed; 1 failed; 1 ignored\n";

    #[test]
    fn reads_each_test_and_the_failures_output() {
        let records = parse("kprobe", OUTPUT);
        assert_eq!(records.len(), 2, "ignored tests are not reported");
        let Record::Daemon { test, passed, .. } = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!((test.as_str(), *passed), ("a_passes", true));
        let Record::Daemon {
            backend,
            test,
            passed,
            output,
        } = &records[1]
        else {
            panic!("{records:?}")
        };
        assert_eq!((backend.as_str(), test.as_str()), ("kprobe", "b_fails"));
        assert!(!passed);
        assert_eq!(
            output,
            "io_uring: fd 5 in pid 77\nthread 'b_fails' panicked at tests/daemon.rs:9:5:\n\
             no became-blocking alert"
        );
    }
}
