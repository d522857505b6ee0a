//! The CRIU that will run the dump, found as the engines find it: `criu` on PATH (runc, Podman
//! through runc, and LXC exec it by that name), or the binary `--criu` names. Its version picks
//! the profile; `criu check` says whether it can run on this kernel at all (Debian 12's 3.17
//! dies in kerndat on kernels that map `[vvar_vclock]`, before looking at any process).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
        let path = match chosen {
            Some(p) => p.to_path_buf(),
            None => std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("criu"))
                .find(|c| c.is_file())?,
        };
        let version = version_of(Command::new(&path));
        Some(Self { path, version })
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

    /// Runs `criu check`.
    pub fn check(&self) -> Check {
        let child = Command::new(&self.path)
            .arg("check")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return Check::NotRun(format!("cannot run {}: {e}", self.path.display())),
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if start.elapsed() < CHECK_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Check::NotRun(format!(
                        "`{} check` did not finish within {}s",
                        self.path.display(),
                        CHECK_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        match child.wait_with_output() {
            Ok(out) if out.status.success() => Check::Passed,
            Ok(out) => Check::Failed(
                first_error(&String::from_utf8_lossy(&out.stderr))
                    .unwrap_or_else(|| format!("exit status {}", out.status)),
            ),
            Err(e) => Check::NotRun(format!("`{} check`: {e}", self.path.display())),
        }
    }

    /// `/usr/sbin/criu (CRIU 3.17.1)`.
    pub fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{} (CRIU {v})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// The environment finding: can this CRIU run here at all?
    pub fn judge(&self) -> Judgement {
        let (verdict, reason) = match self.check() {
            Check::Passed => (
                Verdict::Ok,
                format!("`criu check` passes: {}", self.describe()),
            ),
            Check::Failed(error) => (
                Verdict::Blocks,
                format!(
                    "`criu check` fails with {}: `{error}`; no dump can run with this CRIU on this kernel",
                    self.describe()
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

    /// A binary that is not CRIU, or fails, is a blocking finding with its words, never `ok`.
    #[test]
    fn a_failing_check_blocks() {
        let dir = tempfile::Builder::new()
            .prefix("ckpt-criu-")
            .tempdir()
            .unwrap();
        let fake = dir.path().join("criu");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Version: 9.9'; exit 0; }\n\
             echo 'Error (criu/x.c:1): x: broken here' >&2; exit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let criu = Criu::find(Some(&fake)).unwrap();
        assert_eq!(criu.version.as_deref(), Some("9.9"));
        assert_eq!(criu.check(), Check::Failed("x: broken here".into()));
        let j = criu.judge();
        assert_eq!(j.verdict, Verdict::Blocks);
        assert!(j.reason.contains("x: broken here"), "{}", j.reason);
        let missing = Criu {
            path: dir.path().join("nothing"),
            version: None,
        };
        assert!(matches!(missing.check(), Check::NotRun(_)));
    }
}
