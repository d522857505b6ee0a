//! Integration tests of the real ckpt-watch binary against real processes: helpers to start
//! `fdzoo` cases and run the binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The built `ckpt-watch`, beside this package's binaries in the same target directory.
pub fn ckpt_watch(fdzoo: &str) -> PathBuf {
    let path = Path::new(fdzoo).with_file_name("ckpt-watch");
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p ckpt-user` first (./x test does)",
        path.display()
    );
    path
}

/// A running fdzoo case; killed (and its peers cleaned up by fdzoo itself) on drop.
pub struct Zoo {
    child: Child,
    pub pid: u32,
    /// The rest of the READY line: `peers=...`, `ino=...`.
    pub extra: String,
}

pub enum Started {
    Ready(Zoo),
    /// The case cannot be made on this kernel (fdzoo exit 77), with its reason.
    Unsupported(String),
}

impl Zoo {
    pub fn start(fdzoo: &str, case: &str) -> Started {
        let mut child = Command::new(fdzoo)
            .arg(case)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fdzoo starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read fdzoo's READY line");
        if let Some(rest) = line.strip_prefix("READY pid=") {
            let (pid, extra) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            return Started::Ready(Zoo {
                pid: pid.parse().expect("numeric pid"),
                extra: extra.to_string(),
                child,
            });
        }
        let out = child.wait_with_output().expect("fdzoo exits");
        let why = format!("{line}{}", String::from_utf8_lossy(&out.stderr))
            .trim()
            .to_string();
        if out.status.code() == Some(77) {
            return Started::Unsupported(why);
        }
        panic!("fdzoo {case} failed ({}): {why}", out.status);
    }
}

impl Drop for Zoo {
    fn drop(&mut self) {
        // SIGTERM lets fdzoo remove its files and stop its peers itself.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Runs ckpt-watch with `args`.
pub fn run(binary: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .output()
        .expect("ckpt-watch runs")
}
