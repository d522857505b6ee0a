//! The CRIU that will run the dump, found as the engines find it: `criu` on PATH (runc, Podman
//! through runc, and LXC exec it by that name), or the binary `--criu` names. Its version picks
//! the profile; `criu check` says whether it can run on this kernel at all (Debian 12's 3.17
//! dies in kerndat on kernels that map `[vvar_vclock]`, before looking at any process).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::cache::{Cache, file_key};
use crate::checkpointer::engine::ConfigPaths;
use crate::classify::{Judgement, Verdict};
use crate::kernel::kallsyms_cache::Identity;

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

/// Facts kept about CRIU binaries (see [`BinaryKey`]): each file holds the last binary's.
const VERSION_FILE: &str = "criu-version";
const VERSION_MAGIC: &[u8] = b"ckpt-watch criu version 1\n";
const CHECK_FILE: &str = "criu-check";
const CHECK_MAGIC: &[u8] = b"ckpt-watch criu check 1\n";

/// What a CRIU binary says of itself stays true while it is the same file: its path and
/// [`file_key`]. Only for an ELF binary: a script's words may come from whatever it runs.
struct BinaryKey(String);

impl BinaryKey {
    fn of(path: &Path) -> Option<Self> {
        let mut file = std::fs::File::open(path).ok()?;
        let mut magic = [0; 4];
        file.read_exact(&mut magic).ok()?;
        let m = file.metadata().ok()?;
        (magic == *b"\x7fELF" && m.is_file()).then(|| {
            Self(format!(
                "binary {}\nfile {}\n",
                path.display(),
                file_key(&m)
            ))
        })
    }
}

impl Criu {
    /// `chosen` (from `--criu`), else the first `criu` on PATH; `None` when there is none.
    /// Its version is asked once per binary: ~4 ms of exec and dynamic loading otherwise.
    pub fn find(chosen: Option<&Path>) -> Option<Self> {
        Self::find_in(chosen, &Cache::system())
    }

    fn find_in(chosen: Option<&Path>, cache: &Cache) -> Option<Self> {
        let path = Self::locate(chosen)?;
        let key = BinaryKey::of(&path);
        let kept = key.as_ref().and_then(|k| {
            let entry = cache.load(VERSION_FILE, VERSION_MAGIC, k.0.as_bytes())?;
            String::from_utf8(entry.payload().to_vec()).ok()
        });
        if let Some(version) = kept {
            return Some(Self {
                path,
                version: Some(version),
            });
        }
        let version = version_of(Command::new(&path));
        if let (Some(k), Some(v)) = (&key, &version)
            && let Err(e) = cache.store(VERSION_FILE, VERSION_MAGIC, k.0.as_bytes(), v.as_bytes())
        {
            tracing::debug!(error = %e, "criu version not cached");
        }
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

/// A `criu check` under way, or its outcome as found earlier this boot.
pub struct RunningCheck {
    path: PathBuf,
    started: Instant,
    state: CheckState,
}

enum CheckState {
    /// The outcome kept by an earlier run (see [`check_key`]).
    Kept(Check),
    Running {
        /// The child's pid and where its output arrives.
        waiter: std::io::Result<(u32, Receiver<std::io::Result<Output>>)>,
        /// Where its outcome is kept for later runs, when it can be.
        keep: Option<(Cache, Vec<u8>)>,
    },
}

/// What `criu check`'s outcome depends on: the binary ([`BinaryKey`]), the running kernel (the
/// boot, its base address, its modules: [`Identity`]), the config files CRIU reads, and this
/// process's capabilities. CRIU keeps its own kernel probes for the boot the same way
/// (criu/kerndat.c keeps them on tmpfs, "because the file should be gone after reboot").
/// `None` when one of them cannot be told: the check then runs.
fn check_key(path: &Path) -> Option<Vec<u8>> {
    let binary = BinaryKey::of(path)?;
    let kernel = Identity::of_running_kernel().ok()??;
    if !kernel.settled() {
        return None;
    }
    let mut key = binary.0;
    key.push_str(std::str::from_utf8(kernel.key()).ok()?);
    let paths = ConfigPaths::from_env();
    for config in [paths.global, paths.user, paths.env].into_iter().flatten() {
        let file = match std::fs::metadata(&config) {
            Ok(m) => file_key(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent".into(),
            Err(_) => return None,
        };
        key.push_str(&format!("config {} {file}\n", config.display()));
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let caps = status.lines().find(|l| l.starts_with("CapEff:"))?;
    key.push_str(&format!("{caps}\n"));
    Some(key.into_bytes())
}

impl Check {
    /// As kept: `passed`, or `failed` and CRIU's error.
    fn to_payload(&self) -> Option<String> {
        match self {
            Check::Passed => Some("passed".into()),
            Check::Failed(error) => Some(format!("failed {error}")),
            Check::NotRun(_) => None,
        }
    }

    fn from_payload(payload: &[u8]) -> Option<Self> {
        match std::str::from_utf8(payload).ok()? {
            "passed" => Some(Check::Passed),
            p => p.strip_prefix("failed ").map(|e| Check::Failed(e.into())),
        }
    }
}

impl RunningCheck {
    /// Starts `path check` (~10 ms, as long as a small scan): the caller goes on meanwhile
    /// (asking the same binary's version, scanning) and reads the outcome from the returned
    /// [`RunningCheck`]. An outcome found earlier this boot, with everything it depends on
    /// unchanged ([`check_key`]), stands for it.
    pub fn start(path: &Path) -> RunningCheck {
        Self::start_in(path, Cache::system())
    }

    fn start_in(path: &Path, cache: Cache) -> RunningCheck {
        let started = Instant::now();
        let key = check_key(path);
        let kept = key.as_ref().and_then(|k| {
            let entry = cache.load(CHECK_FILE, CHECK_MAGIC, k)?;
            Check::from_payload(entry.payload())
        });
        let state = match kept {
            Some(check) => CheckState::Kept(check),
            None => CheckState::Running {
                waiter: Self::spawn(path),
                keep: key.map(|k| (cache, k)),
            },
        };
        RunningCheck {
            path: path.to_path_buf(),
            started,
            state,
        }
    }

    fn spawn(path: &Path) -> std::io::Result<(u32, Receiver<std::io::Result<Output>>)> {
        let child = Command::new(path)
            .arg("check")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        child.map(|child| {
            let pid = child.id();
            let (tx, rx) = mpsc::channel();
            // Waiting drains both pipes: CRIU's diagnostics can fill one.
            std::thread::spawn(move || tx.send(child.wait_with_output()));
            (pid, rx)
        })
    }

    /// Whether the outcome is one found by an earlier run.
    pub fn kept(&self) -> bool {
        matches!(self.state, CheckState::Kept(_))
    }

    /// What it said, once it has ended (killed after [`CHECK_TIMEOUT`]).
    pub fn finish(self) -> Check {
        self.finish_within(CHECK_TIMEOUT)
    }

    fn finish_within(self, limit: Duration) -> Check {
        let (waiter, keep) = match self.state {
            CheckState::Kept(check) => return check,
            CheckState::Running { waiter, keep } => (waiter, keep),
        };
        let (check, lasting) = Self::outcome(&self.path, waiter, self.started, limit);
        if let (true, Some((cache, key)), Some(payload)) = (lasting, keep, check.to_payload())
            && let Err(e) = cache.store(CHECK_FILE, CHECK_MAGIC, &key, payload.as_bytes())
        {
            tracing::debug!(error = %e, "criu check not cached");
        }
        check
    }

    /// What it said, and whether that is CRIU's own answer about this kernel (it passed, or
    /// failed with its `Error` line), which later runs may take as it is: a check killed by a
    /// signal, cut short or not run at all says nothing lasting.
    fn outcome(
        path: &Path,
        waiter: std::io::Result<(u32, Receiver<std::io::Result<Output>>)>,
        started: Instant,
        limit: Duration,
    ) -> (Check, bool) {
        let path = path.display();
        let (pid, output) = match waiter {
            Ok(w) => w,
            Err(e) => return (Check::NotRun(format!("cannot run {path}: {e}")), false),
        };
        let check = match output.recv_timeout(limit.saturating_sub(started.elapsed())) {
            Ok(Ok(out)) if out.status.success() => return (Check::Passed, true),
            Ok(Ok(out)) => match first_error(&String::from_utf8_lossy(&out.stderr)) {
                Some(error) => return (Check::Failed(error), true),
                None => Check::Failed(format!("exit status {}", out.status)),
            },
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
        };
        (check, false)
    }

    /// The environment finding: can `criu`, the binary checked, run here at all?
    pub fn judge(self, criu: &Criu) -> Judgement {
        let described = criu.describe();
        let kept = self.kept();
        let (verdict, mut reason) = match self.finish() {
            Check::Passed => (Verdict::Ok, format!("`criu check` passes: {described}")),
            Check::Failed(error) => (
                Verdict::Blocks,
                format!(
                    "`criu check` fails with {described}: `{error}`; no dump can run with this CRIU on this kernel"
                ),
            ),
            Check::NotRun(why) => (Verdict::Blocks, why),
        };
        if kept {
            reason.push_str(
                " (found by an earlier run this boot; binary, modules and config unchanged)",
            );
        }
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

    /// A copy of the ELF binary `from` at `dir/criu`, written by a child for the reason
    /// [`fake_criu`] gives.
    fn copy_binary(from: &str, dir: &Path) -> PathBuf {
        let to = dir.join("criu");
        let status = Command::new("cp").arg(from).arg(&to).status().unwrap();
        assert!(status.success());
        to
    }

    /// The version is asked once per binary, and again once the file changes; a script's
    /// is always asked.
    #[test]
    fn a_binarys_version_is_kept_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(&dir.path().join("cache"));
        let path = copy_binary("/usr/sbin/criu", dir.path());
        let asked = Criu::find_in(Some(&path), &cache).unwrap();
        let version = asked
            .version
            .clone()
            .expect("Debian's criu says its version");
        let key = BinaryKey::of(&path).unwrap();
        let kept = cache.load(VERSION_FILE, VERSION_MAGIC, key.0.as_bytes());
        assert_eq!(kept.unwrap().payload(), version.as_bytes());
        // What is kept is what is said: a planted value shows it is not asked again.
        cache
            .store(VERSION_FILE, VERSION_MAGIC, key.0.as_bytes(), b"9.9")
            .unwrap();
        assert_eq!(
            Criu::find_in(Some(&path), &cache)
                .unwrap()
                .version
                .as_deref(),
            Some("9.9")
        );
        // Another binary at the same path: asked again.
        copy_binary("/usr/bin/true", dir.path());
        assert_eq!(Criu::find_in(Some(&path), &cache).unwrap().version, None);
        let (_script_dir, script) = fake_criu("exit 0");
        assert!(
            BinaryKey::of(&script.path).is_none(),
            "a script is never keyed"
        );
    }

    /// `criu check`'s own answer is kept for the boot and stands for the check while the
    /// binary is the same file; a changed binary is checked again; a bare exit status (no
    /// `Error` line of CRIU's) is never kept.
    #[test]
    fn a_checks_answer_is_kept_until_the_binary_changes() {
        if !Identity::of_running_kernel().is_ok_and(|id| id.is_some()) {
            eprintln!("skipped: this process sees no kernel addresses (not root?)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = || Cache::at(&dir.path().join("cache"));
        let path = copy_binary("/usr/sbin/criu", dir.path());
        let first = RunningCheck::start_in(&path, cache());
        assert!(!first.kept());
        let answer = first.finish();
        assert!(!matches!(answer, Check::NotRun(_)), "{answer:?}");
        let again = RunningCheck::start_in(&path, cache());
        assert!(again.kept(), "the same binary on the same boot");
        assert_eq!(again.finish(), answer);
        let criu = Criu {
            path: path.clone(),
            version: None,
        };
        let judged = RunningCheck::start_in(&path, cache()).judge(&criu);
        assert!(
            judged.reason.contains("an earlier run"),
            "{}",
            judged.reason
        );

        copy_binary("/usr/bin/false", dir.path());
        let bare = RunningCheck::start_in(&path, cache());
        assert!(!bare.kept(), "another binary at the same path");
        assert!(matches!(bare.finish(), Check::Failed(_)));
        let bare = RunningCheck::start_in(&path, cache());
        assert!(!bare.kept(), "an exit status alone");
        // Ended before the file is written over: a binary running is busy (ETXTBSY).
        bare.finish();

        copy_binary("/usr/bin/true", dir.path());
        assert_eq!(
            RunningCheck::start_in(&path, cache()).finish(),
            Check::Passed
        );
        let kept = RunningCheck::start_in(&path, cache());
        assert!(kept.kept());
        assert_eq!(kept.finish(), Check::Passed);
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
