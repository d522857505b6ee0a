//! Alerts: one line per workload whose verdict changed and held, as JSON or readable text,
//! written to stdout or a file that SIGUSR1 reopens (for log rotation).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

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

fn proc_text(pid: u32, file: &str) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/{file}")).ok().map(|b| {
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

/// Where alerts go.
pub enum Sink {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Sink {
    pub fn open(path: Option<PathBuf>) -> io::Result<Self> {
        match path {
            None => Ok(Sink::Stdout),
            Some(path) => {
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                Ok(Sink::File { path, file })
            }
        }
    }

    /// Reopens the file after a rotation (SIGUSR1); stdout stays as it is.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = OpenOptions::new().create(true).append(true).open(&*path)?;
        }
        Ok(())
    }

    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()
            }
            Sink::File { file, .. } => writeln!(file, "{line}"),
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
        let dir = std::env::temp_dir().join(format!("ckpt-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        std::fs::remove_dir_all(dir).unwrap();
    }
}
