//! `ckpt-watch criu-hook` inside a real CRIU: Debian unstable's CRIU 4 (`cargo xtask criu4`)
//! dumps fdzoo cases from its command line with the hook as its action script. A dump that
//! would fail stops at pre-dump with ckpt-watch's reason in CRIU's log, before CRIU seizes a
//! task; one that would pass goes on; the options on CRIU's command line are the ones judged.
//! (Dumps over RPC, through podman and runc, are in containers.rs; Debian's CRIU 3.17 runs the
//! same hook in the kernel matrix's guests.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ckpt_tests::{Started, Zoo, ckpt_watch, criu4_dir, run_timeout, test_bin};

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");

/// A directory of its own, removed on drop.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ckpt-hook-{name}-"))
        .tempdir()
        .unwrap()
}

/// ckpt-watch under the name CRIU's config line gives it: `criu-hook`.
fn hook(dir: &Path) -> PathBuf {
    let link = dir.join("criu-hook");
    std::os::unix::fs::symlink(ckpt_watch(&test_bin(FDZOO)), &link).unwrap();
    link
}

struct Dump {
    passed: bool,
    log: String,
}

impl Dump {
    fn line(&self, prefix: &str) -> Option<usize> {
        self.log.lines().position(|l| l.starts_with(prefix))
    }

    /// The hook's verdict came before CRIU seized any task ("Seizing"/"Seized" in its log).
    fn judged_before_seizing(&self) -> bool {
        let verdict = self.line("ckpt-watch: the dump of tree");
        let seized = self.log.lines().position(|l| l.contains("Seiz"));
        match (verdict, seized) {
            (Some(v), Some(s)) => v < s,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// `criu dump -t PID --leave-running` with the hook and `options`.
fn dump(criu: &Path, hook: &Path, pid: u32, options: &[&str]) -> Dump {
    let images = scratch(&format!("img-{pid}"));
    let mut cmd = Command::new(criu.join("criu"));
    cmd.args(["dump", "-t", &pid.to_string(), "--leave-running", "-v4"])
        .arg("-D")
        .arg(images.path())
        .args(["-o", "dump.log", "--action-script"])
        .arg(hook)
        .args(options);
    let out = run_timeout(&mut cmd, Duration::from_secs(120)).unwrap();
    let log = std::fs::read(images.path().join("dump.log")).unwrap_or_default();
    Dump {
        passed: out.status.success(),
        log: String::from_utf8_lossy(&log).into_owned(),
    }
}

fn zoo(case: &str) -> Zoo {
    match Zoo::start(&test_bin(FDZOO), case) {
        Started::Ready(z) => z,
        Started::Unsupported(why) => panic!("{case} is supported on this kernel: {why}"),
    }
}

#[test]
fn the_hook_stops_failing_dumps_before_the_freeze_and_lets_the_rest_through() {
    let criu = criu4_dir(FDZOO);
    let dir = scratch("cli");
    let hook = hook(dir.path());

    let uring = zoo("io_uring");
    let d = dump(&criu, &hook, uring.pid, &[]);
    assert!(!d.passed, "{}", d.log);
    let verdict = d
        .line("ckpt-watch: the dump of tree")
        .map(|i| d.log.lines().nth(i));
    assert!(
        matches!(verdict, Some(Some(l)) if l.contains(": blocks")),
        "{}",
        d.log
    );
    assert!(d.log.contains("io_uring_fops"), "{}", d.log);
    assert!(
        d.line("ckpt-watch: stopping the dump").is_some(),
        "{}",
        d.log
    );
    assert!(d.log.contains("Pre dump script failed"), "{}", d.log);
    assert!(d.judged_before_seizing(), "{}", d.log);

    // A lock needs --file-locks: stopped without it, with the remedy; through with it, the
    // option read from CRIU's own command line.
    let lock = zoo("flock_ex");
    let d = dump(&criu, &hook, lock.pid, &[]);
    assert!(!d.passed, "{}", d.log);
    assert!(
        d.log.contains("needs: checkpointable with --file-locks")
            && d.log
                .contains("to pass --file-locks: `criu dump --file-locks`"),
        "{}",
        d.log
    );
    assert!(d.judged_before_seizing(), "{}", d.log);
    let d = dump(&criu, &hook, lock.pid, &["--file-locks"]);
    assert!(d.passed, "{}", d.log);
    assert!(
        d.log
            .lines()
            .any(|l| l.contains("--file-locks") && l.contains("criu's command line")),
        "{}",
        d.log
    );

    let plain = zoo("none");
    let d = dump(&criu, &hook, plain.pid, &[]);
    assert!(d.passed, "{}", d.log);
    assert!(d.log.contains(": ok: checkpointable as it is"), "{}", d.log);
}

#[test]
fn the_hook_outside_pre_dump_and_outside_criu() {
    let bin = ckpt_watch(&test_bin(FDZOO));
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(&bin);
        cmd.arg("criu-hook").env_remove("CRTOOLS_SCRIPT_ACTION");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_timeout(&mut cmd, Duration::from_secs(60)).unwrap()
    };
    // Not under CRIU: a usage error naming the config line.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("action-script /usr/lib/ckpt-watch/criu-hook"),
        "{err}"
    );
    // Every other action passes at once, silently.
    for action in ["post-dump", "pre-restore", "network-lock"] {
        let out = run(&[("CRTOOLS_SCRIPT_ACTION", action)]);
        assert_eq!(out.status.code(), Some(0), "{action}");
        assert!(out.stdout.is_empty(), "{action}");
    }
    // A pre-dump it cannot judge (the tree's root is gone) fails open, saying so.
    let out = run(&[
        ("CRTOOLS_SCRIPT_ACTION", "pre-dump"),
        ("CRTOOLS_INIT_PID", "999999999"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("cannot judge this dump, it goes on unguarded"),
        "{said}"
    );
}
