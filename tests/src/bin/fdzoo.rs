//! `fdzoo`: a fixture process for ckpt-watch's integration tests.
//!
//! `fdzoo [--dir DIR] [--no-janitor] CASE` becomes a *subject* process that holds exactly one
//! kind of fd (or mapping) named by CASE, as listed in `shared/oracle/criu-4.2-zoo.md`, then
//! waits until it is killed. `fdzoo --list` prints the case names.
//!
//! The subject calls setsid() (except for `noshell`), closes every inherited fd above 2,
//! puts stdin on /dev/null, creates the case, and prints one line to stdout:
//! `READY pid=<pid> [peers=<pid>,...] [ino=<inode>]`. A case that cannot exist on this
//! machine prints `UNSUPPORTED <case>: <reason>` and exits 77; a failure prints
//! `ERROR <case>: <what>: <errno text>` and exits 1.
//!
//! Files live under DIR (default: a fresh temp dir). They and any mounts are removed at
//! SIGTERM/SIGINT/SIGHUP by the subject itself, and after any other death (SIGKILL) by a
//! janitor process outside the subject's tree and session. Peers (the other ends of
//! external pipes, sockets, ptys...) are outside the tree as well and exit with the subject.
//! `--no-janitor` is for a subject in a container, whose files go with the container: there
//! the janitor would be reparented into the container, one more process (and pidfd) to dump.

#[path = "fdzoo/anon.rs"]
mod anon;
#[path = "fdzoo/cases.rs"]
mod cases;
#[path = "fdzoo/ctx.rs"]
mod ctx;
#[path = "fdzoo/devices.rs"]
mod devices;
#[path = "fdzoo/files.rs"]
mod files;
#[path = "fdzoo/fuse.rs"]
mod fuse;
#[path = "fdzoo/mappings.rs"]
mod mappings;
#[path = "fdzoo/namespaces.rs"]
mod namespaces;
#[path = "fdzoo/procs.rs"]
mod procs;
#[path = "fdzoo/sockets.rs"]
mod sockets;
#[path = "fdzoo/sys.rs"]
mod sys;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use cases::{CASES, Case, Shape};
use ctx::{Ctx, Held};
use sys::{Error, Result};

const USAGE: &str = "usage: fdzoo [--dir DIR] [--no-janitor] CASE | fdzoo --list";
/// Signals that end the subject cleanly (with cleanup).
const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let mut dir = None;
    let mut janitor = true;
    let mut name = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--list") => {
                let names: Vec<&str> = CASES.iter().map(|case| case.name).collect();
                say(std::io::stdout(), &(names.join("\n") + "\n"));
                return ExitCode::SUCCESS;
            }
            Some("--dir") => dir = args.next().map(PathBuf::from),
            Some("--no-janitor") => janitor = false,
            Some(other) if name.is_none() && !other.starts_with('-') => {
                name = Some(other.to_owned())
            }
            _ => return usage(),
        }
    }
    let Some(name) = name else { return usage() };
    let Some(case) = CASES.iter().find(|case| case.name == name) else {
        say(
            std::io::stderr(),
            &format!("fdzoo: unknown case {name:?} (see fdzoo --list)\n"),
        );
        return ExitCode::from(2);
    };
    ExitCode::from(run(case, dir, janitor))
}

fn usage() -> ExitCode {
    say(std::io::stderr(), &format!("{USAGE}\n"));
    ExitCode::from(2)
}

/// Sets the subject up, holds the case until a stop signal, cleans up. Returns the exit code.
fn run(case: &Case, dir: Option<PathBuf>, janitor: bool) -> u8 {
    sys::close_all_from(3, &[]);
    // SAFETY: umask cannot fail; file modes then match the oracle table.
    unsafe { libc::umask(0o022) };
    sys::set_sigmask(libc::SIG_BLOCK, &STOP_SIGNALS);
    let session = if case.shape == Shape::NoShell {
        Ok(())
    } else {
        become_session_leader()
    };
    let mut ctx = match session
        .and_then(|()| sys::to_dev_null(0))
        .and_then(|()| Ctx::new(dir))
    {
        Ok(ctx) => ctx,
        Err(e) => return report_failure(case, &e),
    };
    let ready = (case.setup)(&mut ctx)
        .and_then(Held::place)
        .and_then(|ino| match janitor {
            true => procs::spawn_janitor(&ctx).map(|()| ino),
            false => Ok(ino),
        });
    let ino = match ready {
        Ok(ino) => ino,
        Err(e) => {
            ctx.cleanup.run();
            return report_failure(case, &e);
        }
    };
    if !say(std::io::stdout(), &ready_line(&ctx, ino)) {
        ctx.cleanup.run();
        return 1;
    }
    if let Err(e) = finish_stdio(case.shape, &ctx) {
        say(std::io::stderr(), &format!("ERROR {}: {e}\n", case.name));
    }
    wait_signal(&STOP_SIGNALS);
    ctx.cleanup.run();
    0
}

/// `READY pid=<pid> [peers=<pid>,...] [ino=<inode>]\n`
fn ready_line(ctx: &Ctx, ino: Option<u64>) -> String {
    let peers: Vec<String> = ctx.peers.iter().map(ToString::to_string).collect();
    let peers = if peers.is_empty() {
        String::new()
    } else {
        format!(" peers={}", peers.join(","))
    };
    let ino = ino.map(|ino| format!(" ino={ino}")).unwrap_or_default();
    format!("READY pid={}{peers}{ino}\n", ctx.pid)
}

/// Calls setsid(), unless the process already leads its session. setsid() fails for a
/// process group leader (started by a shell with job control): then the rest runs in a
/// forked child, and this process only relays stop signals and the exit status.
fn become_session_leader() -> Result<()> {
    // SAFETY: getsid/getpid/setsid take no pointers.
    unsafe {
        if libc::getsid(0) == libc::getpid() || libc::setsid() != -1 {
            return Ok(());
        }
    }
    let child = procs::fork()?;
    if child == 0 {
        // SAFETY: prctl and setsid take no pointers; the child leads no process group.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            sys::cvt(libc::setsid(), "setsid")?;
        }
        return Ok(());
    }
    relay_to(child)
}

/// Forwards stop signals to `child` until it exits, then exits with its status.
fn relay_to(child: libc::pid_t) -> ! {
    let _ = sys::to_dev_null(0).and_then(|()| sys::to_dev_null(1));
    sys::set_sigmask(libc::SIG_BLOCK, &[libc::SIGCHLD]);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our child with a valid status pointer.
        if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1
            };
            procs::exit(code);
        }
        let sig = wait_signal(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
        if sig != libc::SIGCHLD {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Applies what the case's shape says about stdio once READY is out.
fn finish_stdio(shape: Shape, ctx: &Ctx) -> Result<()> {
    match shape {
        Shape::Normal => Ok(()),
        Shape::NoFds | Shape::NoShell => {
            sys::close_all_from(0, &[]);
            Ok(())
        }
        Shape::StdioToFile => {
            let log = sys::open(
                ctx.dir.join(files::STDIO_LOG),
                libc::O_WRONLY | libc::O_APPEND,
            )?;
            for fd in [1, 2] {
                // SAFETY: dup2 of an owned fd onto a standard fd number.
                sys::cvt(
                    unsafe { libc::dup2(log.as_raw_fd(), fd) },
                    "dup2(stdio.log)",
                )?;
            }
            Ok(())
        }
    }
}

/// Waits for one of the (blocked) `signals` and returns it.
fn wait_signal(signals: &[i32]) -> i32 {
    // SAFETY: the sigset is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        loop {
            let sig = libc::sigwaitinfo(&set, std::ptr::null_mut());
            if sig > 0 {
                return sig;
            }
        }
    }
}

fn report_failure(case: &Case, err: &Error) -> u8 {
    let (word, code) = match err {
        Error::Unsupported(_) => ("UNSUPPORTED", 77),
        _ => ("ERROR", 1),
    };
    say(std::io::stdout(), &format!("{word} {}: {err}\n", case.name));
    code
}

/// Writes and flushes `text`; false if that failed (e.g. the reader is gone). Never panics.
fn say(mut out: impl Write, text: &str) -> bool {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}
