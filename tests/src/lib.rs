//! Integration tests of the real ckpt-watch binary against real processes: helpers to start
//! `fdzoo` cases and run the binary.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One of this package's binaries: where cargo built it (`built`, a `CARGO_BIN_EXE_*` path),
/// unless `CKPT_TESTS_BIN_DIR` names where it was copied (the kernel-matrix guests, whose
/// tmpfs /tmp would hide a clone's target directory under /tmp).
pub fn test_bin(built: &str) -> String {
    match std::env::var_os("CKPT_TESTS_BIN_DIR") {
        Some(dir) => {
            let name = Path::new(built).file_name().expect("a binary's file name");
            Path::new(&dir).join(name).to_string_lossy().into_owned()
        }
        None => built.to_string(),
    }
}

/// The built `ckpt-watch`, beside this package's binaries in the same target directory.
pub fn ckpt_watch(fdzoo: &str) -> PathBuf {
    let path = Path::new(fdzoo).with_file_name("ckpt-watch");
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p ckpt-user` first (./x test does)",
        path.display()
    );
    path
}

/// A latency budget, stretched by `CKPT_TESTS_TIME_SCALE`: the kernel-matrix guests run under
/// QEMU's TCG, several times slower than a real CPU (and their kernels' RCU grace periods with
/// it). 1 on a real machine.
pub fn budget(d: Duration) -> Duration {
    let scale = std::env::var("CKPT_TESTS_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s >= 1.0)
        .unwrap_or(1.0);
    d.mul_f64(scale)
}

/// `CKPT_TESTS_TIME_SCALE` (1 on a real machine).
pub fn time_scale() -> f64 {
    budget(Duration::from_secs(1)).as_secs_f64()
}

/// Polls `done` every 50 ms for at most `within`; true once it holds.
pub fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running fdzoo case; killed (and its peers cleaned up by fdzoo itself) on drop.
pub struct Zoo {
    child: Child,
    pub pid: u32,
    /// The rest of the READY line: `peers=...`, `ino=...`.
    pub extra: String,
}

pub enum Started {
    Ready(Zoo),
    /// The case cannot be made on this kernel (fdzoo exit 77), with its reason.
    Unsupported(String),
}

impl Zoo {
    pub fn start(fdzoo: &str, case: &str) -> Started {
        Self::start_in(fdzoo, case, None)
    }

    /// Starts the case inside cgroup directory `cgroup`: moved there before it execs, as
    /// engines place a container's first process, so that its exec shows it there.
    pub fn start_in(fdzoo: &str, case: &str, cgroup: Option<&Path>) -> Started {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(fdzoo);
        cmd.arg(case)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = cgroup {
            let procs = std::ffi::CString::new(
                dir.join("cgroup.procs")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .expect("no NUL in a cgroup path");
            // SAFETY: open, write and close are async-signal-safe; nothing is allocated.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                })
            };
        }
        let mut child = cmd.spawn().expect("fdzoo starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read fdzoo's READY line");
        if let Some(rest) = line.strip_prefix("READY pid=") {
            let (pid, extra) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            return Started::Ready(Zoo {
                pid: pid.parse().expect("numeric pid"),
                extra: extra.to_string(),
                child,
            });
        }
        let out = child.wait_with_output().expect("fdzoo exits");
        let why = format!("{line}{}", String::from_utf8_lossy(&out.stderr))
            .trim()
            .to_string();
        if out.status.code() == Some(77) {
            return Started::Unsupported(why);
        }
        panic!("fdzoo {case} failed ({}): {why}", out.status);
    }
}

impl Drop for Zoo {
    fn drop(&mut self) {
        // SIGTERM lets fdzoo remove its files and stop its peers itself.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Runs ckpt-watch with `args`.
pub fn run(binary: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .output()
        .expect("ckpt-watch runs")
}

/// Runs ckpt-watch's `cmd` while `tree` forks, once the scanner holds a BPF map (it has
/// listed what it scans and is loading), a child that opens an io_uring: a newcomer between
/// its listing and its iteration. The JSON report and the exit code.
pub fn judged_with_newcomer(
    cmd: &mut Command,
    tree: &mut Fdctl,
) -> (serde_json::Value, Option<i32>) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ckpt-watch starts");
    tree.send(&format!("after-bpf {}", child.id()));
    let out = child.wait_with_output().expect("ckpt-watch's output");
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (doc, out.status.code())
}

/// How many of a report's `processes` hold an io_uring judged `blocks`.
pub fn io_uring_holders(processes: &serde_json::Value) -> usize {
    processes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["files"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["kind"] == "io_uring" && f["verdict"] == "blocks")
        })
        .count()
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo` (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = left.split(' ').nth(4)?;
        right.starts_with("cgroup2 ").then(|| PathBuf::from(mount))
    })
}

/// A fresh 64-hex container id (from /dev/urandom), optionally starting with `prefix`.
pub fn container_id(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("read /dev/urandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[prefix.len()..])
}

/// A cgroup v2 subtree made for one test, laid out like an engine's (`docker-<id>.scope`,
/// `docker/<id>`, ...). Dropping it moves any process left inside back to the root cgroup and
/// removes the directories, on failure too.
pub struct TestCgroups {
    mount: PathBuf,
    /// The test's own top directory under the mount.
    pub top: PathBuf,
}

impl TestCgroups {
    /// `<cgroup2>/ckpt-test-<pid>-<name>.slice`.
    pub fn new(name: &str) -> TestCgroups {
        let mount = cgroup2_mount().expect("a cgroup2 hierarchy is mounted");
        let top = mount.join(format!("ckpt-test-{}-{name}.slice", std::process::id()));
        std::fs::create_dir_all(&top).expect("create the test cgroup (as root)");
        TestCgroups { mount, top }
    }

    /// Creates `rel` under the test's directory and returns its path.
    pub fn dir(&self, rel: &str) -> PathBuf {
        let dir = self.top.join(rel);
        std::fs::create_dir_all(&dir).expect("create a cgroup directory");
        dir
    }

    /// The path inside the hierarchy (`/ckpt-test-.../docker-<id>.scope`) of a directory.
    pub fn path_of(&self, dir: &Path) -> String {
        format!("/{}", dir.strip_prefix(&self.mount).unwrap().display())
    }

    /// Moves process `pid` (all its threads) into `dir`.
    pub fn add(dir: &Path, pid: u32) {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    }

    fn clean(&self, dir: &Path) {
        for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if sub.file_type().is_ok_and(|t| t.is_dir()) {
                self.clean(&sub.path());
            }
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = std::fs::write(self.mount.join("cgroup.procs"), pid);
        }
        // A process killed just before is in the cgroup until it is reaped (by its parent, or
        // by init once orphaned): the directory is busy until then, and was left behind.
        for _ in 0..100 {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return,
            }
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        let top = self.top.clone();
        self.clean(&top);
    }
}

/// A process started from a shell script, leading its own session; killed with its process
/// group on drop.
pub struct Sh {
    child: Child,
    pub pid: u32,
}

impl Sh {
    /// Runs `sh -c script` as `uid` (when given) in a new session, stdio on /dev/null.
    pub fn start(script: &str, uid: Option<u32>) -> Sh {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        let child = cmd.spawn().expect("sh starts");
        Sh {
            pid: child.id(),
            child,
        }
    }

    /// The pids of this process's children, after they appear (up to 2 s).
    pub fn children(&self, at_least: usize) -> Vec<u32> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid))
                .unwrap_or_default();
            let pids: Vec<u32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() >= at_least {
                return pids;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("process {} has fewer than {at_least} children", self.pid);
    }
}

impl Drop for Sh {
    fn drop(&mut self) {
        // The session's process group: the shell and what it started.
        unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Runs ckpt-watch with `args` and extra environment variables.
pub fn run_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("ckpt-watch runs")
}

/// A running `fdctl`, driven line by line.
pub struct Fdctl {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    pub pid: u32,
}

impl Fdctl {
    pub fn start(binary: &str) -> Self {
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fdctl starts");
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("fdctl says ready");
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .expect("ready line")
            .parse()
            .expect("pid");
        Fdctl {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Sends one command and returns the answer line.
    pub fn send(&mut self, command: &str) -> String {
        use std::io::Write;
        writeln!(self.stdin, "{command}").expect("fdctl reads commands");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("fdctl answers");
        assert!(!line.starts_with("error"), "fdctl {command}: {line}");
        line.trim().to_string()
    }

    /// Sends a command whose answer is `fd N`.
    pub fn open(&mut self, kind: &str) -> u32 {
        let reply = self.send(kind);
        reply
            .strip_prefix("fd ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{kind}: {reply}"))
    }
}

impl Drop for Fdctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` with its output collected; kills it after `timeout`.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(child.stdout.take().map(|s| Box::new(s) as _));
    let err = pipe(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{:?} {:?} still running after {timeout:?}",
                cmd.get_program(),
                cmd.get_args().collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// The directory holding the `criu` wrapper `cargo xtask criu4` writes: `CKPT_CRIU4_DIR`, else
/// `<target>/criu4/bin`. Fails (never skips) when it is missing or is not a working CRIU 4.
pub fn criu4_dir(fdzoo: &str) -> PathBuf {
    let dir = std::env::var_os("CKPT_CRIU4_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // fdzoo is <target>/<profile>/fdzoo.
            let target = Path::new(fdzoo).parent().and_then(Path::parent).unwrap();
            target.join("criu4/bin")
        });
    let criu = dir.join("criu");
    assert!(
        criu.exists(),
        "CRIU 4 is missing: no {}. Run `cargo xtask criu4` (`./x test` does) to fetch Debian \
         unstable's CRIU into target/criu4, or set CKPT_CRIU4_DIR to a directory holding a \
         CRIU 4 `criu`. Debian 12's CRIU 3.17 cannot dump anything on this kernel.",
        criu.display()
    );
    let out = run_timeout(
        Command::new(&criu).arg("--version"),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text(&out.stdout).contains("Version: 4."),
        "{} is not CRIU 4: {}",
        criu.display(),
        text(&out.stdout)
    );
    let out = run_timeout(Command::new(&criu).arg("check"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("Looks good."),
        "`{} check` does not pass: {said}",
        criu.display()
    );
    dir
}
