//! The real daemon against real processes: alerts as fds come and go, forks and execs,
//! SCM_RIGHTS, lost events, SIGHUP and SIGTERM.
//!
//! The daemon picks the best install-event backend the kernel allows, as in production;
//! `CKPT_WATCH_BACKEND=fentry|kprobe|tracepoint` forces one (`cargo xtask vm-test` runs this
//! suite once per backend inside each guest kernel; this host allows only `tracepoint`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use ckpt_tests::{Fdctl, TestCgroups, budget, ckpt_watch, container_id, test_bin};

fn fdctl() -> String {
    test_bin(env!("CARGO_BIN_EXE_fdctl"))
}
static NEXT_PORT: AtomicU16 = AtomicU16::new(19782);

struct Daemon {
    child: Child,
    alerts: Receiver<serde_json::Value>,
    stderr: Receiver<String>,
    port: u16,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(ckpt_watch(&fdctl()))
            .args(["daemon", "--format", "json", "--listen", &listen])
            .args(if extra.contains(&"--profile") {
                &[][..]
            } else {
                &["--profile", "criu-4"][..]
            })
            .args(extra)
            .args(
                std::env::var("CKPT_WATCH_BACKEND")
                    .into_iter()
                    .flat_map(|b| ["--backend".to_string(), b]),
            )
            .env("CKPT_WATCH_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let (tx, alerts) = channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let alert = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("alert is not JSON ({e}): {line}"));
                if tx.send(alert).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = channel();
        let err = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let mut d = Daemon {
            child,
            alerts,
            stderr,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.get("/healthz").is_none() {
            if let Ok(Some(status)) = d.child.try_wait() {
                let log: Vec<String> = d.stderr.try_iter().collect();
                panic!(
                    "daemon exited ({status}) before serving: {}",
                    log.join("\n")
                );
            }
            assert!(Instant::now() < deadline, "daemon not serving after 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(forced) = std::env::var("CKPT_WATCH_BACKEND") {
            assert_eq!(d.backend(), forced, "/healthz names the forced backend");
        }
        d
    }

    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }

    /// The next alert about `pid` with event `event`, within `timeout`.
    fn wait_alert(&self, pid: u32, event: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.alerts.recv_timeout(left) {
                Ok(a) if a["pid"] == pid && a["event"] == event => return a,
                Ok(a) if a["pid"] == pid => eprintln!("(waiting for {event}) other alert: {a}"),
                Ok(_) => continue,
                Err(_) => panic!(
                    "no {event} alert for pid {pid} within {timeout:?}; daemon log: {}",
                    self.stderr.try_iter().collect::<Vec<_>>().join(" | ")
                ),
            }
        }
    }

    /// The install-event backend in use, from `/healthz`.
    fn backend(&self) -> String {
        let health: serde_json::Value =
            serde_json::from_str(&self.get("/healthz").expect("/healthz answers"))
                .expect("/healthz is JSON");
        health["backend"]
            .as_str()
            .expect("backend named")
            .to_string()
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").expect("/metrics answers");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape =
            prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file_kinds(alert: &serde_json::Value) -> Vec<String> {
    alert["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["kind"].as_str().map(String::from))
        .collect()
}

#[test]
fn blocking_fds_alert_within_a_second_and_clear_on_close() {
    let d = Daemon::start(&[]);
    for kind in ["io_uring", "perf_event", "userfaultfd"] {
        let mut p = Fdctl::start(&fdctl());
        let started = Instant::now();
        let fd = p.open(kind);
        eprintln!("{kind}: fd {fd} in pid {}", p.pid);
        let alert = d.wait_alert(p.pid, "became-blocking", budget(Duration::from_secs(1)));
        assert!(started.elapsed() < budget(Duration::from_secs(1)));
        assert_eq!(alert["verdict"], "blocks");
        assert!(
            file_kinds(&alert)
                .iter()
                .any(|k| k.contains(kind.trim_end_matches("fd"))),
            "{kind}: {alert}"
        );
        assert!(alert["time"].as_str().is_some_and(|t| t.contains('T')));
        assert!(
            alert["cmdline"]
                .as_str()
                .is_some_and(|c| c.contains("fdctl"))
        );
        p.send(&format!("close {fd}"));
        d.wait_alert(p.pid, "became-ok", budget(Duration::from_secs(1)));
    }
}

#[test]
fn alerts_name_the_container_from_the_cgroup() {
    let d = Daemon::start(&[]);
    let cg = TestCgroups::new("daemon-alert");
    let id = container_id("");
    let dir = cg.dir(&format!("docker-{id}.scope"));
    let mut p = Fdctl::start(&fdctl());
    TestCgroups::add(&dir, p.pid);
    p.open("io_uring");
    let alert = d.wait_alert(p.pid, "became-blocking", budget(Duration::from_secs(1)));
    assert_eq!(alert["container_id"], id.as_str());
    let cgroup = alert["cgroup"].as_str().unwrap_or_default();
    assert!(cgroup.ends_with(&format!("docker-{id}.scope")), "{cgroup}");
}

#[test]
fn fork_flags_the_child_and_exec_clears_close_on_exec_fds() {
    let d = Daemon::start(&[]);
    let mut p = Fdctl::start(&fdctl());
    p.open("io_uring");
    d.wait_alert(p.pid, "became-blocking", budget(Duration::from_secs(1)));
    let child: u32 = p
        .send("fork")
        .strip_prefix("child ")
        .and_then(|c| c.parse().ok())
        .expect("child pid");
    d.wait_alert(child, "became-blocking", budget(Duration::from_secs(1)));
    // fdctl re-execs itself; its io_uring fd is close-on-exec.
    let reply = p.send("exec");
    assert!(reply.starts_with("ready"), "{reply}");
    d.wait_alert(p.pid, "became-ok", budget(Duration::from_secs(1)));
}

/// fentry and kprobe see the receiving fd_install; the tracepoint backend reads the fds out
/// of the SCM_RIGHTS message recvmsg returned. Either way at once, rescans off.
#[test]
fn fd_received_over_scm_rights_is_flagged_at_once() {
    let d = Daemon::start(&["--rescan", "600s"]);
    let within = budget(Duration::from_secs(1));
    let mut p = Fdctl::start(&fdctl());
    p.open("scm");
    let alert = d.wait_alert(p.pid, "became-blocking", within);
    assert!(
        file_kinds(&alert).iter().any(|k| k.contains("userfaultfd")),
        "{alert}"
    );
}

/// Polls `done` every 50 ms for at most `within`; true once it holds.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon watches the whole host, so other processes' events count too: UDP is held to a
/// tenth of what the same storm of TCP sockets (whose state decides) brings to user space.
#[test]
fn sockets_ok_whatever_their_state_are_dropped_in_the_kernel() {
    let d = Daemon::start(&[]);
    let events = || d.metric("ckpt_watch_events_total");
    let dropped = || d.metric("ckpt_watch_events_filtered_total");
    let mut p = Fdctl::start(&fdctl());
    // UDP sockets reach user space until it has judged one and told the kernel.
    let taught = eventually(budget(Duration::from_secs(10)), || {
        let before = dropped();
        p.send("sockets 10 udp");
        eventually(budget(Duration::from_secs(1)), || {
            dropped() - before >= 10.0
        })
    });
    assert!(taught, "UDP sockets never dropped in the kernel");
    let (before, dropped_before) = (events(), dropped());
    p.send("sockets 2000 udp");
    assert!(
        eventually(budget(Duration::from_secs(5)), || dropped()
            - dropped_before
            >= 2000.0),
        "only {} of 2000 UDP sockets dropped in the kernel",
        dropped() - dropped_before
    );
    let udp = events() - before;
    let before = events();
    p.send("sockets 2000 tcp");
    // Each TCP socket's install and close reach user space.
    let tcp_seen = eventually(budget(Duration::from_secs(5)), || {
        events() - before >= 4000.0
    });
    let tcp = events() - before;
    assert!(tcp_seen, "only {tcp} events for 2000 TCP sockets");
    assert!(
        udp * 10.0 < tcp,
        "{udp} events for 2000 UDP sockets, {tcp} for 2000 TCP ones"
    );
}

#[test]
fn lost_events_are_counted_and_state_still_converges() {
    let d = Daemon::start(&["--ring-buffer-size", "4096", "--rescan", "60s"]);
    let mut storm = Fdctl::start(&fdctl());
    storm.send("sockets 30000");
    let mut p = Fdctl::start(&fdctl());
    storm.send("sockets 30000");
    p.open("io_uring");
    storm.send("sockets 30000");
    // Whether its install event survived the storm or a loss-triggered rescan found it.
    d.wait_alert(p.pid, "became-blocking", budget(Duration::from_secs(10)));
    let lost = d.metric("ckpt_watch_events_lost_total");
    assert!(
        lost > 0.0,
        "a 4 KiB ring buffer lost nothing in a 90k-event storm?"
    );
    assert!(
        d.metric("ckpt_watch_reconciles_total") >= 2.0,
        "start + after the loss"
    );
}

#[test]
fn sighup_with_a_broken_profile_keeps_the_old_one() {
    let dir = std::env::temp_dir().join(format!("ckpt-daemon-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profile.toml");
    std::fs::write(&path, "[profile]\nname = \"mine\"\ncheckpointer = \"criu\"\nversion = \"4\"\nextends = \"criu-4\"\n").unwrap();
    let d = Daemon::start(&["--profile", path.to_str().unwrap()]);
    std::fs::write(&path, "[profile\nbroken").unwrap();
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + budget(Duration::from_secs(5));
    let logged = loop {
        match d
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) if line.contains("keeping the old profile") => break line,
            Ok(_) => continue,
            Err(_) => panic!("no error logged for the broken profile"),
        }
    };
    assert!(
        logged.contains("line 1"),
        "the error names the line: {logged}"
    );
    let mut p = Fdctl::start(&fdctl());
    p.open("io_uring");
    d.wait_alert(p.pid, "became-blocking", budget(Duration::from_secs(1)));
    std::fs::remove_dir_all(dir).unwrap();
}

/// BPF program and link ids a process holds fds to (`prog_id:` / `link_id:` in fdinfo).
fn held_bpf_ids(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut progs, mut links) = (vec![], vec![]);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let id = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u32>().ok())
            };
            if let Some(id) = id("prog_id:") {
                progs.push(id);
            } else if let Some(id) = id("link_id:") {
                links.push(id);
            }
        }
    }
    (progs, links)
}

/// `verified_insns` of each BPF program a process holds (fdinfo has it since Linux 5.16).
fn verified_insns(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("verified_insns:"))
                .filter_map(|v| v.trim().parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// The verifier walks each program's paths up to a million instructions; one near that
/// loads slowly here and may not load at all on an older verifier.
#[test]
fn programs_verify_far_below_the_verifier_limit() {
    let d = Daemon::start(&[]);
    let counts = verified_insns(d.child.id());
    if counts.is_empty() {
        eprintln!("skipped: this kernel's fdinfo has no verified_insns (Linux < 5.16)");
        return;
    }
    assert!(
        counts.iter().all(|&n| n < 200_000),
        "verified instructions per program: {counts:?}"
    );
}

#[test]
fn sigterm_exits_zero_and_detaches_everything() {
    let mut d = Daemon::start(&[]);
    let (progs, links) = held_bpf_ids(d.child.id());
    assert!(
        progs.len() >= 6 && links.len() >= 4,
        "programs {progs:?}, links {links:?}"
    );
    d.signal(libc::SIGTERM);
    let started = Instant::now();
    let limit = budget(Duration::from_secs(1));
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    assert!(status.success(), "{status}");
    // The kernel frees programs and links asynchronously after their last fd closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live_progs: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| progs.contains(id))
            .collect();
        let live_links: Vec<u32> = aya::programs::loaded_links()
            .filter_map(Result::ok)
            .map(|l| l.id())
            .filter(|id| links.contains(id))
            .collect();
        if live_progs.is_empty() && live_links.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded after exit: programs {live_progs:?}, links {live_links:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pinned = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("ckpt"))
        })
        .unwrap_or(false);
    assert!(!pinned, "nothing pinned in bpffs");
}
