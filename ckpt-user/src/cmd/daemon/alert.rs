//! Alerts: one line per workload whose verdict changed and held, as JSON or readable text,
//! written to stdout or a file that SIGUSR1 reopens (for log rotation).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::health::{SharedState, lock};
use super::metrics::label;
use super::state::{Change, WorkloadRef};
use crate::classify::Verdict;
use crate::report::printable;
use crate::scope::container_id::SHORT_ID;
use crate::scope::workload::Kind;

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// RFC 3339, UTC, nine fraction digits.
    pub time: String,
    pub hostname: String,
    pub event: &'static str,
    pub workload: WorkloadRef,
    pub verdict: Verdict,
    /// What the workload's previous alert said (ok when none said otherwise); null for a
    /// workload new to the daemon.
    pub previous_verdict: Option<Verdict>,
    /// What decides the verdict (null for `became-ok`): a member, and its fd (null for a
    /// mapping or a check of the task itself), the kind and the reason.
    pub member: Option<Member>,
    pub fd: Option<u32>,
    pub kind: Option<String>,
    pub what: Option<String>,
    pub reason: Option<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub pid: u32,
    pub comm: String,
    /// Only with `--alert-cmdline`: command lines can carry secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// RFC 3339 in UTC with a fixed nine-digit fraction, so lines sort and parse alike.
fn rfc3339(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// Of a command line, what an alert carries at most: its owner chooses its length (megabytes),
/// and queued alerts are held in memory.
const MAX_CMDLINE: u64 = 4096;

fn proc_text(pid: u32, file: &str) -> Option<String> {
    let mut b = vec![];
    std::fs::File::open(format!("/proc/{pid}/{file}"))
        .and_then(|f| f.take(MAX_CMDLINE).read_to_end(&mut b))
        .ok()
        .map(|_| {
            String::from_utf8_lossy(&b)
                .trim_end_matches(['\0', '\n'])
                .replace('\0', " ")
        })
}

impl Alert {
    pub fn new(change: Change, hostname: &str, with_cmdline: bool) -> Self {
        let d = change.decider;
        let member = d.as_ref().map(|d| Member {
            pid: d.pid,
            comm: d.comm.clone(),
            cmdline: with_cmdline.then(|| proc_text(d.pid, "cmdline")).flatten(),
        });
        // The path /proc shows names the file better than the kernel's facts.
        let what = d.as_ref().map(|d| {
            d.fd.and_then(|fd| std::fs::read_link(format!("/proc/{}/fd/{fd}", d.pid)).ok())
                .map_or_else(|| d.what.clone(), |p| p.display().to_string())
        });
        Alert {
            time: rfc3339(time::OffsetDateTime::now_utc()),
            hostname: hostname.to_string(),
            event: change.event,
            workload: change.workload,
            verdict: change.verdict,
            previous_verdict: change.previous,
            member,
            fd: d.as_ref().and_then(|d| d.fd),
            kind: d.as_ref().map(|d| d.kind.clone()),
            what,
            reason: d.map(|d| d.reason),
            options: change.options,
        }
    }

    /// One readable line: time, host, event, workload, verdict, and what decides it.
    pub fn text(&self) -> String {
        let w = &self.workload;
        let id = match w.kind {
            Kind::Container => w.id.get(..SHORT_ID).unwrap_or(&w.id),
            _ => &w.id,
        };
        let mut line = format!(
            "{} {} {:<15} {} {} ({}) root {}: {}",
            self.time,
            printable(&self.hostname),
            self.event,
            w.kind.as_str(),
            printable(id),
            printable(&w.name),
            w.root,
            self.verdict.as_str(),
        );
        if let Some(p) = self.previous_verdict {
            line.push_str(&format!(" (was {})", p.as_str()));
        }
        if !self.options.is_empty() {
            line.push_str(&format!(" [{}]", self.options.join(" ")));
        }
        if let Some(m) = &self.member {
            line.push_str(&format!(": pid {} ({})", m.pid, printable(&m.comm)));
            match self.fd {
                Some(fd) => line.push_str(&format!(" fd {fd}")),
                None => line.push(' '),
            }
            let kind = self.kind.as_deref().unwrap_or_default();
            let reason = self.reason.as_deref().unwrap_or_default();
            line.push_str(&format!(" {kind}: {reason}"));
            if let Some(what) = self.what.as_deref().filter(|w| !w.is_empty()) {
                line.push_str(&format!("  [{}]", printable(what)));
            }
            if let Some(cmdline) = &m.cmdline {
                line.push_str(&format!("  cmdline: {}", printable(cmdline)));
            }
        }
        line
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Alerts waiting for the writer at most. A writer this far behind (a pipe nobody reads, a
/// stuck disk) makes the newest alerts drop, counted and logged, rather than stall the event
/// loop; the workloads' verdicts still show in the metrics.
pub const QUEUE: usize = 512;

/// Where alerts go.
pub enum Sink {
    /// A duplicate of fd 1: written past std's `Stdout`, whose lock `main` holds.
    Stdout(File),
    /// None until a reader opens the FIFO at `path`.
    File { path: PathBuf, file: Option<File> },
}

/// Opens `path` to append to, waiting for nothing.
fn open_now(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // Writes block again: an alert line goes out whole or fails, never in part.
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an fd this function owns, with integer arguments only.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

impl Sink {
    /// Opens the output at start, so that a path that cannot be opened stops the daemon. A FIFO
    /// with no reader yet is left to the writer thread, which waits for one.
    pub fn open(path: Option<PathBuf>) -> io::Result<Self> {
        match path {
            None => Ok(Sink::Stdout(File::from(
                io::stdout().as_fd().try_clone_to_owned()?,
            ))),
            Some(path) => match open_now(&path) {
                Ok(file) => Ok(Sink::File {
                    path,
                    file: Some(file),
                }),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    tracing::warn!(
                        "--output {}: a FIFO nobody reads yet; alerts wait for a reader",
                        printable(&path.display().to_string())
                    );
                    Ok(Sink::File { path, file: None })
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Reopens the file after a rotation (SIGUSR1); stdout stays as it is.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = Some(OpenOptions::new().create(true).append(true).open(&*path)?);
        }
        Ok(())
    }

    /// Writes one line in one write, so that lines from several writers never interleave.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let file = match self {
            Sink::Stdout(f) => f,
            Sink::File { path, file } => match file {
                Some(f) => f,
                None => file.insert(OpenOptions::new().append(true).open(&*path)?),
            },
        };
        file.write_all(&bytes)
    }
}

/// Why an alert was not handed to the writer.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    #[error("{QUEUE} alerts already wait for the output")]
    QueueFull,
    #[error("the alert writer has stopped")]
    WriterGone,
}

impl Dropped {
    /// The `reason` label of `ckpt_watch_alerts_dropped_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue-full",
            Dropped::WriterGone => "writer-gone",
        }
    }
}

enum Message {
    Line {
        event: &'static str,
        line: String,
    },
    /// Wakes the writer to see `reopen`.
    Wake,
}

/// The alert writer: a thread of its own behind a bounded queue, so that a slow or stuck output
/// never holds up the event loop. It counts what it wrote and what failed, and leaves in the
/// shared state what `/healthz` judges it by.
pub struct Writer {
    queue: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
    done: Receiver<()>,
}

impl Writer {
    pub fn start(sink: Sink, shared: SharedState, capacity: usize) -> io::Result<Self> {
        let (queue, lines) = std::sync::mpsc::sync_channel(capacity);
        let (done_tx, done) = std::sync::mpsc::channel();
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("ckpt-alerts".into())
            .spawn(move || {
                write_all(sink, &lines, &flag, &shared);
                let _ = done_tx.send(());
            })?;
        Ok(Writer {
            queue,
            reopen,
            done,
        })
    }

    /// Queues one alert line, or says why not at once.
    pub fn send(&self, event: &'static str, line: String) -> Result<(), Dropped> {
        self.queue
            .try_send(Message::Line { event, line })
            .map_err(|e| match e {
                TrySendError::Full(_) => Dropped::QueueFull,
                TrySendError::Disconnected(_) => Dropped::WriterGone,
            })
    }

    /// Reopens the output before the next alert (SIGUSR1), even when the queue is full.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        let _ = self.queue.try_send(Message::Wake);
    }

    /// Lets the writer finish what is queued, waiting `within` at most (it may be stuck).
    pub fn finish(self, within: Duration) {
        drop(self.queue);
        let _ = self.done.recv_timeout(within);
    }
}

/// Marks the writer busy in the shared state while `f` runs (a write or an open can block).
fn busy<T>(shared: &SharedState, f: impl FnOnce() -> T) -> T {
    lock(shared).watch.alert_busy_since = Some(Instant::now());
    let out = f();
    lock(shared).watch.alert_busy_since = None;
    out
}

fn write_all(mut sink: Sink, lines: &Receiver<Message>, reopen: &AtomicBool, shared: &SharedState) {
    for message in lines {
        if reopen.swap(false, Ordering::Relaxed)
            && let Err(e) = busy(shared, || sink.reopen())
        {
            tracing::error!("SIGUSR1: reopening the output: {e}");
        }
        let Message::Line { event, line } = message else {
            continue;
        };
        let written = busy(shared, || sink.write_line(&line));
        let mut s = lock(shared);
        match written {
            Ok(()) => {
                s.metrics.alerts.get_or_create(&label("event", event)).inc();
                s.watch.alert_error = None;
            }
            Err(e) => {
                tracing::error!(event, "writing an alert: {e}");
                s.metrics
                    .alerts_dropped
                    .get_or_create(&label("reason", "write-failed"))
                    .inc();
                s.watch.alert_error = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(event: &'static str, verdict: Verdict) -> Change {
        Change {
            event,
            workload: WorkloadRef {
                kind: Kind::Session,
                id: "42".into(),
                name: "evil\x1b[2Jname".into(),
                root: 42,
            },
            verdict,
            previous: Some(Verdict::Ok),
            decider: Some(super::super::state::Decider {
                pid: 43,
                comm: "tab\there".into(),
                fd: Some(7),
                kind: "io_uring".into(),
                what: "anon_inode:[io_uring]".into(),
                reason: "CRIU cannot dump io_uring".into(),
            }),
            options: vec![],
        }
    }

    #[test]
    fn time_is_rfc3339_utc_with_nine_fraction_digits() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_042).unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000042Z");
        let now = rfc3339(time::OffsetDateTime::now_utc());
        assert_eq!(now.len(), "2023-11-14T22:13:20.000000042Z".len(), "{now}");
    }

    #[test]
    fn alerts_name_the_workload_and_what_decides_it() {
        let a = Alert::new(change("became-blocking", Verdict::Blocks), "host", false);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["workload"]["kind"], "session");
        assert_eq!(json["workload"]["root"], 42);
        assert_eq!(json["previous_verdict"], "ok");
        assert_eq!(json["member"]["pid"], 43);
        assert_eq!(json["fd"], 7);
        assert_eq!(json["kind"], "io_uring");
        assert!(json["member"].get("cmdline").is_none(), "only when asked");
        let text = a.text();
        assert!(
            !text.chars().any(|c| c.is_control()),
            "control characters escaped: {text:?}"
        );
        assert!(
            text.contains("evil\\u{1b}[2Jname") && text.contains("tab\\there"),
            "{text}"
        );
        assert!(
            text.contains("fd 7 io_uring: CRIU cannot dump io_uring"),
            "{text}"
        );
        let ok = Change {
            decider: None,
            ..change("became-ok", Verdict::Ok)
        };
        let json = serde_json::to_value(Alert::new(ok, "host", true)).unwrap();
        assert!(json["member"].is_null() && json["fd"].is_null(), "{json}");
    }

    #[test]
    fn sink_appends_and_reopens_after_rotation() {
        let tmp = tempfile::Builder::new()
            .prefix("ckpt-sink-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let path = dir.join("alerts.log");
        let mut sink = Sink::open(Some(path.clone())).unwrap();
        sink.write_line("one").unwrap();
        std::fs::rename(&path, dir.join("alerts.log.1")).unwrap();
        sink.reopen().unwrap();
        sink.write_line("two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("alerts.log.1")).unwrap(),
            "one\n"
        );
    }

    fn shared() -> SharedState {
        use crate::cmd::daemon::health::{Health, Shared};
        Arc::new(std::sync::Mutex::new(Shared::new(
            Health::default(),
            Instant::now(),
        )))
    }

    #[test]
    fn failed_writes_are_counted_as_failed_not_written() {
        let shared = shared();
        let sink = Sink::open(Some("/dev/full".into())).unwrap();
        let writer = Writer::start(sink, shared.clone(), 4).unwrap();
        for _ in 0..3 {
            writer.send("became-blocking", "x".into()).unwrap();
        }
        writer.finish(Duration::from_secs(5));
        let s = lock(&shared);
        let text = s.metrics.render();
        assert!(
            text.contains("ckpt_watch_alerts_dropped_total{reason=\"write-failed\"} 3"),
            "{text}"
        );
        assert!(!text.contains("ckpt_watch_alerts_total{"), "{text}");
        assert!(s.watch.alert_error.is_some() && s.watch.alert_busy_since.is_none());
    }

    #[test]
    fn a_stuck_output_fills_the_queue_never_the_caller() {
        let dir = tempfile::Builder::new()
            .prefix("ckpt-fifo-")
            .tempdir()
            .unwrap();
        let fifo = dir.path().join("alerts");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let shared = shared();
        let sink = Sink::open(Some(fifo.clone())).expect("no reader is no error");
        let writer = Writer::start(sink, shared.clone(), 2).unwrap();
        let t = Instant::now();
        let sent: Vec<bool> = (0..10)
            .map(|i| writer.send("became-ok", format!("line {i}")).is_ok())
            .collect();
        assert!(t.elapsed() < Duration::from_millis(100), "never waits");
        // The first is taken by the writer (blocked opening the FIFO), two wait.
        assert!(sent.iter().filter(|ok| !**ok).count() >= 7, "{sent:?}");
        std::thread::sleep(Duration::from_millis(50));
        assert!(lock(&shared).watch.alert_busy_since.is_some());
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        writer.finish(Duration::from_secs(5));
        let mut got = String::new();
        let _ = (&reader).read_to_string(&mut got);
        assert!(got.starts_with("line 0\n"), "{got:?}");
    }
}
