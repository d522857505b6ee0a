//! The container oracle (`shared/oracle/containers-podman.md`) run live: real podman
//! containers, real checkpoints. For each scenario a container is started (podman driving runc
//! with cgroupfs, an offline image of static busybox plus fdzoo and fdctl), then
//! `ckpt-watch preflight --container ID --engine podman` predicts and
//! `podman container checkpoint --leave-running --keep` decides, with Debian unstable's CRIU 4
//! (`cargo xtask criu4`) first on PATH: plain, else with `--tcp-established`, `--file-locks`,
//! both, else with the lines ckpt-watch says to put into `/etc/criu/runc.conf` (podman's only
//! way to other CRIU options) really put there. They must agree: the dump passes ⇔ `ok`;
//! passes only with X ⇔ `needs` naming X (and `--with X`, or the runc.conf lines in place,
//! make it `ok`); fails whatever ⇔ `blocks`.
//!
//! Then the same CRIU runs `ckpt-watch criu-hook` over RPC (runc.conf's `action-script`).
//!
//! Needs root, podman and runc (scripts/bootstrap.sh) and CRIU 4: without them it fails, it
//! does not skip. One test, so that the containers start together and are judged one at a time
//! (a checkpoint freezes its container; judging in parallel would only add noise).

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ckpt_tests::{ckpt_watch, criu4_dir, run_timeout, text};
use serde_json::Value;

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");
const FDCTL: &str = env!("CARGO_BIN_EXE_fdctl");
const IMAGE: &str = "localhost/ckpt-watch-test:latest";
/// Every test container carries `LABEL=<pid of the test>`, so that leftovers can be found.
const LABEL: &str = "ckpt-watch-test";
/// runc: crun refuses hybrid cgroups. cgroupfs: there is no systemd to ask (DESIGN.md §3).
const PODMAN: [&str; 4] = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"];
/// podman's default rlimits need CAP_SYS_RESOURCE, which root lacks here.
const RUN: [&str; 6] = [
    "run",
    "-d",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];
/// The checkpoint options podman offers, tried in this order when the plain dump fails.
const RETRIES: [&[&str]; 3] = [
    &["--tcp-established"],
    &["--file-locks"],
    &["--tcp-established", "--file-locks"],
];
/// podman runs several containers at once; two cores make more pointless.
const START_WORKERS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(45);
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the test runs with: the binary, PATH with CRIU 4 first, this run's label value.
struct Env {
    ckpt_watch: PathBuf,
    path: String,
    run_id: String,
}

impl Env {
    fn podman(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("podman");
        cmd.args(PODMAN).args(args).env("PATH", &self.path);
        run_timeout(&mut cmd, PODMAN_TIMEOUT)
            .unwrap_or_else(|e| panic!("podman {}: {e}", args.join(" ")))
    }

    /// `ckpt-watch preflight ARGS --json` with CRIU 4 on PATH (it picks the profile from it).
    fn preflight(&self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = Command::new(&self.ckpt_watch);
        cmd.arg("preflight")
            .args(args)
            .arg("--json")
            .env("PATH", &self.path);
        let out = run_timeout(&mut cmd, PODMAN_TIMEOUT)?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "preflight {args:?}: no JSON ({e}), exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }
}

fn require_tools() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the container tests run podman as root"
    );
    for (tool, package) in [("podman", "podman"), ("runc", "runc"), ("tar", "tar")] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
        assert!(
            found,
            "{tool} is not installed: run scripts/bootstrap.sh (apt package {package})"
        );
    }
}

/// A directory of this test's own, removed on drop (after the containers that bind-mount it).
struct WorkDir(tempfile::TempDir);

impl WorkDir {
    fn new() -> WorkDir {
        let dir = tempfile::Builder::new()
            .prefix("ckpt-containers-")
            .tempdir()
            .expect("create the work directory");
        // 0755 as before, not tempfile's 0700: podman, runc and CRIU reach the image's root,
        // the bind mounts and the hook below it, not always as the host's root (user namespaces).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the work directory to others");
        WorkDir(dir)
    }

    fn sub(&self, name: &str) -> PathBuf {
        let dir = self.0.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a host directory");
        dir
    }
}

/// Removes every container of this run (by label: those whose `podman run` failed halfway
/// too), and the image, on drop: after success, failure or panic.
struct Cleanup<'a> {
    env: &'a Env,
}

impl Cleanup<'_> {
    fn remove_labelled(env: &Env, filter: &str) {
        let ids = env.podman(&["ps", "-aq", "--filter", filter]);
        let ids: Vec<String> = text(&ids.stdout).lines().map(str::to_string).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0"];
            args.extend(ids.iter().map(String::as_str));
            env.podman(&args);
        }
    }

    /// Containers left by earlier runs that died without cleaning up (their pid is gone).
    fn stale(env: &Env) {
        let out = env.podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={LABEL}"),
            "--format",
            &format!("{{{{index .Labels \"{LABEL}\"}}}}"),
        ]);
        for run in text(&out.stdout).lines() {
            if !Path::new("/proc").join(run).exists() {
                Self::remove_labelled(env, &format!("label={LABEL}={run}"));
            }
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        Self::remove_labelled(self.env, &format!("label={LABEL}={}", self.env.run_id));
        let _ = self.env.podman(&["rmi", "-f", IMAGE]);
    }
}

/// Copies `binary` and the shared libraries `ldd` names into `root`, at the same paths.
fn install_with_libs(binary: &Path, root: &Path) {
    let dest = root.join("bin").join(binary.file_name().unwrap());
    std::fs::copy(binary, &dest).expect("copy a test binary into the image");
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd runs");
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        // fs::copy follows symlinks: the loader's link becomes the file itself.
        std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
}

/// The image: Debian's static busybox (with its applet links), fdzoo and fdctl with their
/// libraries, imported offline.
fn build_image(env: &Env, work: &WorkDir) {
    let root = work.sub("rootfs");
    for d in ["bin", "tmp", "proc", "sys", "dev", "etc", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("static busybox (apt busybox-static, scripts/bootstrap.sh)");
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    install_with_libs(Path::new(FDZOO), &root);
    install_with_libs(Path::new(FDCTL), &root);
    let script = format!(
        "tar -C '{}' -c . | podman import - {IMAGE} >/dev/null",
        root.display()
    );
    let out = run_timeout(
        Command::new("sh")
            .args(["-c", &script])
            .env("PATH", &env.path),
        PODMAN_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "podman import: {}", text(&out.stderr));
}

/// When a container counts as ready.
enum Ready {
    /// At least this many lines of its log contain the marker.
    Log(&'static str, usize),
    /// A TCP socket listens on the port (host network).
    Listening(u16),
}

/// What the host does once the container is ready, before it is judged.
enum Then {
    Nothing,
    /// Connect to the port and stay connected; done when the listener is gone (accepted).
    ConnectTcp(u16),
    /// Accept the container's connection to this listener and keep it.
    AcceptUnix(UnixListener),
    /// `podman exec -d` this command; done when the container has one process more.
    Exec(&'static [&'static str]),
}

struct Scenario {
    name: &'static str,
    /// The oracle table's result, for scenarios it has: `pass`, `needs X`, `fail`.
    oracle: Option<&'static str>,
    options: Vec<String>,
    command: Vec<String>,
    ready: Ready,
    then: Then,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `fdzoo --no-janitor --dir DIR CASE`: one fd kind held, READY on stdout (the log).
fn fdzoo(dir: &str, case: &str) -> Vec<String> {
    strings(&["/bin/fdzoo", "--no-janitor", "--dir", dir, case])
}

fn sh(script: &str) -> Vec<String> {
    strings(&["/bin/sh", "-c", script])
}

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

const SLEEP: &str = "echo READY; exec sleep 1000000";

fn scenarios(work: &WorkDir) -> Vec<Scenario> {
    let none = || strings(&["--network", "none"]);
    let with = |extra: &[&str]| {
        let mut o = none();
        o.extend(strings(extra));
        o
    };
    let mut list = Vec::new();
    let mut add = |name, oracle, options, command, ready, then| {
        list.push(Scenario {
            name,
            oracle,
            options,
            command,
            ready,
            then,
        })
    };

    // The oracle table's rows.
    let r = || Ready::Log("READY", 1);
    add("sleep", Some("pass"), none(), sh(SLEEP), r(), Then::Nothing);
    add(
        "memfd",
        Some("pass"),
        none(),
        fdzoo("/tmp", "memfd"),
        r(),
        Then::Nothing,
    );
    add(
        "deleted-small",
        Some("pass"),
        none(),
        fdzoo("/tmp", "reg_deleted_small"),
        r(),
        Then::Nothing,
    );
    let ext = work.sub("ext");
    std::fs::copy("/bin/busybox", ext.join("busybox")).unwrap();
    add(
        "binary-on-bind-mount",
        Some("pass"),
        with(&["-v", &format!("{}:/ext:ro", ext.display())]),
        strings(&[
            "/ext/busybox",
            "sh",
            "-c",
            "echo READY; exec /ext/busybox sleep 1000000",
        ]),
        r(),
        Then::Nothing,
    );
    let port = free_port();
    add(
        "tcp-listen-host",
        Some("pass"),
        strings(&["--network", "host"]),
        strings(&["nc", "-l", "-p", &port.to_string()]),
        Ready::Listening(port),
        Then::Nothing,
    );
    let port = free_port();
    // nc's stdin is a pipe that never ends, so that it keeps the connection.
    add(
        "tcp-est-host",
        Some("needs --tcp-established"),
        strings(&["--network", "host"]),
        sh(&format!("sleep 1000000 | nc -l -p {port}")),
        Ready::Listening(port),
        Then::ConnectTcp(port),
    );
    let lock = work.sub("lock");
    add(
        "flock-bind",
        Some("needs --file-locks"),
        with(&["-v", &format!("{}:/lock", lock.display())]),
        fdzoo("/lock", "flock_ex"),
        r(),
        Then::Nothing,
    );
    // Podman's seccomp profile refuses io_uring_setup and perf_event_open.
    add(
        "io-uring",
        Some("fail"),
        with(&["--security-opt", "seccomp=unconfined"]),
        fdzoo("/tmp", "io_uring"),
        r(),
        Then::Nothing,
    );
    // perf_event_paranoid 2 wants CAP_PERFMON for a counter that includes the kernel.
    add(
        "perf-event",
        Some("fail"),
        with(&[
            "--security-opt",
            "seccomp=unconfined",
            "--cap-add",
            "CAP_PERFMON",
        ]),
        fdzoo("/tmp", "perf_event"),
        r(),
        Then::Nothing,
    );
    add(
        "dev-fuse",
        Some("fail"),
        with(&["--device", "/dev/fuse"]),
        fdzoo("/tmp", "dev_fuse"),
        r(),
        Then::Nothing,
    );
    add(
        "sysv-shm-ipc-host",
        Some("fail"),
        with(&["--ipc", "host"]),
        fdzoo("/tmp", "sysv_shm_attached"),
        r(),
        Then::Nothing,
    );
    let sock = work.sub("sock");
    let listener = UnixListener::bind(sock.join("s")).expect("bind the host's unix listener");
    // fdctl's stdin stays open (sleep holds the pipe), so it keeps running.
    add(
        "unix-host-peer",
        Some("fail"),
        strings(&["-v", &format!("{}:/sock", sock.display())]),
        sh("(echo 'unix /sock/s'; exec sleep 1000000) | exec /bin/fdctl"),
        Ready::Log("fd ", 1),
        Then::AcceptUnix(listener),
    );

    // Beyond the table.
    add(
        "terminal",
        None,
        with(&["-t"]),
        sh(SLEEP),
        r(),
        Then::Nothing,
    );
    add(
        "exec-session",
        None,
        none(),
        sh(SLEEP),
        r(),
        Then::Exec(&["sleep", "999999"]),
    );
    add(
        "pid-host",
        None,
        with(&["--pid", "host"]),
        sh(SLEEP),
        r(),
        Then::Nothing,
    );
    add(
        "shell-children",
        None,
        none(),
        sh("sleep 1000000 | cat & sh -c 'sleep 1000000; :' & echo READY; wait"),
        r(),
        Then::Nothing,
    );
    add(
        "deleted-large",
        None,
        none(),
        fdzoo("/tmp", "reg_deleted_big"),
        r(),
        Then::Nothing,
    );
    // The `org.criu.config` annotation: runc hands CRIU that file after its RPC options, or
    // no file when it is empty (then only default.conf, read before them, is left).
    let special = work.sub("criu-config").join("special.conf");
    add(
        "deleted-large-annotated",
        None,
        with(&[
            "--annotation",
            &format!("org.criu.config={}", special.display()),
        ]),
        fdzoo("/tmp", "reg_deleted_big"),
        r(),
        Then::Nothing,
    );
    add(
        "deleted-large-no-runc-file",
        None,
        with(&["--annotation", "org.criu.config="]),
        fdzoo("/tmp", "reg_deleted_big"),
        r(),
        Then::Nothing,
    );
    add(
        "inotify-overlay",
        None,
        none(),
        fdzoo("/tmp", "inotify_watch"),
        r(),
        Then::Nothing,
    );
    add(
        "anon-fds",
        None,
        none(),
        sh("for c in eventfd epoll_timerfd timerfd_armed signalfd; do \
              /bin/fdzoo --no-janitor --dir /tmp $c & done; wait"),
        Ready::Log("READY", 4),
        Then::Nothing,
    );
    add(
        "50-processes",
        None,
        none(),
        sh("i=1; while [ $i -lt 50 ]; do sleep 1000000 & i=$((i+1)); done; echo READY; wait"),
        r(),
        Then::Nothing,
    );
    list
}

/// A container started and ready, with what the host holds for it.
struct Live {
    name: &'static str,
    oracle: Option<&'static str>,
    id: String,
    /// podman's userdata directory, where a kept `dump.log` is.
    static_dir: PathBuf,
    /// Host ends (TCP, unix) that must stay open while the container is judged.
    _held: Vec<Box<dyn Send>>,
}

/// Pids whose cgroup names the container (`libpod-<id>`).
fn procs_of(id: &str) -> Vec<u32> {
    let needle = format!("libpod-{id}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(&needle))
        })
        .collect()
}

/// Whether a TCP socket of the host's network namespace listens on `port`.
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
            })
    })
}

/// Polls `done` until it holds; an error after READY_TIMEOUT.
fn wait_for(what: &str, mut done: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !done()? {
        if Instant::now() > deadline {
            return Err(format!("not ready after {READY_TIMEOUT:?}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn start(env: &Env, sc: Scenario) -> Result<Live, String> {
    let name = format!("ckpt-test-{}-{}", env.run_id, sc.name);
    let label = format!("{LABEL}={}", env.run_id);
    let mut args: Vec<&str> = RUN.to_vec();
    args.extend(["--name", &name, "--label", &label]);
    args.extend(sc.options.iter().map(String::as_str));
    args.push(IMAGE);
    args.extend(sc.command.iter().map(String::as_str));
    let out = env.podman(&args);
    if !out.status.success() {
        return Err(format!("podman run: {}", text(&out.stderr)));
    }
    let id = text(&out.stdout);
    let logs = || text(&env.podman(&["logs", &id]).stdout);
    let running = || {
        let out = env.podman(&["inspect", "-f", "{{.State.Running}}", &id]);
        text(&out.stdout) == "true"
    };
    match &sc.ready {
        Ready::Log(marker, n) => wait_for(&format!("{n} × {marker:?} in its log"), || {
            let log = logs();
            if log.lines().filter(|l| l.contains(marker)).count() >= *n {
                return Ok(true);
            }
            if running() {
                Ok(false)
            } else {
                Err(format!("the container exited; its log: {log}"))
            }
        })?,
        Ready::Listening(port) => wait_for(&format!("a listener on port {port}"), || {
            if listening(*port) {
                Ok(true)
            } else if running() {
                Ok(false)
            } else {
                Err(format!("the container exited; its log: {}", logs()))
            }
        })?,
    }
    let mut held: Vec<Box<dyn Send>> = Vec::new();
    match sc.then {
        Then::Nothing => {}
        Then::ConnectTcp(port) => {
            let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            held.push(Box::new(stream));
            // busybox nc closes its listener once it has accepted.
            wait_for("nc accepting the connection", || Ok(!listening(port)))?;
        }
        Then::AcceptUnix(listener) => {
            listener.set_nonblocking(true).unwrap();
            wait_for("the container connecting to the host's socket", || {
                match listener.accept() {
                    Ok((stream, _)) => held.push(Box::new(stream)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.to_string()),
                }
                Ok(!held.is_empty())
            })?;
            held.push(Box::new(listener));
        }
        Then::Exec(command) => {
            let before = procs_of(&id).len();
            let mut args = vec!["exec", "-d", &id];
            args.extend(command);
            let out = env.podman(&args);
            if !out.status.success() {
                return Err(format!("podman exec: {}", text(&out.stderr)));
            }
            wait_for("the exec'd process", || Ok(procs_of(&id).len() > before))?;
        }
    }
    let dir = env.podman(&["inspect", "-f", "{{.StaticDir}}", &id]);
    Ok(Live {
        name: sc.name,
        oracle: sc.oracle,
        static_dir: PathBuf::from(text(&dir.stdout)),
        id,
        _held: held,
    })
}

/// Starts every scenario, a few at a time; each result in the scenarios' order.
fn start_all(env: &Env, scenarios: Vec<Scenario>) -> Vec<(&'static str, Result<Live, String>)> {
    let n = scenarios.len();
    let queue = Mutex::new(scenarios.into_iter().enumerate().collect::<Vec<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..START_WORKERS {
            s.spawn(|| {
                loop {
                    let Some((i, sc)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let name = sc.name;
                    let live = start(env, sc);
                    done.lock().unwrap().push((i, name, live));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, ..)| *i);
    assert_eq!(done.len(), n);
    done.into_iter()
        .map(|(_, name, live)| (name, live))
        .collect()
}

/// What podman's checkpoint did.
#[derive(Debug)]
enum Outcome {
    Pass,
    /// Failed plain, passed with these options.
    PassWith(&'static [&'static str]),
    /// Failed with every podman option, passed with these lines in these config files.
    PassWithConf(Vec<(String, String)>),
    Fail,
}

impl Outcome {
    fn show(&self) -> String {
        match self {
            Outcome::Pass => "pass".into(),
            Outcome::PassWith(o) => format!("needs {}", o.join(" ")),
            Outcome::PassWithConf(l) => {
                let lines: Vec<String> = l.iter().map(|(f, l)| format!("{f}: {l}")).collect();
                format!("needs {}", lines.join("; "))
            }
            Outcome::Fail => "fail".into(),
        }
    }
}

const RUNC_CONF: &str = "/etc/criu/runc.conf";

/// The config lines a report proposes, each with its file (`the line `X` in FILE (...`):
/// runc.conf, the file a container's `org.criu.config` annotation names, or default.conf.
fn conf_lines(c: &Value) -> Vec<(String, String)> {
    c["remedies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let how = r["how"].as_str()?.strip_prefix("the line `")?;
            let (line, rest) = how.split_once('`')?;
            let file = rest.strip_prefix(" in ")?.split(" (").next()?;
            file.starts_with('/')
                .then(|| (file.to_string(), line.to_string()))
        })
        .collect()
}

/// Config files holding the given lines for as long as this lives; what was in each before
/// comes back on drop, panics included. Test binaries run one after another, so no other test
/// reads them meanwhile.
struct ConfFiles {
    saved: Vec<(String, Option<Vec<u8>>)>,
}

impl ConfFiles {
    fn with(lines: &[(String, String)]) -> ConfFiles {
        let mut saved: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (file, _) in lines {
            if saved.iter().all(|(f, _)| f != file) {
                saved.push((file.clone(), std::fs::read(file).ok()));
            }
        }
        for (file, _) in &saved {
            let text: Vec<&str> = lines
                .iter()
                .filter(|(f, _)| f == file)
                .map(|(_, l)| l.as_str())
                .collect();
            let path = Path::new(file);
            std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir for a config file");
            std::fs::write(path, format!("{}\n", text.join("\n"))).expect("write a config file");
        }
        ConfFiles { saved }
    }

    fn runc_conf(lines: &[String]) -> ConfFiles {
        let lines: Vec<(String, String)> = lines
            .iter()
            .map(|l| (RUNC_CONF.to_string(), l.clone()))
            .collect();
        ConfFiles::with(&lines)
    }
}

impl Drop for ConfFiles {
    fn drop(&mut self) {
        for (file, text) in &self.saved {
            let _ = match text {
                Some(text) => std::fs::write(file, text),
                None => std::fs::remove_file(file),
            };
        }
    }
}

/// CRIU's first error line in a dump.log, without its source position. CRIU's complaint that
/// it cannot raise its own RLIMIT_NOFILE (no CAP_SYS_RESOURCE here) does not stop a dump.
fn first_error(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("Error (") && !l.contains("Can't setup RLIMIT_NOFILE for self"))
        .map(|l| {
            let msg = l.split_once("): ").map_or(l, |(_, msg)| msg);
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .next()
}

/// One `podman container checkpoint --leave-running --keep [options]`: passed, or why not.
fn checkpoint(env: &Env, live: &Live, options: &[&str]) -> Result<(), String> {
    let log = live.static_dir.join("dump.log");
    let _ = std::fs::remove_file(&log);
    let mut args = vec!["container", "checkpoint", "--leave-running", "--keep"];
    args.extend(options);
    args.push(&live.id);
    let out = env.podman(&args);
    if out.status.success() {
        return Ok(());
    }
    let criu = std::fs::read_to_string(&log)
        .ok()
        .and_then(|l| first_error(&l));
    Err(criu.unwrap_or_else(|| {
        let podman = text(&out.stderr);
        format!(
            "(no CRIU error) podman: {}",
            podman.lines().last().unwrap_or("")
        )
    }))
}

/// `ckpt-watch criu-hook` over RPC: with runc.conf's `action-script` line, the CRIU that runc
/// drives runs the hook at pre-dump. It must stop the io_uring container (blocks) and the
/// locked one until podman passes `--file-locks` (read from runc's command line), before CRIU
/// seizes anything, and let the plain one through.
fn check_hook(env: &Env, work: &WorkDir, lives: &[&Live]) -> Vec<String> {
    let hook = work.sub("hook").join("criu-hook");
    std::os::unix::fs::symlink(&env.ckpt_watch, &hook).expect("link the hook");
    let _conf = ConfFiles::runc_conf(&[format!("action-script {}", hook.display())]);
    let cases: [(&str, &[&str], &str); 4] = [
        ("io-uring", &[], "blocks"),
        ("flock-bind", &[], "needs"),
        ("flock-bind", &["--file-locks"], "ok"),
        ("sleep", &[], "ok"),
    ];
    let mut problems = Vec::new();
    for (name, options, expected) in cases {
        let Some(live) = lives.iter().find(|l| l.name == name) else {
            problems.push(format!("criu-hook: no live {name} container"));
            continue;
        };
        let result = checkpoint(env, live, options);
        let log = std::fs::read_to_string(live.static_dir.join("dump.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let verdict = lines
            .iter()
            .position(|l| l.starts_with("ckpt-watch: the dump of tree"));
        let seized = lines.iter().position(|l| l.contains("Seiz"));
        let said = verdict.map_or("no verdict from the hook", |i| lines[i]);
        let stops = expected != "ok";
        // runc's parent is Podman: the remedy is Podman's own flag.
        let remedy = expected != "needs"
            || log.contains("to pass --file-locks: `podman container checkpoint --file-locks`");
        let ok = remedy
            && said.contains(&format!(": {expected}"))
            && result.is_ok() != stops
            && verdict.is_some_and(|v| seized.is_none_or(|s| v < s))
            && (!stops || (seized.is_none() && log.contains("Pre dump script failed")));
        if !ok {
            problems.push(format!(
                "criu-hook: {name} {options:?}: expected {expected}; checkpoint {result:?}; hook said `{said}`; seized at line {seized:?}, verdict at {verdict:?}"
            ));
        }
    }
    problems
}

/// The plain checkpoint, then each retry until one passes, then the runc.conf lines the report
/// proposes; and the plain one's error.
fn outcome(env: &Env, live: &Live, conf_lines: &[(String, String)]) -> (Outcome, String) {
    let Err(error) = checkpoint(env, live, &[]) else {
        return (Outcome::Pass, String::new());
    };
    for options in RETRIES {
        if checkpoint(env, live, options).is_ok() {
            return (Outcome::PassWith(options), error);
        }
    }
    if !conf_lines.is_empty() {
        let _conf = ConfFiles::with(conf_lines);
        if checkpoint(env, live, &[]).is_ok() {
            return (Outcome::PassWithConf(conf_lines.to_vec()), error);
        }
    }
    (Outcome::Fail, error)
}

/// Everything of a container's report that is not ok, one line each.
fn not_ok(c: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let item = |who: &str, v: &Value| {
        format!(
            "{who} {} {} {}: {}{}{}",
            v["kind"].as_str().unwrap_or(""),
            v["verdict"].as_str().unwrap_or("?"),
            v["rule"].as_str().unwrap_or(""),
            v["reason"].as_str().unwrap_or(""),
            v["what"]
                .as_str()
                .map(|w| format!(" [{w}]"))
                .unwrap_or_default(),
            match v["options"].as_array() {
                Some(o) if !o.is_empty() => format!(" options {}", Value::Array(o.clone())),
                _ => String::new(),
            }
        )
    };
    for e in c["environment"].as_array().into_iter().flatten() {
        if e["verdict"] != "ok" {
            lines.push(item("environment", e));
        }
    }
    for p in c["processes"].as_array().into_iter().flatten() {
        let who = format!("pid {} ({})", p["pid"], p["comm"].as_str().unwrap_or(""));
        for key in ["task", "files", "mappings"] {
            for v in p[key].as_array().into_iter().flatten() {
                if v["verdict"] != "ok" {
                    let at = v["fd"]
                        .as_i64()
                        .map(|fd| format!(" fd {fd}"))
                        .or_else(|| v["range"].as_str().map(|r| format!(" {r}")))
                        .unwrap_or_default();
                    lines.push(item(&format!("{who}{at}"), v));
                }
            }
        }
    }
    if let Some(left) = c["left_out"].as_array().filter(|l| !l.is_empty()) {
        lines.push(format!("left out: {}", Value::Array(left.clone())));
    }
    lines
}

/// Whether the report offers `option` as a remedy: in an `options` list or a reason, outside
/// the options already in force.
fn names(c: &Value, option: &str) -> bool {
    fn walk(v: &Value, option: &str) -> bool {
        match v {
            Value::Object(map) => map
                .iter()
                .filter(|(k, _)| k.as_str() != "options_in_force")
                .any(|(k, v)| match (k.as_str(), v) {
                    ("reason", Value::String(s)) => s.contains(option),
                    ("options", Value::Array(a)) => a
                        .iter()
                        .any(|o| o.as_str().is_some_and(|o| o.contains(option))),
                    _ => walk(v, option),
                }),
            Value::Array(a) => a.iter().any(|v| walk(v, option)),
            _ => false,
        }
    }
    walk(c, option)
}

struct Row {
    name: &'static str,
    oracle: Option<&'static str>,
    podman: String,
    criu_error: String,
    verdict: String,
    agree: bool,
    /// Why they disagree, or what went wrong with the harness.
    detail: Vec<String>,
}

/// Predicts, checkpoints, compares.
fn judge(env: &Env, live: &Live) -> Row {
    let mut detail = Vec::new();
    let report = env.preflight(&["--container", &live.id[..12], "--engine", "podman"]);
    let container = match &report {
        Ok(doc) => {
            let all = doc["containers"].as_array().cloned().unwrap_or_default();
            if all.len() != 1 || all[0]["id"] != live.id.as_str() {
                detail.push(format!(
                    "--container {} did not select exactly {}: {:?}",
                    &live.id[..12],
                    live.id,
                    all.iter().map(|c| &c["id"]).collect::<Vec<_>>()
                ));
            }
            all.into_iter().find(|c| c["id"] == live.id.as_str())
        }
        Err(e) => {
            detail.push(e.clone());
            None
        }
    };
    let conf_lines = container.as_ref().map(conf_lines).unwrap_or_default();
    let (outcome, criu_error) = outcome(env, live, &conf_lines);
    let verdict = container
        .as_ref()
        .and_then(|c| c["verdict"].as_str())
        .unwrap_or("(none)")
        .to_string();
    let agree = match (&outcome, &container) {
        (_, None) => false,
        (Outcome::Pass, _) => verdict == "ok",
        (Outcome::Fail, _) => verdict == "blocks",
        (Outcome::PassWith(options), Some(c)) => {
            let named = options.iter().all(|o| names(c, o));
            if verdict == "needs" && !named {
                detail.push(format!("the report does not name {}", options.join(" ")));
            }
            // Given the options that made the dump pass, the prediction must be ok.
            let with = options.join(" ");
            let given = env.preflight(&[
                "--container",
                &live.id[..12],
                "--engine",
                "podman",
                "--with",
                &with,
            ]);
            let given = match given {
                Ok(doc) => doc["verdict"].as_str().unwrap_or("(none)").to_string(),
                Err(e) => e,
            };
            if given != "ok" {
                detail.push(format!("with --with \"{with}\" the verdict is {given}"));
            }
            verdict == "needs" && named && given == "ok"
        }
        (Outcome::PassWithConf(lines), Some(_)) => {
            // With the lines really in their files, ckpt-watch must read them and say ok.
            let _conf = ConfFiles::with(lines);
            let given = match env.preflight(&["--container", &live.id[..12], "--engine", "podman"])
            {
                Ok(doc) => doc["verdict"].as_str().unwrap_or("(none)").to_string(),
                Err(e) => e,
            };
            if given != "ok" {
                detail.push(format!("with {lines:?} written the verdict is {given}"));
            }
            verdict == "needs" && given == "ok"
        }
    };
    if !agree && let Some(c) = &container {
        let found = not_ok(c);
        if found.is_empty() {
            detail.push("every file, mapping and task check is ok".into());
        }
        detail.extend(found);
    }
    Row {
        name: live.name,
        oracle: live.oracle,
        podman: outcome.show(),
        criu_error,
        verdict,
        agree,
        detail,
    }
}

/// `preflight --all-containers` lists every test container, as podman's.
fn check_discovery(env: &Env, lives: &[&Live]) -> Vec<String> {
    let doc = match env.preflight(&["--all-containers"]) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("--all-containers: {e}")],
    };
    let listed = doc["containers"].as_array().cloned().unwrap_or_default();
    lives
        .iter()
        .filter_map(|live| {
            let found = listed.iter().find(|c| c["id"] == live.id.as_str());
            match found.map(|c| c["runtime"].as_str()) {
                Some(Some("podman")) => None,
                Some(other) => Some(format!(
                    "--all-containers lists {} ({}) with runtime {other:?}",
                    live.name,
                    &live.id[..12]
                )),
                None => Some(format!(
                    "--all-containers does not list {} ({})",
                    live.name,
                    &live.id[..12]
                )),
            }
        })
        .collect()
}

/// The host scan's verdict for each container workload, by full id.
fn host_scan_verdicts(env: &Env) -> Result<HashMap<String, String>, String> {
    let mut cmd = Command::new(&env.ckpt_watch);
    cmd.arg("--json").env("PATH", &env.path);
    let out = run_timeout(&mut cmd, PODMAN_TIMEOUT)?;
    let doc: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("host scan: no JSON ({e}): {}", text(&out.stderr)))?;
    Ok(doc["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["kind"] == "container")
        .filter_map(|w| Some((w["id"].as_str()?.into(), w["verdict"].as_str()?.into())))
        .collect())
}

/// The host scan judges each container as preflight does: by its engine's options and the
/// config file runc hands its CRIU.
fn check_scan(
    scanned: &Result<HashMap<String, String>, String>,
    rows: &[Row],
    lives: &[&Live],
) -> Vec<String> {
    let scanned = match scanned {
        Ok(s) => s,
        Err(e) => return vec![e.clone()],
    };
    rows.iter()
        .zip(lives)
        .filter_map(|(row, live)| match scanned.get(&live.id) {
            Some(v) if *v == row.verdict => None,
            other => Some(format!(
                "{}: the host scan says {other:?}, preflight {}",
                row.name, row.verdict
            )),
        })
        .collect()
}

fn print_table(rows: &[Row]) {
    let mut out = String::new();
    out.push_str(&format!(
        "\n{:<21} | {:<26} | {:<10} | {:<5} | {}\n",
        "scenario", "podman checkpoint", "ckpt-watch", "agree", "CRIU's first error"
    ));
    out.push_str(&format!("{}\n", "-".repeat(110)));
    for r in rows {
        // A result unlike the oracle table's means this machine or harness differs from it.
        let podman = match r.oracle {
            Some(o) if o != r.podman => format!("{} (oracle: {o})", r.podman),
            _ => r.podman.clone(),
        };
        out.push_str(&format!(
            "{:<21} | {:<26} | {:<10} | {:<5} | {}\n",
            r.name,
            podman,
            r.verdict,
            if r.agree { "yes" } else { "NO" },
            r.criu_error
        ));
    }
    let agree = rows.iter().filter(|r| r.agree).count();
    out.push_str(&format!("{agree} of {} agree\n", rows.len()));
    // Straight to stderr, past the test harness's capture: the table is the point of the test.
    let _ = std::io::stderr().write_all(out.as_bytes());
}

#[test]
fn podman_checkpoints_agree_with_preflight() {
    let started = Instant::now();
    require_tools();
    let criu = criu4_dir(FDZOO);
    let path = std::env::var("PATH").unwrap_or_default();
    let env = Env {
        ckpt_watch: ckpt_watch(FDZOO),
        path: format!("{}:{path}", criu.display()),
        run_id: std::process::id().to_string(),
    };
    // Declared first, dropped last: the containers bind-mount its directories.
    let work = WorkDir::new();
    Cleanup::stale(&env);
    let _cleanup = Cleanup { env: &env };
    build_image(&env, &work);

    let results = start_all(&env, scenarios(&work));
    let mut problems = Vec::new();
    let lives: Vec<&Live> = results
        .iter()
        .filter_map(|(name, r)| match r {
            Ok(live) => Some(live),
            Err(e) => {
                problems.push(format!("{name}: could not be set up: {e}"));
                None
            }
        })
        .collect();
    problems.extend(check_discovery(&env, &lives));
    // Before any checkpoint changes what the containers hold.
    let scanned = host_scan_verdicts(&env);
    let rows: Vec<Row> = lives.iter().map(|live| judge(&env, live)).collect();
    problems.extend(check_scan(&scanned, &rows, &lives));
    print_table(&rows);
    problems.extend(check_hook(&env, &work, &lives));
    for r in rows.iter().filter(|r| !r.agree) {
        problems.push(format!(
            "{}: podman {} ({}) but ckpt-watch says {}:\n      {}",
            r.name,
            r.podman,
            if r.criu_error.is_empty() {
                "the plain dump passed"
            } else {
                &r.criu_error
            },
            r.verdict,
            r.detail.join("\n      ")
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "{} containers in {:.0?}",
        rows.len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
