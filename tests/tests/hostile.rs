//! A hostile local user against ckpt-watch, which runs as root and judges the processes such a
//! user controls: each attack of issue 12 reproduced with real processes, files and cgroups,
//! and asserted to fail. ckpt-watch must not lie (a false `ok`), crash, or go blind.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ckpt_tests::{Fdctl, Sh, TestCgroups, ckpt_watch, container_id, run, run_env, test_bin};

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");

/// A PATH without `criu`: these tests judge processes, not the installed CRIU.
const NO_CRIU: (&str, &str) = ("PATH", "/ckpt-watch-tests/no-criu-on-this-path");

fn binary() -> PathBuf {
    ckpt_watch(FDZOO)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit 2 with one line on stderr containing `needle`, and no panic.
#[track_caller]
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\nstderr: {}", stdout(out), stderr(out)))
}

/// A scratch directory, removed on drop.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ckpt-hostile-{name}-"))
            .tempdir()
            .expect("scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// What a forked process becomes: its name (any bytes, as `prctl(PR_SET_NAME)` takes them)
/// and the fds it keeps, as 3, 4, ... (0-2 are /dev/null; nothing else of the test leaks in).
struct Spec {
    name: CString,
    fds: Vec<RawFd>,
}

impl Spec {
    fn new(name: &[u8], fds: &[RawFd]) -> Self {
        Spec {
            name: CString::new(name).expect("no NUL in a name"),
            fds: fds.to_vec(),
        }
    }

    /// In the forked child: async-signal-safe calls only (the test is multi-threaded).
    unsafe fn become_it(&self, devnull: RawFd) {
        unsafe {
            for std_fd in 0..3 {
                libc::dup2(devnull, std_fd);
            }
            // Park the kept fds high first, so that moving them into place clobbers none.
            for (i, fd) in self.fds.iter().enumerate() {
                libc::dup2(*fd, 200 + i as i32);
            }
            for i in 0..self.fds.len() {
                libc::dup2(200 + i as i32, 3 + i as i32);
            }
            libc::syscall(
                libc::SYS_close_range,
                3 + self.fds.len() as u32,
                u32::MAX,
                0u32,
            );
            libc::prctl(libc::PR_SET_NAME, self.name.as_ptr());
        }
    }
}

/// A process forked from the test (leading its own session), and optionally its child; the
/// session is killed on drop.
struct Forked {
    pid: u32,
    child: Option<u32>,
}

impl Forked {
    fn start(parent: Spec, child: Option<Spec>) -> Forked {
        let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
        let null = devnull.as_raw_fd();
        // SAFETY: both forked processes make async-signal-safe calls only, and never return.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            unsafe {
                libc::setsid();
                if let Some(c) = &child
                    && libc::fork() == 0
                {
                    c.become_it(null);
                    loop {
                        libc::pause();
                    }
                }
                parent.become_it(null);
                loop {
                    libc::pause();
                }
            }
        }
        let pid = pid as u32;
        let mut forked = Forked { pid, child: None };
        let comm = |p: u32| std::fs::read(format!("/proc/{p}/comm")).unwrap_or_default();
        let named = |p: u32, spec: &Spec| comm(p).strip_suffix(b"\n") == Some(spec.name.as_bytes());
        for _ in 0..400 {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            forked.child = children
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok());
            let child_ready = match (&child, forked.child) {
                (None, _) => true,
                (Some(spec), Some(c)) => named(c, spec),
                (Some(_), None) => false,
            };
            if named(pid, &parent) && child_ready {
                return forked;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("forked processes did not get ready");
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.pid as i32), libc::SIGKILL);
            libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

/// A new io_uring instance (CRIU cannot dump one); closed on drop.
fn io_uring() -> std::fs::File {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup writes at most sizeof(struct io_uring_params) = 120 bytes.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, params.as_mut_ptr()) };
    assert!(
        fd >= 0,
        "io_uring_setup: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new fd that nothing else owns.
    unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) }
}

/// A child that renames itself to bytes that are not UTF-8 and holds an io_uring must not
/// vanish from its tree (it did: its status could not be read as text, and the tree was `ok`).
#[test]
fn a_child_named_in_bytes_that_are_not_utf8_still_blocks_its_tree() {
    let ring = io_uring();
    let tree = Forked::start(
        Spec::new(b"ckpt-parent", &[]),
        Some(Spec::new(b"\xff\xfe-uring", &[ring.as_raw_fd()])),
    );
    drop(ring);
    let child = tree.child.expect("a child");
    let pid = tree.pid.to_string();
    let out = run_env(
        &binary(),
        &["--pid", &pid, "--tree", "--json", "--profile", "criu-4"],
        &[NO_CRIU],
    );
    let doc = json(&out);
    assert_eq!(
        (doc["verdict"].as_str(), out.status.code()),
        (Some("blocks"), Some(1)),
        "{doc}"
    );
    let judged = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == child)
        .unwrap_or_else(|| panic!("child {child} judged: {doc}"));
    assert_eq!(judged["comm"], "\u{fffd}\u{fffd}-uring");
    assert_eq!(judged["verdict"], "blocks");
}

/// `a/../b` is judged as `b`: the depth the kernel filters by is the canonical path's (it was
/// counted on the raw string, the filter matched no task, and a blocking container was `ok`).
/// Paths that leave the hierarchy, or name a file, are refused.
#[test]
fn a_cgroup_path_is_judged_where_it_leads() {
    let cg = TestCgroups::new("dotdot");
    cg.dir("x.slice/empty");
    let id = container_id("");
    let scope = cg.dir(&format!("x.slice/docker-{id}.scope"));
    let ring = io_uring();
    let holder = Forked::start(Spec::new(b"ckpt-uring", &[ring.as_raw_fd()]), None);
    drop(ring);
    TestCgroups::add(&scope, holder.pid);

    let top = cg.path_of(&cg.top);
    let via = format!("{top}/x.slice/empty/../docker-{id}.scope");
    let out = run_env(
        &binary(),
        &[
            "preflight",
            "--json",
            "--profile",
            "criu-4",
            "--cgroup",
            &via,
        ],
        &[NO_CRIU],
    );
    let doc = json(&out);
    assert_eq!(
        (doc["verdict"].as_str(), out.status.code()),
        (Some("blocks"), Some(1)),
        "{doc}"
    );
    let c = &doc["containers"][0];
    assert_eq!(
        c["cgroup"]["path"],
        format!("{top}/x.slice/docker-{id}.scope")
    );
    assert_eq!(c["root"], holder.pid);

    let up = format!("{top}/../../../../../../../../../../tmp");
    let out = run_env(&binary(), &["preflight", "--cgroup", &up], &[NO_CRIU]);
    assert_one_line_error(&out, "outside the cgroup hierarchy");
    let file = format!("{top}/cgroup.procs");
    let out = run_env(&binary(), &["preflight", "--cgroup", &file], &[NO_CRIU]);
    assert_one_line_error(&out, "is not a directory");
}

/// A snapshot records what it scanned; a replay refuses a pid outside it (it judged such a pid
/// with no files: `ok`). Saved 0600, atomically, never through a symlink planted at its path.
#[test]
fn a_replay_judges_only_what_was_scanned_and_the_snapshot_stays_private() {
    let dir = Scratch::new("replay");
    let ring = io_uring();
    let holder = Forked::start(Spec::new(b"ckpt-uring", &[ring.as_raw_fd()]), None);
    drop(ring);
    let victim = dir.path("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let snap = dir.path("snap.json");
    std::os::unix::fs::symlink(&victim, &snap).unwrap();

    let pid = holder.pid.to_string();
    let path = snap.to_str().unwrap();
    let out = run_env(
        &binary(),
        &[
            "--pid",
            &pid,
            "--profile",
            "criu-4",
            "--save-snapshot",
            path,
        ],
        &[NO_CRIU],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let meta = std::fs::symlink_metadata(&snap).unwrap();
    assert!(
        meta.is_file(),
        "the planted symlink was replaced, not followed"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    assert_eq!(saved["scanned"]["filter"]["pid"], holder.pid);
    assert_eq!(saved["scanned"]["profile"], "criu-4");
    assert!(
        saved["scanned"]["kernel"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );

    // Replayed: the scanned pid as before; another live process is refused, not judged `ok`.
    let out = run(
        &binary(),
        &["--replay", path, "--pid", &pid, "--profile", "criu-4"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let me = std::process::id().to_string();
    let out = run(
        &binary(),
        &["--replay", path, "--pid", &me, "--profile", "criu-4"],
    );
    assert_one_line_error(&out, &format!("pid {me} was not scanned"));
    assert!(stderr(&out).contains(&format!("pid {pid} and its descendants")));
}

/// A process names itself, and a file it holds, to forge a verdict line and clear the screen.
#[test]
fn process_chosen_names_cannot_forge_report_lines() {
    let dir = Scratch::new("forge");
    let evil = dir.path("x\nverdict (criu-4, 1 process): ok: checkpointable as it is\x1b[2J");
    let file = std::fs::File::create(&evil).unwrap();
    let forger = Forked::start(Spec::new(b"\x1b[2J\nverdict:ok", &[file.as_raw_fd()]), None);
    drop(file);
    let pid = forger.pid.to_string();
    for args in [
        &["--pid", &pid, "-v", "--profile", "criu-4"][..],
        &["--pid", &pid, "--tree", "-v", "--profile", "criu-4"],
    ] {
        let out = run_env(&binary(), args, &[NO_CRIU]);
        let text = stdout(&out);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !text.contains('\x1b'),
            "{args:?}: an escape reached the terminal: {text:?}"
        );
        let verdicts = text.lines().filter(|l| l.starts_with("verdict")).count();
        assert_eq!(verdicts, 1, "{args:?}: a forged verdict line: {text}");
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("pid {pid} (\\u{{1b}}[2J")),
            "{args:?}: {text}"
        );
    }
}

/// 30,000 nested braces overflowed the parser's stack and aborted the whole audit: the file is
/// refused with one line, the others are audited, and the run says it was partial (exit 2).
#[test]
fn an_audit_refuses_a_file_nested_too_deep_and_goes_on() {
    let dir = Scratch::new("deep");
    let n = 30_000;
    let deep = format!(
        "static const struct file_operations deep_fops = {}0{};\n",
        "{".repeat(n),
        "}".repeat(n)
    );
    std::fs::write(dir.path("deep.c"), deep).unwrap();
    std::fs::write(
        dir.path("ok.c"),
        "static const struct file_operations ok_fops = { .open = f };\n",
    )
    .unwrap();
    let out = run(&binary(), &["audit", dir.0.path().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("deep.c: brackets nest deeper than 1000 levels"),
        "{err}"
    );
    assert!(stdout(&out).contains("ok_fops"), "{}", stdout(&out));
}

/// Bytes that are not UTF-8 in comments and literals change nothing; one inside the code is
/// named. A file the audit cannot read makes the run partial: exit 2, not 0.
#[test]
fn an_audit_reads_bytes_and_reports_what_it_cannot_read() {
    let dir = Scratch::new("bytes");
    std::fs::write(
        dir.path("latin1.c"),
        b"/* caf\xe9 */\nstatic const struct file_operations a_fops = { .open = f, .read = \"\xff\" };\n",
    )
    .unwrap();
    let out = run(&binary(), &["audit", dir.0.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("a_fops") && stderr(&out).is_empty());

    std::fs::write(
        dir.path("stray.c"),
        b"static const struct file_operations b\xe9_fops = { .open = g };\n",
    )
    .unwrap();
    let out = run(&binary(), &["audit", dir.0.path().to_str().unwrap()]);
    assert!(
        stderr(&out).contains("stray.c:1: byte 0xe9 outside comments"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "a warning, not a skipped file");

    let secret = dir.path("secret.c");
    std::fs::write(
        &secret,
        "static const struct file_operations s_fops = { .open = h };\n",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(dir.0.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // As nobody: root reads any file.
    let mut cmd = Command::new(binary());
    cmd.args(["audit", dir.0.path().to_str().unwrap()]);
    // SAFETY: setgid/setuid between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("runs as nobody");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("secret.c: cannot read"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("a_fops"), "the rest is audited");
}

/// `ghost-limit "2M<U+3000>"` in a CRIU config file, and a process that needs a ghost limit:
/// it panicked (a byte index inside a character); it is read as CRIU reads it, 2 MiB.
#[test]
fn a_wide_space_in_a_config_value_is_read_as_criu_reads_it() {
    let dir = Scratch::new("ghost");
    let ghost = dir.path("ghost");
    let mut file = std::fs::File::create(&ghost).unwrap();
    std::io::Write::write_all(&mut file, &vec![0x5a; 1536 << 10]).unwrap();
    file.sync_all().unwrap();
    std::fs::remove_file(&ghost).unwrap();
    let holder = Forked::start(Spec::new(b"ckpt-ghost", &[file.as_raw_fd()]), None);
    drop(file);
    let conf = dir.path("criu.conf");
    std::fs::write(&conf, "ghost-limit \"2M\u{3000}\"\n").unwrap();
    let pid = holder.pid.to_string();
    let home = dir.0.path().to_str().unwrap();
    let args = ["--pid", &pid, "--json", "--profile", "criu-4"];
    let out = run_env(&binary(), &args, &[NO_CRIU, ("HOME", home)]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "without the file: {}",
        stderr(&out)
    );
    let env = [
        NO_CRIU,
        ("HOME", home),
        ("CRIU_CONFIG_FILE", conf.to_str().unwrap()),
    ];
    let out = run_env(&binary(), &args, &env);
    let doc = json(&out);
    assert_eq!(
        (doc["verdict"].as_str(), out.status.code()),
        (Some("ok"), Some(0)),
        "{doc}"
    );
    assert!(doc.to_string().contains("criu.conf:1"), "{doc}");
}

/// Profiles, CRIU config files and snapshots are read with a cap (`--profile /dev/zero` grew
/// by 1 GB/s).
#[test]
fn endless_input_files_are_refused() {
    let me = std::process::id().to_string();
    let out = run_env(
        &binary(),
        &["--pid", &me, "--profile", "/dev/zero"],
        &[NO_CRIU],
    );
    assert_one_line_error(&out, "profile /dev/zero: larger than 16 MiB");
    let out = run_env(
        &binary(),
        &["--pid", &me, "--profile", "criu-4"],
        &[NO_CRIU, ("CRIU_CONFIG_FILE", "/dev/zero")],
    );
    assert_one_line_error(&out, "CRIU config file /dev/zero: larger than 16 MiB");
}

/// `--with` is checked as a config file line is, with the abbreviations getopt_long takes.
#[test]
fn with_is_checked_like_a_config_file_line() {
    let dir = Scratch::new("with");
    let me = std::process::id().to_string();
    let scan = |with: &str, env: &[(&str, &str)]| {
        let mut all = vec![NO_CRIU, ("HOME", dir.0.path().to_str().unwrap())];
        all.extend_from_slice(env);
        run_env(
            &binary(),
            &["--pid", &me, "--profile", "criu-4", "--with", with],
            &all,
        )
    };
    assert_one_line_error(
        &scan("--no-such-option", &[]),
        "unknown CRIU option `no-such-option`",
    );
    let conf = dir.path("criu.conf");
    std::fs::write(&conf, "no-such-option\n").unwrap();
    let out = scan("--tcp-est", &[("CRIU_CONFIG_FILE", conf.to_str().unwrap())]);
    assert_one_line_error(&out, "criu.conf:1: unknown CRIU option `no-such-option`");
    assert_one_line_error(&scan("--tcp", &[]), "ambiguous: tcp-close, tcp-established");
    assert_ne!(scan("--tcp-est --file-lo", &[]).status.code(), Some(2));
}

/// A kernel thread and a thread id each get their own answer, not `needs --shell-job` or
/// "exited during the scan".
#[test]
fn a_kernel_thread_and_a_thread_are_no_process_to_judge() {
    let out = run_env(
        &binary(),
        &["--pid", "2", "--profile", "criu-4"],
        &[NO_CRIU],
    );
    assert_one_line_error(&out, "pid 2 is a kernel thread (kthreadd)");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = rx.recv().unwrap().to_string();
    let out = run_env(
        &binary(),
        &["--pid", &tid, "--profile", "criu-4"],
        &[NO_CRIU],
    );
    stop_tx.send(()).unwrap();
    thread.join().unwrap();
    let me = std::process::id();
    assert_one_line_error(&out, &format!("pid {tid} is a thread of process {me}"));
    assert!(stderr(&out).contains(&format!("use --pid {me}")));
}

/// An LXC container named `MyBox` is selected by its name as written (`--container` lowercased
/// it); an ambiguous id prefix lists what tells the matches apart.
#[test]
fn containers_are_named_as_written_and_told_apart() {
    let cg = TestCgroups::new("names");
    let name = format!("MyBox{}", std::process::id());
    let lxc = cg.dir(&format!("lxc.payload.{name}"));
    let sleeper = Sh::start("sleep 600", None);
    TestCgroups::add(&lxc, sleeper.pid);
    let out = run_env(
        &binary(),
        &[
            "preflight",
            "--json",
            "--profile",
            "criu-4",
            "--container",
            &name,
        ],
        &[NO_CRIU],
    );
    let doc = json(&out);
    assert_eq!(doc["containers"][0]["id"], name.as_str(), "{doc}");
    assert_eq!(doc["containers"][0]["runtime"], "lxc");

    let prefix = container_id("c0ffee")[..16].to_string();
    let (a, b) = (container_id(&prefix), container_id(&prefix));
    cg.dir(&format!("docker-{a}.scope"));
    cg.dir(&format!("docker-{b}.scope"));
    let out = run_env(
        &binary(),
        &["preflight", "--container", &prefix[..14]],
        &[NO_CRIU],
    );
    assert_one_line_error(&out, "is ambiguous");
    let listed: Vec<String> = stderr(&out)
        .trim_end()
        .rsplit_once(": ")
        .unwrap()
        .1
        .split(", ")
        .map(|m| m.trim_end_matches(" (docker)").to_string())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_ne!(listed[0], listed[1]);
    assert!(
        listed
            .iter()
            .all(|l| a.starts_with(l.as_str()) || b.starts_with(l.as_str()))
    );
}

/// `-v` is ckpt-watch's own debug (aya's hundreds of loader lines are not), colour codes never
/// go into a pipe, and `RUST_LOG` is honoured.
#[test]
fn verbose_logging_is_ours_and_plain_in_a_pipe() {
    let me = std::process::id().to_string();
    let args = ["--pid", &me, "-v", "--profile", "criu-4"];
    let out = run_env(&binary(), &args, &[NO_CRIU]);
    let err = stderr(&out);
    assert!(err.contains("ckpt_user"), "{err}");
    assert!(!err.contains('\x1b'), "colour in a pipe: {err:?}");
    assert!(!err.contains("aya"), "a dependency's debug: {err}");
    assert!(err.lines().count() < 20, "{err}");
    let out = run_env(&binary(), &args, &[NO_CRIU, ("RUST_LOG", "off")]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = run_env(&binary(), &args, &[NO_CRIU, ("RUST_LOG", "aya=debug")]);
    assert!(stderr(&out).contains("aya"), "RUST_LOG is honoured");
}

/// Holds `LOCK_SH` on a new open file description of `path`; unlocked when dropped.
fn shared_flock(path: &std::path::Path) -> std::fs::File {
    let file = std::fs::File::open(path).expect("open the locked file");
    // SAFETY: flock on an fd this test owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    file
}

/// The `--pid` JSON verdict on a process holding one fd on a file that `crowd` other open
/// files have locked first; the process's fd holds a lock of its own behind them when `own`.
fn judged_behind_a_crowd(name: &str, crowd: usize, own: bool) -> serde_json::Value {
    let scratch = Scratch::new(name);
    let path = scratch.path("shared");
    std::fs::write(&path, b"x").expect("write the locked file");
    let crowd: Vec<_> = (0..crowd).map(|_| shared_flock(&path)).collect();
    let fd = if own {
        shared_flock(&path)
    } else {
        std::fs::File::open(&path).expect("open the locked file")
    };
    let target = Forked::start(Spec::new(b"ckpt-locks", &[fd.as_raw_fd()]), None);
    drop(fd);
    let pid = target.pid.to_string();
    let out = run_env(
        &binary(),
        &["--pid", &pid, "--json", "--profile", "criu-4"],
        &[NO_CRIU],
    );
    drop(crowd);
    json(&out)
}

/// Anyone who can open a file can queue locks on it ahead of a process's own. The kernel side
/// walks a bounded part of an inode's lock list; a lock beyond it was read as no lock, and the
/// process, which CRIU refuses to dump without `--file-locks`, was `ok`.
#[test]
fn a_lock_behind_a_crowd_of_others_still_needs_file_locks() {
    for ahead in [2, 40] {
        let doc = judged_behind_a_crowd("lock-crowd", ahead, true);
        assert_eq!(
            (doc["verdict"].as_str(), &doc["options"]),
            (Some("needs"), &serde_json::json!(["--file-locks"])),
            "a lock behind {ahead} others: {doc}"
        );
    }
}

/// The kernel side stops at the first lock list it cannot walk to its end: a process's own
/// POSIX lock, on a list it never reached behind a crowd of others' flocks, is read from /proc.
#[test]
fn a_posix_lock_behind_a_crowd_of_flocks_still_needs_file_locks() {
    let scratch = Scratch::new("posix-crowd");
    let path = scratch.path("shared");
    std::fs::write(&path, b"x").expect("write the locked file");
    let crowd: Vec<_> = (0..40).map(|_| shared_flock(&path)).collect();
    let mut holder = Fdctl::start(&test_bin(env!("CARGO_BIN_EXE_fdctl")));
    let fd = holder.open(&format!("file {}", path.display()));
    holder.send(&format!("lock {fd}"));
    let out = run_env(
        &binary(),
        &[
            "--pid",
            &holder.pid.to_string(),
            "--json",
            "--profile",
            "criu-4",
        ],
        &[NO_CRIU],
    );
    drop(crowd);
    let doc = json(&out);
    assert_eq!(
        (doc["verdict"].as_str(), &doc["options"]),
        (Some("needs"), &serde_json::json!(["--file-locks"])),
        "a POSIX lock behind 40 flocks: {doc}"
    );
}

/// The converse: other processes' locks on a file, however many, are not the process's own.
/// Beyond the kernel side's walk they were a guess of "held" (a needless `--file-locks`); the
/// fd's own locks in /proc settle it.
#[test]
fn a_crowd_of_other_processes_locks_is_not_the_processs_own() {
    for ahead in [2, 40] {
        let doc = judged_behind_a_crowd("lock-others", ahead, false);
        assert_eq!(
            (doc["verdict"].as_str(), &doc["options"]),
            (Some("ok"), &serde_json::json!([])),
            "{ahead} other processes' locks: {doc}"
        );
    }
}

/// A task names its own files: a `memfd:` file on a tmpfs it mounted and then detached (in its
/// own mount namespace, by a lazy unmount) is a file on a hidden mount, which CRIU cannot dump,
/// not a memfd. CRIU knows memfds by the device of the kernel's internal shmem mount
/// (criu/memfd.c is_memfd), never by their names.
#[test]
fn a_memfd_name_on_a_detached_tmpfs_is_a_hidden_file() {
    let scratch = Scratch::new("memfd");
    let (mnt, ready) = (scratch.path("mnt"), scratch.path("ready"));
    std::fs::create_dir(&mnt).unwrap();
    let holder = Sh::start(
        &format!(
            "exec unshare --mount --propagation private sh -c 'mount -t tmpfs none {m} && \
             exec 3<>{m}/memfd:spoof && umount -l {m} && touch {r} && exec sleep 600'",
            m = mnt.display(),
            r = ready.display()
        ),
        None,
    );
    for _ in 0..500 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ready.exists(), "the holder detached its tmpfs");
    let pid = holder.pid.to_string();
    let out = run_env(
        &binary(),
        &["--pid", &pid, "--json", "--profile", "criu-4"],
        &[NO_CRIU],
    );
    let doc = json(&out);
    let fd3 = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fd"] == 3)
        .unwrap_or_else(|| panic!("fd 3 judged: {doc}"));
    assert_eq!(
        (fd3["rule"].as_str(), fd3["verdict"].as_str()),
        (Some("hidden-mount"), Some("blocks")),
        "{doc}"
    );
}
