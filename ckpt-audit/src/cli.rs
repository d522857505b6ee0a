//! The `ckpt-watch audit` command: flags, validation, and the run that ties audit, report and
//! profile together.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::profile::{self, ProfileMeta};
use crate::{AuditError, Options, audit, report, walk};

/// Find every definition of a kernel ops struct and report which lack a member.
///
/// EXAMPLES:
///   ckpt-watch audit /usr/src/linux-source-6.12
///   ckpt-watch audit --stat 2 /usr/src/linux-source-6.12
///   ckpt-watch audit --struct proc_ops --op proc_ioctl --json linux/fs/proc
///   ckpt-watch audit --emit-profile linux-cr.toml /usr/src/linux-source-6.12
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct AuditArgs {
    /// The ops struct to look for, without `struct`.
    #[arg(
        long = "struct",
        value_name = "NAME",
        default_value = "file_operations"
    )]
    pub struct_name: String,
    /// The member whose absence is reported (matched exactly: `read` is not `read_iter`).
    #[arg(long, value_name = "MEMBER", default_value = "checkpoint")]
    pub op: String,
    /// Print a histogram of the definitions lacking the member by the N-th component of their
    /// path, as the seed script's `cut -d / -f N` does. Paths are shown as `./` + the path below
    /// the kernel tree's root (the directory whose Makefile sets VERSION, else the given
    /// directory), so N=2 is the top-level directory (`fs`), N=3 the next (`ext4`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub stat: Option<u16>,
    /// Print each definition's initialiser with line numbers, and members set only under `#if`.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print JSON lines: one object per definition (with `"missing": true|false`), nothing else.
    #[arg(long, conflicts_with_all = ["stat", "verbose"])]
    pub json: bool,
    /// Write a classification profile (TOML, DESIGN.md §5) from the result to FILE.
    #[arg(long, value_name = "FILE")]
    pub emit_profile: Option<PathBuf>,
    /// The profile's name (default: derived from the member, `linux-cr` for `.checkpoint`).
    #[arg(long, value_name = "NAME", requires = "emit_profile")]
    pub profile_name: Option<String>,
    /// Kernel trees, subdirectories or C files to audit.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

fn is_c_ident(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Runs the audit, writing the report to `out`; returns the process exit code: 0 when every
/// input was audited, 2 on a usage or environment error — no path exists, or some path or file
/// could not be audited (unreadable, unparsable, nested too deep, not C): the report then covers
/// the rest, and each skipped input is named on stderr.
pub fn run(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    for (flag, v) in [("--struct", &args.struct_name), ("--op", &args.op)] {
        if !is_c_ident(v) {
            eprintln!("ckpt-watch audit: {flag} {v:?} is not a C identifier");
            return Ok(2);
        }
    }
    let opts = Options {
        struct_name: args.struct_name.clone(),
        op: args.op.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    let r = audit(&args.paths, &opts);
    // One line each: a path in a diagnostic may hold any byte a file name can.
    for d in &r.diagnostics {
        eprintln!("ckpt-watch audit: {}", d.to_string().escape_debug());
    }
    if r.existing_paths == 0 {
        eprintln!("ckpt-watch audit: none of the given paths exists");
        return Ok(2);
    }
    let written = report::write(
        out,
        &r,
        &opts,
        args.stat.map(usize::from),
        args.verbose,
        args.json,
    )
    .and_then(|()| out.flush());
    let status = if r.diagnostics.iter().any(AuditError::skips_input) {
        2
    } else {
        0
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(status),
        other => other?,
    }
    if let Some(file) = &args.emit_profile {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        let version = r
            .kernel_roots
            .first()
            .and_then(|root| walk::kernel_version(root));
        let meta = ProfileMeta::derive(
            &args.op,
            version,
            &paths.join(" "),
            args.profile_name.clone(),
        );
        if let Err(source) = std::fs::write(file, profile::render(&r, &args.op, &meta)) {
            eprintln!(
                "ckpt-watch audit: {}",
                AuditError::ProfileWrite {
                    path: file.clone(),
                    source
                }
            );
            return Ok(2);
        }
    }
    Ok(status)
}
