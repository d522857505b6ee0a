//! The runner inside a guest (`xtask vm-test --guest`, started by /init): runs every fdzoo
//! case through the suites and writes one record per finding to stdout (serial port 1).
//!
//! Suites (those `CKPT_VM_SUITES` names): `zoo`, i.e. a whole-host scan whose processes must
//! be what /proc tells (`procs`), then `resolve` (data symbols vs member functions) on every
//! kernel and, where the host asks for it, `oracle` (Debian's CRIU 3.17 vs
//! the `criu-3.17` profile, and on two cases the same CRIU with `ckpt-watch criu-hook`), both
//! per fdzoo case; `containers` (runc checkpoints vs
//! `preflight`) where the host asks for it; then `daemon`, the host's daemon integration
//! tests, once per backend in `CKPT_VM_BACKENDS`.

mod containers;
mod daemon;
mod hook;
mod oracle;
mod procs;
mod resolve;
mod runc;
mod zoo;

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use super::records::Record;
use zoo::Subject;

pub use daemon::SUITE as DAEMON_SUITE;
pub use runc::IMAGE_MANIFEST;

/// Where the zoo's files go: the ext4 scratch disk /init mounted, if any.
const ZOO_DIR: &str = "/srv/zoo";

/// Runs the suites; the process exit code says whether any record is a failure.
pub fn run() -> anyhow::Result<()> {
    // /init runs in the kernel's session 0, which CRIU reports as "outside of its pid
    // namespace" even with --shell-job; a session of our own makes `noshell` what it is on a
    // host: a subject whose session leader lies outside the dumped tree.
    // SAFETY: setsid takes no arguments; the runner leads no process group, so it succeeds.
    unsafe { libc::setsid() };
    let backends: Vec<String> = std::env::var("CKPT_VM_BACKENDS")
        .unwrap_or_default()
        .split(',')
        .filter(|b| !b.is_empty())
        .map(String::from)
        .collect();
    let with_oracle = std::env::var("CKPT_VM_ORACLE").is_ok_and(|v| v == "1");
    let with_containers = std::env::var("CKPT_VM_CONTAINERS").is_ok_and(|v| v == "1");
    let suites = std::env::var("CKPT_VM_SUITES").unwrap_or_default();
    let runs = |suite: &str| suites.split(',').any(|s| s == suite);
    emit(&Record::Guest {
        release: text(Command::new("uname").arg("-r"))?.trim().to_string(),
        backends: backends.clone(),
        zoo_fs: text(Command::new("stat").args(["-f", "-c", "%T", ZOO_DIR]))?
            .trim()
            .to_string(),
    })?;
    let mut failed = false;
    if runs("zoo")
        && let Some(record) = procs::check()
    {
        failed = true;
        emit(&record)?;
    }
    let zoo = match runs("zoo") {
        true => text(Command::new("/bin/fdzoo").arg("--list"))?,
        false => String::new(),
    };
    let started = Instant::now();
    for case in zoo.lines() {
        eprintln!("vm-guest: {case}");
        for record in run_case(case, with_oracle) {
            failed |= matches!(record, Record::Error { .. });
            emit(&record)?;
        }
    }
    took("zoo", started)?;
    if with_containers && runs("containers") {
        let started = Instant::now();
        containers::run(&mut |record| {
            failed |= matches!(record, Record::Error { .. });
            emit(record)
        })?;
        took("containers", started)?;
    }
    for backend in &backends {
        eprintln!("vm-guest: daemon suite, {backend} backend");
        let started = Instant::now();
        for record in daemon::run(backend) {
            failed |= matches!(
                record,
                Record::Error { .. } | Record::Daemon { passed: false, .. }
            );
            emit(&record)?;
        }
        took(&format!("daemon {backend}"), started)?;
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Reports how long `suite` took since `started`.
fn took(suite: &str, started: Instant) -> anyhow::Result<()> {
    emit(&Record::Took {
        suite: suite.into(),
        secs: started.elapsed().as_secs(),
    })
}

/// Starts the case, runs the suites on it, stops it.
fn run_case(case: &str, with_oracle: bool) -> Vec<Record> {
    let subject = match Subject::start(case, ZOO_DIR) {
        Ok(Ok(subject)) => subject,
        Ok(Err(why)) => {
            return vec![Record::Skip {
                case: case.into(),
                why,
            }];
        }
        Err(e) => return vec![error(case, e)],
    };
    let records = match resolve::check(case, subject.pid) {
        Ok((report, mut records)) => {
            if with_oracle {
                records.push(
                    oracle::check(case, &subject, &report).unwrap_or_else(|e| error(case, e)),
                );
                if hook::CASES.contains(&case) {
                    records.push(hook::check(case, subject.pid).unwrap_or_else(|e| error(case, e)));
                }
            }
            records
        }
        Err(e) => vec![error(case, e)],
    };
    subject.stop();
    records
}

fn error(case: &str, e: anyhow::Error) -> Record {
    Record::Error {
        case: case.into(),
        what: format!("{e:#}"),
    }
}

fn emit(record: &Record) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(record.line().as_bytes())?;
    out.flush().context("writing to the records port")
}

/// Runs a command and returns its stdout, whatever its exit code.
fn text(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
