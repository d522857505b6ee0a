//! Alerts: one line per change of a process's verdict, as JSON or readable text, written to
//! stdout or a file that SIGUSR1 reopens (for log rotation).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::aggregate::{FileReport, ProcessReport};
use crate::classify::Verdict;
use crate::scope::container_id;

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub event: &'static str,
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    pub cgroup: String,
    pub container_id: String,
    pub verdict: Verdict,
    pub options: Vec<String>,
    /// The files and mappings that are not ok, as in `--json`.
    pub files: Vec<FileReport>,
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp_nanos().to_string())
}

fn proc_text(pid: u32, file: &str) -> String {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches(['\0', '\n'])
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// The cgroup v2 path from `/proc/PID/cgroup` (`0::/path`).
fn cgroup_v2(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string()
}

impl Alert {
    pub fn new(event: &'static str, report: ProcessReport) -> Self {
        let cgroup = cgroup_v2(&proc_text(report.pid, "cgroup"));
        let files = report
            .files
            .into_iter()
            .chain(report.mappings)
            .filter(|f| f.verdict != Verdict::Ok)
            .map(|mut f| {
                if let Some(fd) = f.fd
                    && let Ok(path) = std::fs::read_link(format!("/proc/{}/fd/{fd}", report.pid))
                {
                    f.what = path.display().to_string();
                }
                f
            })
            .collect();
        Alert {
            time: now_rfc3339(),
            event,
            pid: report.pid,
            cmdline: proc_text(report.pid, "cmdline"),
            // The full id, as engines take it (`docker inspect`, `crictl inspect`).
            container_id: container_id::from_path(&cgroup)
                .map(|(c, _)| c.id)
                .unwrap_or_default(),
            cgroup,
            comm: report.comm,
            verdict: report.verdict,
            options: report.options,
            files,
        }
    }

    /// One readable line: time, event, process, and the files that decide it.
    pub fn text(&self) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| match f.fd {
                Some(fd) => format!("fd {fd} {} ({}): {}", f.kind, f.fops, f.reason),
                None => format!("map {} ({}): {}", f.kind, f.fops, f.reason),
            })
            .collect();
        let options = if self.options.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.options.join(" "))
        };
        format!(
            "{} {:<15} pid {} ({}) {}{}{}{}",
            self.time,
            self.event,
            self.pid,
            self.comm,
            self.verdict.as_str(),
            options,
            if files.is_empty() { "" } else { ": " },
            files.join("; ")
        )
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

    #[test]
    fn cgroup_v2_line_is_found() {
        assert_eq!(
            cgroup_v2("0::/system.slice/x.scope\n"),
            "/system.slice/x.scope"
        );
        assert_eq!(cgroup_v2("1:name=systemd:/x\n"), "");
    }

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        let t = now_rfc3339();
        assert!(t.contains('T') && t.ends_with('Z'), "{t}");
        let frac = t.split('.').nth(1).unwrap_or("");
        assert!(frac.len() > 3, "sub-second digits in {t}");
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
