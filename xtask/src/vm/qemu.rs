//! Boots one guest under QEMU's TCG and collects what it reported.
//!
//! KVM is not used: the machine's /dev/kvm is a paravirtual nested device in which Debian's
//! kernels die (DESIGN.md §3); TCG boots them in seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How to boot one guest.
pub struct Boot<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// The ext4 scratch disk; attached copy-on-write, so guests can share it.
    pub disk: &'a Path,
    /// `NAME=value` words for the kernel command line: the kernel hands unknown ones to
    /// /init as environment variables.
    pub env: Vec<String>,
    /// Where the serial logs go.
    pub dir: PathBuf,
    pub timeout: Duration,
}

/// What came back from a guest.
pub struct Outcome {
    /// The runner's exit code, `None` if the guest never wrote one (panic, hang, crash).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub records: String,
    pub console: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The console's last lines, for reports of guests that failed.
    pub fn console_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Boots the guest and waits for it to power off, or kills it at the timeout.
pub fn boot(b: &Boot) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&b.dir)?;
    let [console, records, code] =
        ["console.log", "records.jsonl", "exit-code"].map(|f| b.dir.join(f));
    for file in [&console, &records, &code] {
        std::fs::write(file, "")?;
    }
    let serial = |p: &Path| format!("file:{}", p.display());
    let append = format!("console=ttyS0 panic=-1 quiet {}", b.env.join(" "));
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            "2048",
        ])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(b.kernel)
        .arg("-initrd")
        .arg(b.initrd)
        .args(["-append", &append])
        .args(["-serial", &serial(&console), "-serial", &serial(&records)])
        .args(["-serial", &serial(&code)])
        .args([
            "-drive",
            &format!("file={},if=virtio,format=raw,snapshot=on", b.disk.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(b.dir.join("qemu.stderr"))?)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut timed_out = false;
    while child.try_wait()?.is_none() {
        if started.elapsed() > b.timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let qemu_err = read(&b.dir.join("qemu.stderr"));
    Ok(Outcome {
        code: read(&code).trim().parse().ok(),
        timed_out,
        records: read(&records),
        console: read(&console) + &qemu_err,
        elapsed: started.elapsed(),
    })
}
