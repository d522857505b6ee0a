//! A hostile local user against the daemon (issue 12): absurd durations, signals during
//! start-up, thousands of idle and slow HTTP clients, an alert output nobody reads or that is
//! full, and a `--listen unix:` path that is not ours. Each reproduced against the real daemon
//! and asserted fixed: the daemon does not crash, lie about its health, or go blind.
//!
//! Connections are loopback only, bounded in number, and closed when each test ends. Budgets
//! stretch with CKPT_TESTS_TIME_SCALE; connection counts shrink with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use ckpt_tests::{Fdctl, budget, ckpt_watch, eventually, run, test_bin, time_scale};
use serde_json::Value;

fn fdctl() -> String {
    test_bin(env!("CARGO_BIN_EXE_fdctl"))
}

fn binary() -> PathBuf {
    ckpt_watch(&fdctl())
}

/// The daemon's limits this suite holds it to (ckpt-user/src/daemon/http.rs, health.rs).
const MAX_CONNECTIONS: usize = 128;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const ALERT_STALL: Duration = Duration::from_secs(5);

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// Under /tmp (TMPDIR), short enough for a unix socket's path; removed on drop.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ckpt-hd-{name}-"))
        .tempdir()
        .unwrap()
}

enum Addr {
    Tcp(u16),
    Unix(PathBuf),
}

struct Daemon {
    child: Child,
    addr: Addr,
    stderr: Receiver<String>,
}

impl Daemon {
    /// Starts the daemon without waiting for it.
    fn spawn(addr: Addr, extra: &[&str]) -> Daemon {
        let listen = match &addr {
            Addr::Tcp(port) => format!("127.0.0.1:{port}"),
            Addr::Unix(path) => format!("unix:{}", path.display()),
        };
        let mut child = Command::new(binary())
            .args(["daemon", "--format", "json", "--profile", "criu-4"])
            .args(["--listen", &listen])
            .args(extra)
            .args(
                std::env::var("CKPT_WATCH_BACKEND")
                    .into_iter()
                    .flat_map(|b| ["--backend".to_string(), b]),
            )
            .env("CKPT_WATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        // Drained so that the daemon's logging never blocks on a full pipe.
        let (tx, stderr) = channel();
        let err = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Daemon {
            child,
            addr,
            stderr,
        }
    }

    fn start(extra: &[&str]) -> Daemon {
        let mut d = Self::spawn(Addr::Tcp(free_port()), extra);
        d.wait_serving();
        d
    }

    fn log(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    fn wait_serving(&mut self) {
        let deadline = Instant::now() + budget(Duration::from_secs(30));
        while self.get("/healthz").is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited ({status}) before serving: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon not serving: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `raw` and reads the answer to its end: (status code, body).
    fn request(&self, raw: &[u8]) -> Option<(u16, String)> {
        let timeout = Some(budget(Duration::from_secs(5)));
        let mut text = String::new();
        match &self.addr {
            Addr::Tcp(port) => {
                let mut s = TcpStream::connect(("127.0.0.1", *port)).ok()?;
                s.set_read_timeout(timeout).ok()?;
                s.write_all(raw).ok()?;
                s.read_to_string(&mut text).ok()?;
            }
            Addr::Unix(path) => {
                let mut s = UnixStream::connect(path).ok()?;
                s.set_read_timeout(timeout).ok()?;
                s.write_all(raw).ok()?;
                s.read_to_string(&mut text).ok()?;
            }
        }
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
    }

    fn health(&self) -> (u16, Value) {
        let (status, body) = self.get("/healthz").expect("/healthz answers");
        let doc = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, doc)
    }

    /// The sum of the samples of `name` whose labels contain `labels`.
    fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, text) = self.get("/metrics").expect("/metrics answers");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                (n == name && rest.contains(labels))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum::<f64>()
            + 0.0
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// CPU time used so far, in clock ticks (utime + stime).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_comm = stat.rsplit_once(')').expect("stat has a comm").1;
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// SIGTERM, then the exit status within `within`.
    fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reasons(health: &Value) -> Vec<String> {
    health["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reason"].as_str().map(String::from))
        .collect()
}

/// `--rescan 18446744073709551615s` panicked (an Instant overflow). Every duration flag is
/// parsed with checked arithmetic and bounded: exit 2, the reason in one line.
#[test]
fn absurd_durations_are_refused_in_one_line() {
    for (flag, value) in [
        ("--rescan", "18446744073709551615s"),
        ("--rescan", "18446744073709551615"),
        ("--rescan", "5124095576030431h"),
        ("--rescan", "0s"),
        ("--rescan", "1ms"),
        ("--rescan", "8d"),
        ("--settle", "99999999999999999999999ms"),
        ("--settle", "61m"),
        ("--settle", "1.5s"),
    ] {
        let out = run(&binary(), &["daemon", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains(flag) && (first.contains("between") || first.contains("unit")),
            "{flag} {value:?}: the reason on the first line: {err}"
        );
    }
}

/// SigCgt of /proc/PID/status: the signals with a handler, bit n - 1 for signal n.
fn caught_signals(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0)
}

/// SIGHUP and SIGUSR1 (a reload, a log rotation) during start-up killed the daemon: their
/// handlers came after the first scan. Now they are caught before anything slow, and taken
/// once the daemon is up; none makes the loading of its BPF programs fail.
#[test]
fn signals_during_start_up_are_not_fatal() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let port = free_port();
    let mut d = Daemon::spawn(Addr::Tcp(port), &[]);
    let spawned = Instant::now();
    let pid = d.pid();
    // The port is bound early in start-up, before BTF, the BPF programs and the first scan.
    let bound = eventually(budget(Duration::from_secs(10)), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(bound, "the daemon never bound its port: {}", d.log());
    let bound_after = spawned.elapsed();
    let wanted = (1u64 << (libc::SIGHUP - 1)) | (1u64 << (libc::SIGUSR1 - 1));
    assert_eq!(
        caught_signals(pid) & wanted,
        wanted,
        "SIGHUP and SIGUSR1 have no handler yet when the daemon binds its port"
    );
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let sig = if n % 2 == 0 {
                    libc::SIGHUP
                } else {
                    libc::SIGUSR1
                };
                // SAFETY: signalling the test's own child.
                unsafe { libc::kill(pid as i32, sig) };
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let deadline = Instant::now() + budget(Duration::from_secs(30));
    // The first answer comes at the end of start-up.
    while d.get("/healthz").is_none() {
        if let Some(status) = d.child.try_wait().unwrap() {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "daemon exited ({status}) after {} signals: {}",
                sent.load(Ordering::Relaxed),
                d.log()
            );
        }
        assert!(Instant::now() < deadline, "not serving: {}", d.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let serving = spawned.elapsed();
    let during = sent.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    eprintln!(
        "port bound {bound_after:?} after spawn (handlers in place), serving after \
         {serving:?}: {during} signals sent during start-up"
    );
    assert!(during >= 10, "start-up too quick to test: {during} signals");
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log());
    let (status, _) = d.health();
    assert!(status == 200 || status == 503, "{status}");
    assert!(d.terminate(budget(Duration::from_secs(2))).success());
}

/// ~20,000 idle connections used up the daemon's fds: /healthz went silent, the accept loop
/// spun a core, and /proc/kallsyms could no longer be opened. Now at most MAX_CONNECTIONS are
/// held, the oldest idle one closed for each newcomer.
#[test]
fn thousands_of_idle_connections_leave_healthz_answering() {
    let d = Daemon::start(&[]);
    let Addr::Tcp(port) = d.addr else {
        unreachable!()
    };
    let fds_before = d.fds();
    // Room for the clients in this process's fd limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on this process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let n = ((3000.0 / time_scale()) as usize).min(limit.rlim_cur as usize - 200);
    let ticks_before = d.cpu_ticks();
    let t = Instant::now();
    let mut idle = vec![];
    for _ in 0..n {
        if let Ok(s) = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            budget(Duration::from_secs(2)),
        ) {
            idle.push(s);
        }
    }
    let opened = t.elapsed();
    assert!(
        idle.len() >= n * 9 / 10,
        "only {} of {n} connected",
        idle.len()
    );
    let t = Instant::now();
    let (status, health) = d.health();
    let answered = t.elapsed();
    assert!(status == 200 || status == 503, "{status}: {health}");
    assert!(
        answered < budget(Duration::from_secs(1)),
        "/healthz took {answered:?} beside {} idle connections",
        idle.len()
    );
    let fds = d.fds();
    assert!(
        fds <= fds_before + MAX_CONNECTIONS + 8,
        "{fds} fds open in the daemon ({fds_before} before)"
    );
    // Idle clients hold nothing: the daemon sleeps beside them.
    std::thread::sleep(Duration::from_secs(1));
    let ticks = d.cpu_ticks() - ticks_before;
    let closed = d.metric("ckpt_watch_http_connections_closed_total", "evicted");
    eprintln!(
        "{} idle connections opened in {opened:?}; /healthz answered in {answered:?}; daemon \
         fds {fds_before} -> {fds}; {ticks} CPU ticks meanwhile; {closed} evicted",
        idle.len()
    );
    assert!(
        closed >= (idle.len() - MAX_CONNECTIONS) as f64,
        "{closed} evicted"
    );
    let tick_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = ticks as f64 / tick_hz;
    let wall = opened.as_secs_f64() + 1.0;
    assert!(cpu < 0.5 * wall, "{cpu} CPU seconds in {wall} s: spinning?");
    // The daemon can still open files (a rescan reads /proc/kallsyms and every /proc/PID).
    d.signal(libc::SIGHUP);
    assert!(
        eventually(budget(Duration::from_secs(10)), || d
            .metric("ckpt_watch_reconciles_total", "reload")
            >= 1.0),
        "no rescan after SIGHUP beside the idle connections: {}",
        d.log()
    );
}

/// Slow clients were held forever, and a request ending in a bare LF was never answered.
#[test]
fn slow_clients_are_closed_and_bare_lf_requests_answered() {
    let d = Daemon::start(&[]);
    let Addr::Tcp(port) = d.addr else {
        unreachable!()
    };
    let (status, body) = d
        .request(b"GET /healthz HTTP/1.1\nHost: x\n\n")
        .expect("a bare-LF request is answered");
    assert!(status == 200 || status == 503, "{status}");
    assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    let (status, body) = d.get("/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"));
    let (status, _) = d.request(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(status, 405);

    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(budget(HEADER_TIMEOUT * 3)))
        .unwrap();
    let t = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut rest = vec![];
    let read = slow.read_to_end(&mut rest);
    let closed = t.elapsed();
    eprintln!("a partial request was closed after {closed:?}");
    assert!(read.is_ok(), "not closed by the daemon: {read:?}");
    assert!(
        closed >= HEADER_TIMEOUT - Duration::from_millis(100)
            && closed < budget(HEADER_TIMEOUT + Duration::from_secs(2)),
        "closed after {closed:?}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "{rest:?}"
    );
    assert!(d.metric("ckpt_watch_http_connections_closed_total", "header-timeout") >= 1.0);
}

/// Opens and closes an io_uring `times` times, each state held past a settle tick: an alert
/// each way with `--settle 0s`.
fn toggle_io_uring(p: &mut Fdctl, times: usize) {
    for _ in 0..times {
        let fd = p.open("io_uring");
        std::thread::sleep(Duration::from_millis(60));
        p.send(&format!("close {fd}"));
        std::thread::sleep(Duration::from_millis(60));
    }
}

/// Alerts to a pipe nobody read froze the whole daemon: events were lost by the million.
/// Now the alert writer waits alone; the daemon drains events and /healthz says why it fails.
#[test]
fn alerts_to_a_fifo_nobody_reads_leave_events_drained() {
    let dir = scratch("fifo");
    let fifo = dir.path().join("alerts");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A reader that never reads, with the smallest pipe: a few alerts fill it.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    // SAFETY: fcntl on a pipe this test owns.
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let fifo_s = fifo.to_str().unwrap();
    let d = Daemon::start(&[
        "--output",
        fifo_s,
        "--settle",
        "0s",
        "--max-alerts-per-minute",
        "100000",
    ]);
    let mut p = Fdctl::start(&fdctl());
    toggle_io_uring(&mut p, 30);
    let mut last = Value::Null;
    let blocked = eventually(budget(ALERT_STALL + Duration::from_secs(5)), || {
        let (status, health) = d.health();
        last = health;
        status == 503 && reasons(&last).iter().any(|r| r == "alert-output-blocked")
    });
    assert!(blocked, "/healthz: {last}");
    // Events are still drained and judged: a storm is counted, a new holder settles. Unix
    // socket pairs always reach user space; unconnected TCP sockets are dropped in the kernel
    // once any TCP socket on the host has shown their kind is ok.
    let events = d.metric("ckpt_watch_events_total", "");
    p.send("sockets 2000 unix");
    assert!(
        eventually(budget(Duration::from_secs(5)), || {
            d.metric("ckpt_watch_events_total", "") - events >= 4000.0
        }),
        "events not drained while the alert output is stuck"
    );
    let mut q = Fdctl::start(&fdctl());
    q.open("io_uring");
    let id = q.pid.to_string();
    assert!(
        eventually(budget(Duration::from_secs(5)), || {
            let (_, body) = d.get("/workloads").unwrap();
            let all: Vec<Value> = serde_json::from_str(&body).unwrap();
            all.iter()
                .any(|w| w["id"] == id.as_str() && w["verdict"] == "blocks")
        }),
        "a new blocking workload never settled"
    );
    let lost = d.metric("ckpt_watch_events_lost_total", "");
    eprintln!("health while stuck: {last}; events lost: {lost}");
    let mut d = d;
    let t = Instant::now();
    assert!(d.terminate(budget(Duration::from_secs(2))).success());
    eprintln!(
        "exited {:?} after SIGTERM with the writer stuck",
        t.elapsed()
    );
    drop(reader);
}

/// With `--output /dev/full` every alert failed while /healthz said ok and the alert counter
/// counted them as written.
#[test]
fn alerts_to_a_full_device_are_counted_as_failed() {
    let d = Daemon::start(&["--output", "/dev/full", "--settle", "0s"]);
    let mut p = Fdctl::start(&fdctl());
    p.open("io_uring");
    let mut last = Value::Null;
    let failing = eventually(budget(Duration::from_secs(5)), || {
        let (status, health) = d.health();
        last = health;
        status == 503 && reasons(&last).iter().any(|r| r == "alert-write-failed")
    });
    assert!(failing, "/healthz: {last}");
    let failed = d.metric("ckpt_watch_alerts_dropped_total", "reason=\"write-failed\"");
    let written = d.metric("ckpt_watch_alerts_total", "");
    eprintln!("{failed} alerts failed, {written} written; /healthz: {last}");
    assert!(failed >= 1.0);
    assert_eq!(written, 0.0, "nothing can be written to /dev/full");
}

/// Runs ckpt-watch expecting it to stop by itself: its exit code and stderr, or None if it
/// was still running after a while (then killed).
fn run_briefly(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ckpt-watch runs");
    let deadline = Instant::now() + budget(Duration::from_secs(10));
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

/// `--listen unix:PATH` deleted whatever was at PATH and left its socket behind at exit.
#[test]
fn a_unix_socket_replaces_nothing_but_a_stale_socket_and_goes_at_exit() {
    let dir = scratch("unix");
    let path = dir.path().join("ckpt.sock");
    let listen = format!("unix:{}", path.display());
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    for planted in ["file", "symlink", "directory"] {
        match planted {
            "file" => std::fs::write(&path, "keep me").unwrap(),
            "symlink" => std::os::unix::fs::symlink(&target, &path).unwrap(),
            _ => std::fs::create_dir(&path).unwrap(),
        }
        let (code, err) = run_briefly(&["daemon", "--listen", &listen]);
        assert_eq!(code, Some(2), "{planted}: {err}");
        assert!(err.contains("not a socket"), "{planted}: {err}");
        let meta = std::fs::symlink_metadata(&path).expect("left in place");
        match planted {
            "file" => assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me"),
            "symlink" => assert!(meta.file_type().is_symlink()),
            _ => assert!(meta.is_dir()),
        }
        if meta.is_dir() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // A socket left by a daemon that died: nobody listens, so it is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut d = Daemon::spawn(Addr::Unix(path.clone()), &[]);
    d.wait_serving();
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "root only");
    // A live socket is not taken over by a second daemon.
    let (code, err) = run_briefly(&["daemon", "--listen", &listen]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("listening"), "{err}");
    assert!(d.get("/healthz").is_some(), "the first daemon still serves");
    assert!(d.terminate(budget(Duration::from_secs(2))).success());
    assert!(!path.exists(), "the socket is removed at exit");
    // SIGINT too.
    let mut d = Daemon::spawn(Addr::Unix(path.clone()), &[]);
    d.wait_serving();
    d.signal(libc::SIGINT);
    let deadline = Instant::now() + budget(Duration::from_secs(2));
    while d.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still running after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!path.exists(), "the socket is removed after SIGINT");
}
