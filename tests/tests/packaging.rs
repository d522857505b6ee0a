//! What `./x package` ships, installed and run as shipped (`cargo xtask test` packages before
//! the suite; alone: `cargo xtask package && cargo test --release -p ckpt-tests --test
//! packaging`).
//!
//! - The Debian package, unpacked with `dpkg -x`: the binary names its version and commit, the
//!   `criu-hook` link CRIU runs, a man page for every command `--help` lists (each documenting
//!   that command's flags), completions, the unit, its documented defaults (every daemon flag),
//!   the changelog.
//! - The packaged unit: its `CapabilityBoundingSet=`, `AmbientCapabilities=`, user, environment
//!   and `ExecStart=` are read from the file and the packaged binary runs under exactly those
//!   (`setpriv`, a non-root uid as `DynamicUser=` gives): it judges a real process as root does,
//!   and without any one of those capabilities it does not; the daemon serves `/healthz` and the
//!   same verdict.
//! - The image (`target/oci/ckpt-watch.tar`): `podman load`, then run as the packaged DaemonSet
//!   says — capabilities, user, read-only root, seccomp, host pid namespace, every hostPath
//!   volume, its limits, its arguments — and asked `/healthz` at every probe's path and port, on
//!   IPv4 and IPv6, and a verdict.
//!
//! Needs root, podman, runc and setpriv (scripts/bootstrap.sh); fails, never skips, without them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ckpt_tests::{Started, Zoo, budget, eventually};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;
use tempfile::TempDir;

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// A process holding a private mapping of a file on overlayfs: `ok` only when ckpt-watch can
/// open `/proc/PID/map_files` (CAP_CHECKPOINT_RESTORE), name its files (CAP_DAC_READ_SEARCH,
/// CAP_SYS_PTRACE), read kallsyms (CAP_SYSLOG) and load BPF (CAP_BPF, CAP_PERFMON).
const SUBJECT: &str = "mmap_overlay_private_nofd";
/// A uid no one has, as `DynamicUser=` would give (systemd picks from 61184–65519).
const DYNAMIC_UID: u32 = 61_234;
/// systemd's PATH for system services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// On this host only (DESIGN.md §3): podman drives runc over cgroupfs, and its default
/// rlimits need CAP_SYS_RESOURCE, which root lacks here. Nothing the DaemonSet says.
const PODMAN_HOST: [&str; 4] = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"];
const PODMAN_RLIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// `<target>`, from `<target>/<profile>/fdzoo`.
fn target_dir() -> PathBuf {
    Path::new(FDZOO)
        .parent()
        .and_then(Path::parent)
        .expect("fdzoo inside <target>/<profile>")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory removed on drop.
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ckpt-{name}-"))
        .tempdir()
        .unwrap()
}

/// The package built by `cargo xtask package`, unpacked.
struct Package {
    deb: PathBuf,
    dir: TempDir,
}

impl Package {
    fn unpack() -> Package {
        let arch = text(&run_ok(Command::new("dpkg").arg("--print-architecture")).into_bytes());
        let deb = target_dir().join(format!("debian/ckpt-watch_{VERSION}_{arch}.deb"));
        assert!(
            deb.exists(),
            "{} not built: run `cargo xtask package` first (`./x test` does)",
            deb.display()
        );
        let dir = scratch("package");
        run_ok(
            Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(dir.path().join("root")),
        );
        run_ok(
            Command::new("dpkg-deb")
                .arg("-e")
                .arg(&deb)
                .arg(dir.path().join("DEBIAN")),
        );
        // Others (a DynamicUser's uid) run the binary from here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Package { deb, dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A packaged file by its installed path.
    fn file(&self, installed: &str) -> PathBuf {
        self.root().join(installed.trim_start_matches('/'))
    }

    fn read(&self, installed: &str) -> String {
        let path = self.file(installed);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the package has no {installed}: {e}"))
    }

    fn gunzip(&self, installed: &str) -> String {
        let path = self.file(installed);
        assert!(path.exists(), "the package has no {installed}");
        run_ok(Command::new("gzip").arg("-dc").arg(path))
    }

    fn binary(&self) -> PathBuf {
        self.file("/usr/bin/ckpt-watch")
    }

    fn field(&self, name: &str) -> String {
        text(&run_ok(Command::new("dpkg-deb").arg("-f").arg(&self.deb).arg(name)).into_bytes())
    }

    fn yaml_docs(&self, installed: &str) -> Vec<Yaml> {
        yaml_docs(&self.read(installed))
    }
}

/// The documents of a YAML stream (split at `---` lines, as the deployment files are).
fn yaml_docs(text: &str) -> Vec<Yaml> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml_ng::from_str::<Yaml>(d).expect("valid YAML"))
        .filter(|d| !d.is_null())
        .collect()
}

/// The subcommands `--help` lists (the `Commands:` section, `help` aside).
fn subcommands(binary: &Path) -> Vec<String> {
    let help = run_ok(Command::new(binary).arg("--help"));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags a `--help` text documents, `--help` and `--version` aside.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| l.split([' ', ',', '=', '<', '[']))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .filter(|w| *w != "--help" && *w != "--version")
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_holds_binary_man_pages_completions_unit_and_defaults() {
    let pkg = Package::unpack();
    assert_eq!(pkg.field("Package"), "ckpt-watch");
    assert_eq!(pkg.field("Version"), VERSION);
    assert!(
        pkg.field("Depends").contains("libc6"),
        "{}",
        pkg.field("Depends")
    );

    // The version and the commit.
    let binary = pkg.binary();
    let version = text(&run_ok(Command::new(&binary).arg("--version")).into_bytes());
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout))
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(version, format!("ckpt-watch {VERSION} (commit {commit})"));

    // CRIU's action script: a link that runs the binary as `ckpt-watch criu-hook`, where
    // `criu-hook --help` says to point CRIU's config.
    let hook = pkg.file("/usr/lib/ckpt-watch/criu-hook");
    assert_eq!(
        std::fs::canonicalize(&hook).expect("the criu-hook link resolves"),
        std::fs::canonicalize(&binary).unwrap()
    );
    let hook_help = run_ok(Command::new(&hook).arg("--help"));
    assert!(
        hook_help.contains("action-script /usr/lib/ckpt-watch/criu-hook"),
        "{hook_help}"
    );

    // A man page per command, from the same definitions as --help: each documents every flag.
    let commands = subcommands(&binary);
    for must in ["audit", "preflight", "daemon"] {
        assert!(
            commands.iter().any(|c| c == must),
            "--help lists no {must}: {commands:?}"
        );
    }
    let mut pages = vec![(String::from("ckpt-watch"), vec![])];
    pages.extend(
        commands
            .iter()
            .map(|c| (format!("ckpt-watch-{c}"), vec![c.as_str()])),
    );
    for (page, args) in &pages {
        let man = pkg.gunzip(&format!("/usr/share/man/man1/{page}.1.gz"));
        assert!(man.contains(".TH"), "{page}.1 is not a man page");
        let man = man.replace('\\', "");
        let help = run_ok(Command::new(&binary).args(args).arg("--help"));
        for flag in long_flags(&help) {
            assert!(man.contains(&flag), "{page}.1 does not document {flag}");
        }
    }

    // Completions for bash (checked by bash itself), zsh and fish, naming every command.
    let bash = "/usr/share/bash-completion/completions/ckpt-watch";
    run_ok(Command::new("bash").arg("-n").arg(pkg.file(bash)));
    for file in [
        bash,
        "/usr/share/zsh/vendor-completions/_ckpt-watch",
        "/usr/share/fish/vendor_completions.d/ckpt-watch.fish",
    ] {
        let script = pkg.read(file);
        for c in &commands {
            assert!(script.contains(c.as_str()), "{file} does not complete {c}");
        }
    }

    // The unit starts the packaged binary with the packaged defaults, a conffile that
    // documents every daemon flag.
    let unit = Unit::parse(&pkg.read("/lib/systemd/system/ckpt-watch.service"));
    let env = unit.environment(&pkg);
    let exec = unit.exec_start(&env);
    assert_eq!(exec[..2], ["/usr/bin/ckpt-watch", "daemon"], "{exec:?}");
    let conffiles = std::fs::read_to_string(pkg.dir.path().join("DEBIAN/conffiles")).unwrap();
    assert!(conffiles.lines().any(|l| l == "/etc/default/ckpt-watch"));
    let defaults = pkg.read("/etc/default/ckpt-watch");
    let daemon_help = run_ok(Command::new(&binary).args(["daemon", "--help"]));
    for flag in long_flags(&daemon_help) {
        assert!(
            defaults.contains(&flag),
            "/etc/default/ckpt-watch does not document {flag}"
        );
    }
    // The unit as systemd reads it: no key unknown or unparsable.
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", "--root"])
        .arg(pkg.root())
        .arg("ckpt-watch.service"));
    let warnings = text(&security.stderr);
    assert!(
        text(&security.stdout).contains("Overall exposure level") && warnings.is_empty(),
        "systemd-analyze security: {warnings}"
    );

    let changelog = pkg.gunzip("/usr/share/doc/ckpt-watch/changelog.gz");
    assert!(
        changelog.contains(&format!("## {VERSION}")),
        "the changelog lacks {VERSION}"
    );
}

#[test]
fn the_deployment_files_agree_with_each_other() {
    let pkg = Package::unpack();
    let examples = "/usr/share/doc/ckpt-watch/examples";
    // The unit and the DaemonSet grant one set of capabilities.
    let unit = Unit::parse(&pkg.read("/lib/systemd/system/ckpt-watch.service"));
    let ds = DaemonSet::read(&pkg);
    assert_eq!(
        unit.capabilities("CapabilityBoundingSet"),
        ds.capabilities()
    );
    // The operator's PrometheusRule is the plain rule file.
    let plain = &pkg.yaml_docs(&format!("{examples}/prometheus-rules.yaml"))[0]["groups"];
    let operator = pkg.yaml_docs(&format!("{examples}/servicemonitor.yaml"));
    let rule = operator
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    assert_eq!(
        &rule["spec"]["groups"], plain,
        "servicemonitor.yaml's rules drifted"
    );
    let monitor = operator
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(ds.container()["ports"][0]["name"], "metrics");
}

/// A systemd unit's `[Service]` settings, each key's values in order.
struct Unit(BTreeMap<String, Vec<String>>);

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut service = BTreeMap::<String, Vec<String>>::new();
        let mut section = "";
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if section == "[Service]"
                && !line.starts_with('#')
                && let Some((k, v)) = line.split_once('=')
            {
                service
                    .entry(k.to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
        Unit(service)
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.last()).map(String::as_str)
    }

    /// A capability list (cumulative across lines) as setpriv names them: `bpf`, `syslog`.
    fn capabilities(&self, key: &str) -> BTreeSet<String> {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
            .collect()
    }

    /// The environment systemd gives the service: its PATH, `Environment=` and the
    /// `EnvironmentFile=`s (read from the package).
    fn environment(&self, pkg: &Package) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([("PATH".to_string(), SYSTEMD_PATH.to_string())]);
        for file in self.0.get("EnvironmentFile").into_iter().flatten() {
            for line in pkg.read(file.trim_start_matches('-')).lines() {
                let line = line.trim();
                if line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    env.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        for assignment in self.0.get("Environment").into_iter().flatten() {
            if let Some((k, v)) = assignment.split_once('=') {
                env.insert(k.to_string(), v.to_string());
            }
        }
        env
    }

    /// `ExecStart=` split into words, `$VAR` expanded into words as systemd does.
    fn exec_start(&self, env: &BTreeMap<String, String>) -> Vec<String> {
        self.one("ExecStart")
            .expect("ExecStart=")
            .split_whitespace()
            .flat_map(|w| match w.strip_prefix('$') {
                Some(var) => env
                    .get(var.trim_matches(['{', '}']))
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default(),
                None => vec![w.to_string()],
            })
            .collect()
    }

    /// The uid the service runs as: an unused one for `DynamicUser=yes`, else root (the
    /// unit names no other user).
    fn uid(&self) -> u32 {
        match (self.one("DynamicUser"), self.one("User")) {
            (Some("yes"), _) => DYNAMIC_UID,
            (_, None | Some("root")) => 0,
            (_, Some(user)) => panic!("the unit runs as {user}: teach this test that user"),
        }
    }
}

/// `setpriv` to `uid` with exactly `caps` (bounding, inheritable and ambient), no new
/// privileges, then `binary`.
fn limited(uid: u32, caps: &BTreeSet<String>, binary: &Path) -> Command {
    let set = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("setpriv");
    if uid != 0 {
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups");
    }
    cmd.arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg("--no-new-privs")
        .arg("--")
        .arg(binary);
    cmd
}

fn start_subject() -> Zoo {
    match Zoo::start(FDZOO, SUBJECT) {
        Started::Ready(zoo) => zoo,
        Started::Unsupported(why) => panic!("fdzoo {SUBJECT} cannot run here: {why}"),
    }
}

/// `ckpt-watch ARGS --pid PID --json` as `cmd` runs it: exit status and output.
fn judge(mut cmd: Command, env: &BTreeMap<String, String>, args: &[String], pid: u32) -> Output {
    cmd.env_clear()
        .envs(env)
        .args(args)
        .args(["--pid", &pid.to_string(), "--json"]);
    run(&mut cmd)
}

fn verdict_of(out: &Output) -> String {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stderr)));
    v["verdict"].as_str().expect("a verdict").to_string()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.1: status and body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: ckpt-watch\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {reply:?}"))?;
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// `get` from inside the network namespace of process `pid` (a container's).
fn get_in(pid: u32, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
    let path = path.to_string();
    std::thread::spawn(move || {
        // SAFETY: this thread alone moves into the namespace, and ends there.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        get(addr, &path)
    })
    .join()
    .expect("the GET thread")
}

/// The workload whose root is `pid` in a `/workloads` document, and its verdict.
fn workload_verdict(body: &str, pid: u32) -> Option<String> {
    let list: Value = serde_json::from_str(body).ok()?;
    list.as_array()?
        .iter()
        .find(|w| w["root"] == pid)
        .and_then(|w| w["verdict"].as_str())
        .map(str::to_string)
}

/// Polls `fetch` until `/healthz` is 200 and `ok`, then until `/workloads` judged `pid`.
fn healthy_then_verdict(
    what: &str,
    pid: u32,
    mut fetch: impl FnMut(&str) -> Result<(u16, String), String>,
    mut alive: impl FnMut() -> Result<(), String>,
) -> String {
    let mut last = String::new();
    let up = eventually(budget(Duration::from_secs(40)), || {
        if let Err(dead) = alive() {
            panic!("{what} exited: {dead}");
        }
        match fetch("/healthz") {
            Ok((200, body)) if body.contains(r#""status":"ok""#) => true,
            other => {
                last = format!("{other:?}");
                false
            }
        }
    });
    assert!(up, "{what}: /healthz never answered 200 ok; last: {last}");
    let mut verdict = None;
    let judged = eventually(budget(Duration::from_secs(20)), || {
        verdict = fetch("/workloads")
            .ok()
            .and_then(|(_, body)| workload_verdict(&body, pid));
        verdict.is_some()
    });
    assert!(
        judged,
        "{what}: /workloads never listed the workload of pid {pid}"
    );
    verdict.unwrap()
}

/// A daemon started for a test, killed if the test fails before stopping it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn systemd_unit_capabilities_are_exactly_what_ckpt_watch_needs() {
    let pkg = Package::unpack();
    let binary = pkg.binary();
    let unit = Unit::parse(&pkg.read("/lib/systemd/system/ckpt-watch.service"));
    let caps = unit.capabilities("CapabilityBoundingSet");
    assert_eq!(
        caps,
        unit.capabilities("AmbientCapabilities"),
        "a non-root service holds only its ambient capabilities"
    );
    assert_eq!(unit.one("NoNewPrivileges"), Some("yes"));
    let uid = unit.uid();
    let env = unit.environment(&pkg);
    let exec = unit.exec_start(&env);
    assert_eq!(exec[0], "/usr/bin/ckpt-watch");

    let zoo = start_subject();
    let full = judge(Command::new(&binary), &env, &[], zoo.pid);
    assert_eq!(verdict_of(&full), "ok", "as root: {}", text(&full.stdout));

    // Under the unit's capabilities, as its user: the same judgement, byte for byte.
    let as_unit = judge(limited(uid, &caps, &binary), &env, &[], zoo.pid);
    assert!(
        as_unit.status.success() && as_unit.stdout == full.stdout,
        "under {caps:?} as uid {uid} ({}): {}\n{}\nas root: {}",
        as_unit.status,
        text(&as_unit.stderr),
        text(&as_unit.stdout),
        text(&full.stdout)
    );
    // Without any one of them: not the same.
    for cap in &caps {
        let mut fewer = caps.clone();
        fewer.remove(cap);
        let out = judge(limited(uid, &fewer, &binary), &env, &[], zoo.pid);
        assert!(
            out.status != full.status || out.stdout != full.stdout,
            "CAP_{} is in the unit but ckpt-watch judged the same without it",
            cap.to_uppercase()
        );
    }

    // The issue's reproduction: root whose bounding set lacks CAP_SYSLOG is told to grant it,
    // not to be root.
    let mut no_syslog = caps.clone();
    no_syslog.remove("syslog");
    let out = judge(limited(0, &no_syslog, &binary), &env, &[], zoo.pid);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CAP_SYSLOG") && !err.contains("run as root"),
        "root without CAP_SYSLOG: {err}"
    );

    // The daemon as the unit starts it: healthy, and the same verdict.
    let out_dir = scratch("unit-alerts");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let port = free_port();
    let args = replace_flags(
        &exec[1..],
        &[
            ("--listen", format!("127.0.0.1:{port}")),
            (
                "--output",
                out_dir.path().join("alerts.jsonl").display().to_string(),
            ),
        ],
    );
    let mut cmd = limited(uid, &caps, &binary);
    cmd.env_clear()
        .envs(&env)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut daemon = Daemon(cmd.spawn().expect("the daemon starts"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let verdict = healthy_then_verdict(
        "the daemon under the unit's capabilities",
        zoo.pid,
        |path| get(addr, path),
        || match daemon.0.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                let _ = daemon
                    .0
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut err));
                Err(format!("{status}: {err}"))
            }
            _ => Ok(()),
        },
    );
    assert_eq!(verdict, verdict_of(&full));
    // SIGTERM (KillSignal=) detaches within TimeoutStopSec=.
    let stop = unit
        .one("TimeoutStopSec")
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .unwrap_or(90);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let mut status = None;
    let stopped = eventually(Duration::from_secs(stop), || {
        status = daemon.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        stopped,
        "the daemon outlived TimeoutStopSec={stop}s after SIGTERM"
    );
    assert!(status.unwrap().success(), "the daemon's exit: {status:?}");
}

/// `args` with the value of each flag in `with` replaced (`--flag V` or `--flag=V`).
fn replace_flags(args: &[String], with: &[(&str, String)]) -> Vec<String> {
    let mut out = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match with
            .iter()
            .find(|(f, _)| a == f || a.starts_with(&format!("{f}=")))
        {
            Some((flag, value)) => {
                if a == flag {
                    it.next();
                }
                out.push(format!("{flag}={value}"));
            }
            None => out.push(a.clone()),
        }
    }
    for (flag, value) in with {
        if !out.iter().any(|a| a.starts_with(&format!("{flag}="))) {
            out.push(format!("{flag}={value}"));
        }
    }
    out
}

/// The packaged DaemonSet's pod template.
struct DaemonSet(Yaml);

impl DaemonSet {
    fn read(pkg: &Package) -> DaemonSet {
        let docs = pkg.yaml_docs("/usr/share/doc/ckpt-watch/examples/daemonset.yaml");
        let ds = docs
            .into_iter()
            .find(|d| d["kind"] == "DaemonSet")
            .expect("a DaemonSet");
        DaemonSet(ds["spec"]["template"]["spec"].clone())
    }

    fn container(&self) -> &Yaml {
        let containers = self.0["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1, "one container");
        &containers[0]
    }

    fn security(&self) -> &Yaml {
        &self.container()["securityContext"]
    }

    /// `capabilities.add`, as setpriv names them; `drop` must be ALL.
    fn capabilities(&self) -> BTreeSet<String> {
        let caps = &self.security()["capabilities"];
        assert_eq!(
            caps["drop"][0], "ALL",
            "the DaemonSet drops every capability first"
        );
        caps["add"]
            .as_sequence()
            .expect("capabilities.add")
            .iter()
            .map(|c| c.as_str().expect("a name").to_ascii_lowercase())
            .collect()
    }

    fn strings(v: &Yaml) -> Vec<String> {
        v.as_sequence()
            .map(|s| s.iter().map(|a| a.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    /// `podman run` options for the pod as Kubernetes would make it.
    fn podman_options(&self, port_of: &mut BTreeMap<String, u16>) -> Vec<String> {
        let pod = &self.0;
        let c = self.container();
        let sec = self.security();
        let mut o: Vec<String> = vec![];
        assert_eq!(
            pod["hostPID"], true,
            "the daemon needs the host's pid namespace"
        );
        o.extend(["--pid".into(), "host".into()]);
        // The pod's own network namespace; no CNI here, so loopback only.
        assert_ne!(pod["hostNetwork"], true);
        o.extend(["--network".into(), "none".into()]);
        o.push("--cap-drop=all".into());
        o.push(format!(
            "--cap-add={}",
            self.capabilities()
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(",")
        ));
        if let Some(uid) = sec["runAsUser"].as_u64() {
            o.push(format!("--user={uid}"));
        }
        assert_ne!(sec["privileged"], true);
        if sec["readOnlyRootFilesystem"] == true {
            o.push("--read-only".into());
        }
        if sec["allowPrivilegeEscalation"] == false {
            o.extend(["--security-opt".into(), "no-new-privileges".into()]);
        }
        match sec["seccompProfile"]["type"].as_str() {
            Some("Unconfined") => o.extend(["--security-opt".into(), "seccomp=unconfined".into()]),
            Some("RuntimeDefault") | None => {}
            Some(other) => panic!("seccompProfile {other}: teach this test"),
        }
        if sec["appArmorProfile"]["type"] == "Unconfined" {
            o.extend(["--security-opt".into(), "apparmor=unconfined".into()]);
        }
        let limits = &c["resources"]["limits"];
        if let Some(mem) = limits["memory"].as_str() {
            let mib = mem.strip_suffix("Mi").expect("a memory limit in Mi");
            o.push(format!("--memory={mib}m"));
        }
        if let Some(cpu) = limits["cpu"].as_str() {
            let milli: f64 = cpu
                .strip_suffix('m')
                .expect("a cpu limit in m")
                .parse()
                .unwrap();
            o.push(format!("--cpus={}", milli / 1000.0));
        }
        for e in c["env"].as_sequence().into_iter().flatten() {
            let value = e["value"].as_str().expect("plain env values only");
            o.push(format!("--env={}={value}", e["name"].as_str().unwrap()));
        }
        // Every hostPath volume at its mount, as the kubelet would: a Directory must exist,
        // DirectoryOrCreate is made.
        let volumes = pod["volumes"].as_sequence().expect("volumes");
        for m in c["volumeMounts"].as_sequence().expect("volumeMounts") {
            let name = m["name"].as_str().unwrap();
            let v = volumes
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("no volume {name}"));
            let host = v["hostPath"]["path"]
                .as_str()
                .expect("hostPath volumes only");
            match v["hostPath"]["type"].as_str() {
                Some("Directory") => assert!(Path::new(host).is_dir(), "{host} is no directory"),
                Some("DirectoryOrCreate") => std::fs::create_dir_all(host).unwrap(),
                other => panic!("hostPath type {other:?}: teach this test"),
            }
            let ro = if m["readOnly"] == true { ":ro" } else { "" };
            o.push(format!(
                "--volume={host}:{}{ro}",
                m["mountPath"].as_str().unwrap()
            ));
        }
        for p in c["ports"].as_sequence().into_iter().flatten() {
            port_of.insert(
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap() as u16,
            );
        }
        o
    }

    /// `(path, port)` of every httpGet probe.
    fn probes(&self, port_of: &BTreeMap<String, u16>) -> Vec<(String, u16)> {
        let c = self.container();
        ["startupProbe", "readinessProbe", "livenessProbe"]
            .iter()
            .map(|p| {
                let get = &c[*p]["httpGet"];
                let port = match &get["port"] {
                    Yaml::Number(n) => n.as_u64().unwrap() as u16,
                    name => port_of[name.as_str().expect("a port name")],
                };
                (get["path"].as_str().expect("a path").to_string(), port)
            })
            .collect()
    }
}

fn podman(args: &[&str]) -> Output {
    run(Command::new("podman").args(PODMAN_HOST).args(args))
}

/// Removes this test's container and image, however the test ends.
struct Podman {
    name: String,
    image: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
        let _ = podman(&["rmi", "-f", &self.image]);
    }
}

#[test]
fn the_image_runs_as_the_daemonset_says() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the image test runs podman as root"
    );
    let pkg = Package::unpack();
    let ds = DaemonSet::read(&pkg);
    let c = ds.container();
    let image = c["image"].as_str().expect("an image").to_string();
    let archive = target_dir().join("oci/ckpt-watch.tar");
    assert!(
        archive.exists(),
        "{} not built: run `cargo xtask package` first",
        archive.display()
    );
    let name = format!("ckpt-packaging-{}", std::process::id());
    let _cleanup = Podman {
        name: name.clone(),
        image: image.clone(),
    };
    let loaded = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        loaded.status.success(),
        "podman load: {}",
        text(&loaded.stderr)
    );
    assert!(
        text(&loaded.stdout).contains(&format!("Loaded image: {image}")),
        "the archive loads as {}, the DaemonSet runs {image}",
        text(&loaded.stdout)
    );
    // Entrypoint and libraries: the image alone runs the binary.
    let mut version_args = vec!["run", "--rm", "--network=none"];
    version_args.extend(PODMAN_RLIMITS);
    version_args.extend([image.as_str(), "--version"]);
    let version = podman(&version_args);
    assert_eq!(
        text(&version.stdout),
        text(&run_ok(Command::new(pkg.binary()).arg("--version")).into_bytes()),
        "{}",
        text(&version.stderr)
    );

    let zoo = start_subject();
    let args = DaemonSet::strings(&c["args"]);
    assert!(c["command"].is_null(), "the image's entrypoint runs");
    // What the DaemonSet's flags judge with, asked of the packaged binary as root.
    let judging: Vec<String> = args
        .iter()
        .filter(|a| {
            ["--profile", "--with", "--engine", "--criu"]
                .iter()
                .any(|f| a.starts_with(f))
        })
        .cloned()
        .collect();
    let full = judge(
        Command::new(pkg.binary()),
        &BTreeMap::new(),
        &judging,
        zoo.pid,
    );
    assert_eq!(verdict_of(&full), "ok", "as root: {}", text(&full.stdout));

    let mut ports = BTreeMap::new();
    let options = ds.podman_options(&mut ports);
    let mut run_args: Vec<&str> = vec!["run", "-d", "--name", &name];
    run_args.extend(PODMAN_RLIMITS);
    run_args.extend(options.iter().map(String::as_str));
    run_args.push(&image);
    run_args.extend(args.iter().map(String::as_str));
    let started = podman(&run_args);
    assert!(
        started.status.success(),
        "podman run: {}",
        text(&started.stderr)
    );
    let inspect = |format: &str| text(&podman(&["inspect", "-f", format, &name]).stdout);
    let pid: u32 = inspect("{{.State.Pid}}")
        .parse()
        .expect("the container's pid");
    let alive = || {
        if inspect("{{.State.Running}}") == "true" {
            Ok(())
        } else {
            Err(text(&podman(&["logs", &name]).stderr))
        }
    };

    // Every probe's path and port answers, on IPv4 and IPv6 (a dual-stack listener).
    let probes = ds.probes(&ports);
    let (path, port) = probes[0].clone();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let verdict = healthy_then_verdict(
        "the DaemonSet's container",
        zoo.pid,
        |p| get_in(pid, v4, if p == "/healthz" { &path } else { p }),
        alive,
    );
    assert_eq!(verdict, verdict_of(&full), "the container's verdict");
    for (path, port) in &probes {
        for ip in ["127.0.0.1", "::1"] {
            let addr = SocketAddr::new(ip.parse().unwrap(), *port);
            let (status, body) = get_in(pid, addr, path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status, 200, "GET {path} on {addr}: {body}");
            assert!(body.contains(r#""status":"ok""#), "{body}");
        }
    }

    // Stopped within the grace period, cleanly.
    let grace = ds.0["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30)
        .to_string();
    let stopped = podman(&["stop", "-t", &grace, &name]);
    assert!(
        stopped.status.success(),
        "podman stop: {}",
        text(&stopped.stderr)
    );
    assert_eq!(
        inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        text(&podman(&["logs", &name]).stderr)
    );
}
