//! One fdzoo subject inside the guest.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

pub struct Subject {
    child: Child,
    pub pid: u32,
}

impl Subject {
    /// Starts `fdzoo --dir ROOT/CASE CASE`. `Ok(Err(why))`: the kernel cannot make the case.
    pub fn start(case: &str, root: &str) -> anyhow::Result<Result<Subject, String>> {
        let dir = format!("{root}/{case}");
        std::fs::create_dir_all(&dir)?;
        // stderr to a file, not the console: a tty fd would be one more thing for CRIU.
        let err_path = format!("/tmp/fdzoo-{case}.err");
        let mut child = Command::new("/bin/fdzoo")
            .args(["--dir", &dir, case])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_path)?)
            .spawn()
            .context("starting fdzoo")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("fdzoo stdout")?).read_line(&mut line)?;
        if let Some(rest) = line.trim().strip_prefix("READY pid=") {
            let pid = rest.split(' ').next().unwrap_or(rest);
            let pid = pid.parse().context("fdzoo's READY pid")?;
            return Ok(Ok(Subject { child, pid }));
        }
        let status = child.wait()?;
        let why = format!(
            "{} {}",
            line.trim(),
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        if status.code() == Some(77) {
            return Ok(Err(why.trim().to_string()));
        }
        anyhow::bail!("fdzoo {case} failed ({status}): {}", why.trim())
    }

    /// SIGTERM: fdzoo removes its files and mounts and stops its peers itself.
    pub fn stop(mut self) {
        // SAFETY: kill takes no pointers; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
