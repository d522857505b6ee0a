//! `ckpt-watch`: parse → run → print one line per error → exit with the documented status.

use std::io::Write;
use std::process::ExitCode;

use ckpt_user::cli::{Cli, Exit, Invocation};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.judging.verbose;
    let level = if verbose { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CKPT_WATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let invocation = match cli.validate() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ckpt-watch: error: {e}");
            return ExitCode::from(Exit::Error as u8);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match &invocation {
        Invocation::Audit(args) => ckpt_audit::run(args, &mut out).map(|code| code as u8),
        Invocation::Preflight(args, j) => {
            ckpt_user::preflight::run(args, j, &mut out).map(|e| e as u8)
        }
        Invocation::Daemon(args, j) => ckpt_user::daemon::run(args, j).map(|e| e as u8),
        Invocation::Scan(args, j) => ckpt_user::run::scan(args, j, &mut out).map(|e| e as u8),
    };
    let _ = out.flush();
    match result {
        Ok(code) => ExitCode::from(code),
        // A closed pipe (`ckpt-watch | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckpt-watch: error: {e:#}");
            ExitCode::from(Exit::Error as u8)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
