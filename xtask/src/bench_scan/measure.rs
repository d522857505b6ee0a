//! Running one tool to completion: wall time from spawn to reap, peak RSS from `wait4`'s rusage,
//! stdout to `/dev/null` (every tool pays for formatting its output, none for a terminal).

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A command to measure, and the exit codes that mean it did its job.
pub struct Tool {
    pub name: &'static str,
    program: PathBuf,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
    ok_codes: &'static [i32],
}

/// One run of a tool.
pub struct Outcome {
    pub wall: Duration,
    pub max_rss_kib: u64,
    pub stderr: String,
}

/// Several runs of a tool.
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub max_rss_kib: u64,
}

impl Tool {
    pub fn new(
        name: &'static str,
        program: impl Into<PathBuf>,
        args: &[&'static str],
        ok_codes: &'static [i32],
    ) -> Tool {
        Tool {
            name,
            program: program.into(),
            args: args.to_vec(),
            env: Vec::new(),
            ok_codes,
        }
    }

    /// The same command with `key=value` in its environment.
    pub fn with_env(&self, name: &'static str, key: &'static str, value: &'static str) -> Tool {
        let mut tool = Tool::new(name, &self.program, &self.args, self.ok_codes);
        tool.env = [self.env.as_slice(), &[(key, value)]].concat();
        tool
    }

    pub fn run(&self) -> anyhow::Result<Outcome> {
        // stderr goes to memory: a pipe could fill up and stall the tool while we sit in wait4.
        let mut stderr = memfd()?;
        let t = Instant::now();
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.try_clone()?)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let (status, usage) = wait4(child.id())?;
        let wall = t.elapsed();
        let mut text = String::new();
        stderr.rewind()?;
        stderr.read_to_string(&mut text)?;
        self.check(status, &text)?;
        Ok(Outcome {
            wall,
            // ru_maxrss is in KiB on Linux.
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
            stderr: text,
        })
    }

    fn check(&self, status: i32, stderr: &str) -> anyhow::Result<()> {
        let failure = if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else if !self.ok_codes.contains(&libc::WEXITSTATUS(status)) {
            format!("exit status {}", libc::WEXITSTATUS(status))
        } else {
            return Ok(());
        };
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        bail!("{} failed: {failure}\n{tail}", self.name)
    }
}

impl Stats {
    pub fn of(outcomes: &[Outcome]) -> Stats {
        let mut walls: Vec<Duration> = outcomes.iter().map(|o| o.wall).collect();
        walls.sort_unstable();
        let mid = walls.len() / 2;
        let median = if walls.len() % 2 == 1 {
            walls[mid]
        } else {
            (walls[mid - 1] + walls[mid]) / 2
        };
        Stats {
            median,
            min: walls[0],
            max_rss_kib: outcomes.iter().map(|o| o.max_rss_kib).max().unwrap_or(0),
        }
    }
}

fn memfd() -> io::Result<File> {
    // SAFETY: a valid C string; the fd returned is new and ours alone.
    let fd = unsafe { libc::memfd_create(c"bench-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is open and owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Reaps `pid` (std's `Child::wait` does not return the rusage).
fn wait4(pid: u32) -> io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to status and usage.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r != -1 {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
