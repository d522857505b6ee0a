//! The CRIU that will run the dump, found as the engines find it: `criu` on PATH (runc, Podman
//! through runc, and LXC exec it by that name), or the binary `--criu` names. Its version picks
//! the profile; `criu check` says whether it can run on this kernel at all (Debian 12's 3.17
//! dies in kerndat on kernels that map `[vvar_vclock]`, before looking at any process).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::classify::{Judgement, Verdict};

/// How long `criu check` may take: it probes kernel features, a second or two at most.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Criu {
    pub path: PathBuf,
    /// `Version: 3.17.1` of `criu --version`.
    pub version: Option<String>,
}

/// What `criu check` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Passed,
    /// CRIU's first error, without its source location.
    Failed(String),
    /// It could not be run at all (or did not finish).
    NotRun(String),
}

impl Criu {
    /// `chosen` (from `--criu`), else the first `criu` on PATH; `None` when there is none.
    pub fn find(chosen: Option<&Path>) -> Option<Self> {
        let path = Self::locate(chosen)?;
        let version = version_of(Command::new(&path));
        Some(Self { path, version })
    }

    /// The binary [`Criu::find`] finds, without asking its version.
    pub fn locate(chosen: Option<&Path>) -> Option<PathBuf> {
        match chosen {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("criu"))
                .find(|c| c.is_file()),
        }
    }

    /// The CRIU running as `pid` with command line `argv`, its version asked the way it was
    /// started (through a loader such as ld.so when it was); `None` when the command line
    /// names no `criu` (one serving RPC retitles itself `criu: dump --rpc ...`).
    pub fn running(pid: u32, argv: &[String]) -> Option<Self> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let at = argv
            .iter()
            .position(|w| Path::new(w).file_name() == Some("criu".as_ref()))?;
        let mut cmd = Command::new(exe);
        cmd.args(&argv[1..=at]);
        Some(Self {
            path: PathBuf::from(&argv[at]),
            version: version_of(cmd),
        })
    }

    /// `/usr/sbin/criu (CRIU 3.17.1)`.
    pub fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{} (CRIU {v})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// A `criu check` under way.
pub struct RunningCheck {
    path: PathBuf,
    started: Instant,
    /// The child's pid and where its output arrives.
    waiter: std::io::Result<(u32, Receiver<std::io::Result<Output>>)>,
}

impl RunningCheck {
    /// Starts `path check` (~10 ms, as long as a small scan): the caller goes on meanwhile
    /// (asking the same binary's version, scanning) and reads the outcome from the returned
    /// [`RunningCheck`].
    pub fn start(path: &Path) -> RunningCheck {
        let child = Command::new(path)
            .arg("check")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let waiter = child.map(|child| {
            let pid = child.id();
            let (tx, rx) = mpsc::channel();
            // Waiting drains both pipes: CRIU's diagnostics can fill one.
            std::thread::spawn(move || tx.send(child.wait_with_output()));
            (pid, rx)
        });
        RunningCheck {
            path: path.to_path_buf(),
            started: Instant::now(),
            waiter,
        }
    }

    /// What it said, once it has ended (killed after [`CHECK_TIMEOUT`]).
    pub fn finish(self) -> Check {
        self.finish_within(CHECK_TIMEOUT)
    }

    fn finish_within(self, limit: Duration) -> Check {
        let path = self.path.display();
        let (pid, output) = match self.waiter {
            Ok(w) => w,
            Err(e) => return Check::NotRun(format!("cannot run {path}: {e}")),
        };
        match output.recv_timeout(limit.saturating_sub(self.started.elapsed())) {
            Ok(Ok(out)) if out.status.success() => Check::Passed,
            Ok(Ok(out)) => Check::Failed(
                first_error(&String::from_utf8_lossy(&out.stderr))
                    .unwrap_or_else(|| format!("exit status {}", out.status)),
            ),
            Ok(Err(e)) => Check::NotRun(format!("`{path} check`: {e}")),
            Err(RecvTimeoutError::Timeout) => {
                // Not reaped until the waiting thread's wait returns, so the pid is still the
                // child's.
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                Check::NotRun(format!(
                    "`{path} check` did not finish within {}s",
                    limit.as_secs()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Check::NotRun(format!("`{path} check` ended without a status"))
            }
        }
    }

    /// The environment finding: can `criu`, the binary checked, run here at all?
    pub fn judge(self, criu: &Criu) -> Judgement {
        let described = criu.describe();
        let (verdict, reason) = match self.finish() {
            Check::Passed => (Verdict::Ok, format!("`criu check` passes: {described}")),
            Check::Failed(error) => (
                Verdict::Blocks,
                format!(
                    "`criu check` fails with {described}: `{error}`; no dump can run with this CRIU on this kernel"
                ),
            ),
            Check::NotRun(why) => (Verdict::Blocks, why),
        };
        Judgement {
            verdict,
            kind: "checkpointer".into(),
            rule: "criu-check".into(),
            reason,
            options: vec![],
        }
    }
}

/// What `cmd --version` says its version is.
fn version_of(mut cmd: Command) -> Option<String> {
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| parse_version(&s))
}

fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
}

/// The first `Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds` line, as
/// `vdso: Unexpected rt vDSO area bounds`.
fn first_error(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.starts_with("Error"))?;
    let message = match line.split_once("): ") {
        Some((_, m)) => m,
        None => line.trim_start_matches("Error").trim_start_matches(':'),
    };
    Some(message.trim().to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn versions_and_errors_as_criu_prints_them() {
        assert_eq!(
            parse_version("Version: 3.17.1\n").as_deref(),
            Some("3.17.1")
        );
        assert_eq!(
            parse_version("Version: 4.2\nGitID: v4.2\n").as_deref(),
            Some("4.2")
        );
        assert_eq!(parse_version("criu: unknown\n"), None);
        let stderr = "Warn (criu/kerndat.c:1): something\n\
            Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n\
            Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable\n";
        assert_eq!(
            first_error(stderr).as_deref(),
            Some("vdso: Unexpected rt vDSO area bounds")
        );
        assert_eq!(first_error("Looks good.\n"), None);
    }

    /// A `criu` that says version 9.9 and runs `check` as the shell text `check`.
    fn fake_criu(check: &str) -> (tempfile::TempDir, Criu) {
        let dir = tempfile::Builder::new()
            .prefix("ckpt-criu-")
            .tempdir()
            .unwrap();
        let fake = dir.path().join("criu");
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'Version: 9.9'; exit 0; }}\n{check}\n"
        );
        // Written by a child, not by this process: a write fd of ours, inherited by a process
        // another test thread forks at that moment, would make exec fail with ETXTBSY.
        let mut writer = Command::new("sh")
            .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
            .arg(&fake)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        writer
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(writer.wait().unwrap().success());
        let criu = Criu::find(Some(&fake)).unwrap();
        (dir, criu)
    }

    /// A binary that is not CRIU, or fails, is a blocking finding with its words, never `ok`.
    #[test]
    fn a_failing_check_blocks() {
        let (dir, criu) = fake_criu("echo 'Error (criu/x.c:1): x: broken here' >&2; exit 1");
        assert_eq!(criu.version.as_deref(), Some("9.9"));
        assert_eq!(
            RunningCheck::start(&criu.path).finish(),
            Check::Failed("x: broken here".into())
        );
        let j = RunningCheck::start(&criu.path).judge(&criu);
        assert_eq!(j.verdict, Verdict::Blocks);
        assert!(j.reason.contains("x: broken here"), "{}", j.reason);
        let missing = Criu {
            path: dir.path().join("nothing"),
            version: None,
        };
        assert!(matches!(
            RunningCheck::start(&missing.path).finish(),
            Check::NotRun(_)
        ));
    }

    /// CRIU's diagnostics fill no pipe it then blocks on: a check that writes more than a pipe
    /// holds before its error still ends with that error.
    #[test]
    fn a_check_that_writes_much_is_read_to_its_end() {
        let (_dir, criu) = fake_criu(
            "head -c 300000 /dev/zero | tr '\\0' x >&2; echo >&2; \
             head -c 300000 /dev/zero; echo 'Error (criu/y.c:2): y: late' >&2; exit 1",
        );
        assert_eq!(
            RunningCheck::start(&criu.path).finish(),
            Check::Failed("y: late".into())
        );
    }

    /// A check that hangs is killed at the limit and blocks, saying so.
    #[test]
    fn a_hanging_check_is_killed_at_the_limit() {
        let (dir, criu) = fake_criu("echo $$ > \"$(dirname \"$0\")/pid\"; exec sleep 30");
        let running = RunningCheck::start(&criu.path);
        let pid_file = dir.path().join("pid");
        while !pid_file.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let check = running.finish_within(Duration::from_millis(300));
        assert!(
            matches!(&check, Check::NotRun(why) if why.contains("did not finish")),
            "{check:?}"
        );
        let pid = std::fs::read_to_string(pid_file).unwrap();
        let status = format!("/proc/{}/status", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&status).is_ok_and(|s| !s.contains("State:\tZ")) {
            assert!(Instant::now() < deadline, "the check still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
