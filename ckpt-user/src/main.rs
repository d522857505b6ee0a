//! `ckpt-watch`: parse → run → print one line per error → exit with the documented status.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use ckpt_user::cli::{Cli, Exit, Invocation, log_filter};
use ckpt_user::report::printable;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Bytes of output gathered per write(2).
const OUT_BUFFER: usize = 1 << 16;

fn main() -> ExitCode {
    // Installed as CRIU's action script by a link named `criu-hook` (CRIU runs scripts
    // without arguments): that name is the subcommand.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.first().and_then(|a| Path::new(a).file_name()) == Some("criu-hook".as_ref()) {
        args.insert(1, "criu-hook".into());
    }
    let cli = Cli::parse_from(args);
    let env = |name: &str| std::env::var(name).ok();
    let directives = log_filter(
        cli.judging.verbose,
        env("CKPT_WATCH_LOG").as_deref(),
        env("RUST_LOG").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    let invocation = match cli.validate() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ckpt-watch: error: {}", printable(&e.to_string()));
            return ExitCode::from(Exit::Error as u8);
        }
    };
    // Reports are written whole at the end: stdout's own line buffer makes a write(2) of every
    // 1 KiB of JSON, which has no newlines (a host scan's ~180 KB: ~180 of them).
    let mut out = std::io::BufWriter::with_capacity(OUT_BUFFER, std::io::stdout().lock());
    let result = match &invocation {
        Invocation::Audit(args) => ckpt_audit::run(args, &mut out).map(|code| code as u8),
        Invocation::Preflight(args, j) => {
            ckpt_user::cmd::preflight::run(args, j, &mut out).map(|e| e as u8)
        }
        Invocation::Daemon(args, j) => ckpt_user::cmd::daemon::run(args, j).map(|e| e as u8),
        // CRIU's log holds its output: stderr and stdout both go there.
        Invocation::CriuHook(j) => ckpt_user::cmd::criu_hook::run(j, &mut out).map(|e| e as u8),
        Invocation::Scan(args, j) => ckpt_user::cmd::scan::scan(args, j, &mut out).map(|e| e as u8),
    };
    let result = match (result, out.flush()) {
        (Ok(_), Err(e)) => Err(anyhow::Error::new(e).context("cannot write the report")),
        (result, _) => result,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // A closed pipe (`ckpt-watch | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // Escaped: an error may quote a name or path someone else chose; it stays one line.
        Err(e) => {
            eprintln!("ckpt-watch: error: {}", printable(&format!("{e:#}")));
            ExitCode::from(Exit::Error as u8)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
