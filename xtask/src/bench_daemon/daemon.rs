//! The daemon under test: `ckpt-watch daemon --format json` as a child in a process group of its
//! own, its alert lines read on a thread and stamped the moment they are read, its `/metrics`
//! on request. Dropping it stops the whole group (SIGTERM, then SIGKILL), on errors too;
//! `PR_SET_PDEATHSIG` covers the bench dying without unwinding.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// How long a start may take: BPF load, attach and the first full scan of the host.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean stop may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon a bench runs: its binary, and the install-event backend forced on it (none: the
/// best the kernel allows, as in production).
pub struct Under {
    pub binary: PathBuf,
    pub backend: Option<String>,
}

pub struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
    alerts: Receiver<Alert>,
    reader: Option<JoinHandle<()>>,
    /// From spawn to the first answer on `/healthz`, which the daemon gives only once its
    /// programs are attached and its first scan is done.
    pub ready_in: Duration,
}

/// One alert line: what it says, and when it was read.
pub struct Alert {
    pub event: String,
    /// The root of the workload alerted about (the subject leads its own session).
    pub pid: u32,
    /// The alert's own `time` (the daemon's clock as it built the line), ns since the epoch.
    pub time: Option<i64>,
    /// When the bench read the line, ns since the epoch.
    pub read: i64,
}

impl Daemon {
    /// Starts the daemon (with `extra` arguments) and waits until it serves, i.e. watches.
    pub fn start(under: &Under, extra: &[&str]) -> anyhow::Result<Daemon> {
        let t = Instant::now();
        let port = free_port()?;
        let log =
            std::env::temp_dir().join(format!("ckpt-bench-daemon.{}.log", std::process::id()));
        let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&under.binary);
        command
            .args(["daemon", "--format", "json", "--profile", "criu-4"])
            .args(["--rescan", "60s", "--listen", &format!("127.0.0.1:{port}")])
            .args(under.backend.iter().flat_map(|b| ["--backend", b]))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(
                || match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                    -1 => Err(io::Error::last_os_error()),
                    _ => Ok(()),
                },
            );
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} daemon", under.binary.display()))?;
        let stdout = child.stdout.take().context("the daemon's stdout")?;
        let (tx, alerts) = channel();
        let reader = std::thread::spawn(move || read_alerts(stdout, &tx));
        let mut daemon = Daemon {
            child,
            port,
            log,
            alerts,
            reader: Some(reader),
            ready_in: Duration::ZERO,
        };
        daemon.wait_ready()?;
        daemon.ready_in = t.elapsed();
        Ok(daemon)
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the daemon exited ({status}) before serving: {}",
                    self.log()
                );
            }
            if self.get("/healthz").is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the daemon is not serving after {START_TIMEOUT:?}: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's stderr so far, for error messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A GET on the daemon's HTTP endpoint: the body, or None when it does not answer.
    fn get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        // The daemon answers from the same thread that handles events: under a storm it may
        // take a while, but never this long.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        Some(body.to_string())
    }

    /// `/metrics`, waiting up to `timeout` for the daemon to answer: it serves from the thread
    /// that handles events, so after a storm it answers only once it has worked through its
    /// backlog, and not at all while it rescans without end.
    pub fn metrics(&self, timeout: Duration) -> anyhow::Result<Metrics> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(body) = self.get("/metrics") {
                return Ok(Metrics(body));
            }
            if Instant::now() > deadline {
                bail!("the daemon did not answer GET /metrics within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Drops the alerts received so far.
    pub fn drain_alerts(&self) {
        while self.alerts.try_recv().is_ok() {}
    }

    /// The next alert `event` about `pid`; alerts about other processes are skipped.
    pub fn wait_alert(&self, pid: u32, event: &str, timeout: Duration) -> anyhow::Result<Alert> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.alerts.recv_timeout(left) {
                Ok(alert) if alert.pid == pid && alert.event == event => return Ok(alert),
                Ok(alert) if alert.pid == pid => {
                    bail!("waiting for {event} of pid {pid}, got {}", alert.event)
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no {event} alert for pid {pid} within {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the daemon's output ended: {}", self.log())
                }
            }
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself: true once it has (and is reaped).
    fn exited_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let group = self.pid();
        // SIGTERM first: the daemon then detaches its programs at once, so the next
        // measurement starts on a host without them.
        // SAFETY: signalling our own child's process group.
        unsafe { libc::killpg(group, libc::SIGTERM) };
        if !self.exited_within(STOP_TIMEOUT) {
            // SAFETY: as above; the leader is not reaped yet, so the group id is still ours.
            unsafe { libc::killpg(group, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        // The daemon is gone, so its stdout is at EOF and the reader ends: joined, the bench
        // is single-threaded again and may fork the load.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port the kernel says is free now; the daemon binds it a moment later.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The reader thread: one [`Alert`] per line, stamped right after the line is read.
fn read_alerts(stdout: ChildStdout, alerts: &Sender<Alert>) {
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if !matches!(stdout.read_line(&mut line), Ok(n) if n > 0) {
            return;
        }
        let read = now_ns();
        if let Some(alert) = Alert::parse(&line, read)
            && alerts.send(alert).is_err()
        {
            return;
        }
    }
}

/// CLOCK_REALTIME in ns since the epoch: the clock of the alerts' `time`.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Alert {
    /// A JSON alert line's `event`, `workload.root` and `time`. The root, not the member: a
    /// `became-ok` names no member.
    fn parse(line: &str, read: i64) -> Option<Alert> {
        let alert: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Alert {
            event: alert["event"].as_str()?.to_string(),
            pid: alert["workload"]["root"].as_u64()?.try_into().ok()?,
            time: alert["time"].as_str().and_then(rfc3339_ns),
            read,
        })
    }
}

/// RFC 3339 (`2025-06-01T12:00:00.123456789Z`, or a `±hh:mm` offset) → ns since the epoch.
fn rfc3339_ns(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|n| n.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (clock, zone) = rest.split_at(rest.find(['Z', 'z', '+', '-'])?);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':').map(|n| n.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let digits = &fraction[..fraction.len().min(9)];
    let nanos = match digits {
        "" => 0,
        _ => digits.parse::<i64>().ok()? * 10_i64.pow(9 - digits.len() as u32),
    };
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let (h, m) = zone[1..].split_once(':')?;
            let offset = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if zone.starts_with('-') {
                -offset
            } else {
                offset
            }
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((seconds - offset) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A `/metrics` scrape (Prometheus text).
pub struct Metrics(String);

impl Metrics {
    /// The sum of the samples of a series: `name` for all its labels, or `name{label="x"}`.
    pub fn sum(&self, series: &str) -> f64 {
        self.samples()
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(name, _)| {
                *name == series
                    || (!series.contains('{') && name.starts_with(&format!("{series}{{")))
            })
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum()
    }

    /// The sample lines, without comments and histogram buckets.
    pub fn samples(&self) -> impl Iterator<Item = &str> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_to_the_nanosecond() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        // date -u -d 2024-02-29T12:34:56Z +%s
        assert_eq!(
            rfc3339_ns("2024-02-29T12:34:56.5Z"),
            Some(1_709_210_096_500_000_000)
        );
        assert_eq!(
            rfc3339_ns("2024-02-29T14:34:56.000000007+02:00"),
            Some(1_709_210_096_000_000_007)
        );
        assert_eq!(rfc3339_ns("yesterday"), None);
    }

    #[test]
    fn alert_lines_give_their_event_workload_root_and_time() {
        // As the daemon writes them: a `became-ok` names no member.
        let line = r#"{"time":"1970-01-01T00:00:01.25Z","hostname":"vm","event":"became-ok","workload":{"kind":"session","id":"42","name":"fdctl","root":42},"verdict":"ok","previous_verdict":"blocks","member":null,"fd":null,"kind":null,"what":null,"reason":null,"options":[]}"#;
        let alert = Alert::parse(line, 7).expect("parses");
        assert_eq!(
            (alert.event.as_str(), alert.pid, alert.time, alert.read),
            ("became-ok", 42, Some(1_250_000_000), 7)
        );
        let blocking = line
            .replace("became-ok", "became-blocking")
            .replace(r#""member":null"#, r#""member":{"pid":43,"comm":"x"}"#);
        assert_eq!(Alert::parse(&blocking, 7).map(|a| a.pid), Some(42));
        assert!(Alert::parse("not json", 7).is_none());
    }

    #[test]
    fn metric_series_are_summed_over_labels_or_picked_by_label() {
        let m = Metrics(
            "# TYPE x counter\nckpt_watch_events_total{kind=\"install\"} 5\n\
             ckpt_watch_events_total{kind=\"close\"} 2\nckpt_watch_events_filtered_total 9\n# EOF\n"
                .into(),
        );
        assert_eq!(m.sum("ckpt_watch_events_total"), 7.0);
        assert_eq!(m.sum("ckpt_watch_events_total{kind=\"close\"}"), 2.0);
        assert_eq!(m.sum("ckpt_watch_events_filtered_total"), 9.0);
        assert_eq!(m.sum("ckpt_watch_events"), 0.0);
    }
}
