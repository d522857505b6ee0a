//! Command-line interface: raw flags (clap) → [`Cli::validate`] → a ready-to-run [`Invocation`].
//!
//! The flags that say how to judge (`--profile`, `--with`, `--engine`) and how to print
//! (`--json`, `-v`) are global: they work before or after the subcommand. A flag that means
//! nothing for the command given (`--pid` with `preflight`, `--profile` with `audit`) is refused
//! with one line, never silently ignored.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::checkpointer::engine::Engine;
use crate::classify::Verdict;

const EXAMPLES: &str = "\
EXAMPLES:
    sudo ckpt-watch                      # every workload (container, unit, session) that would not checkpoint
    sudo ckpt-watch --processes          # ... per process, each as the root of its own dump
    sudo ckpt-watch --pid 1234           # every fd and mapping of one process
    sudo ckpt-watch --pid 1234 --tree    # the process and its descendants as one dump
    sudo ckpt-watch --pid 1234 --with '--tcp-established --file-locks'
    sudo ckpt-watch --pid 1234 --json --save-snapshot snap.json
    ckpt-watch --replay snap.json --pid 1234     # judge a saved snapshot, no root needed
    ckpt-watch audit --stat 2 /usr/src/linux     # ops structs lacking .checkpoint

EXIT STATUS:
    0 checkpointable as it is    1 something blocks    2 usage or environment error
    3 checkpointable only with the listed options       4 unknown kinds present

ENVIRONMENT:
    CKPT_WATCH_LOG, else RUST_LOG    log filter (tracing directives, e.g. `ckpt_user=trace,aya=debug`);
                                     without them: warnings, and ckpt-watch's own debug with -v";

#[derive(Debug, Parser)]
#[command(
    name = "ckpt-watch",
    // The commit too: two builds of one version differ (build.rs sets CKPT_GIT_COMMIT).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CKPT_GIT_COMMIT"), ")"),
    about = "Would this process survive a CRIU checkpoint right now? If not, which open file stops it?",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub judging: JudgingArgs,
    #[command(flatten)]
    pub scan: ScanArgs,
}

/// How to judge and how to print: the same for the scan, `preflight` and `daemon`, and accepted
/// anywhere on the command line.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct JudgingArgs {
    /// Profile: a built-in name (criu-4, criu-3.17) or a TOML file. Default: the CRIU on PATH,
    /// else the newest.
    #[arg(long, global = true, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// Judge as if the checkpointer ran with these options, e.g. "--tcp-established --file-locks".
    #[arg(
        long = "with",
        global = true,
        value_name = "OPTIONS",
        allow_hyphen_values = true
    )]
    pub with: Option<String>,
    /// The engine that will checkpoint, and so the options it passes to CRIU (default: criu
    /// for a process; for a container, the engine whose cgroup layout it has). CRIU's config
    /// files are read either way.
    #[arg(long, global = true, value_enum, value_name = "ENGINE")]
    pub engine: Option<Engine>,
    /// The CRIU binary that will dump (default: `criu` on PATH, as runc and LXC find it). Its
    /// version picks the profile; preflight asks it `criu check`.
    #[arg(long, global = true, value_name = "FILE")]
    pub criu: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Show every fd and mapping, not only those that are not ok; log timings to stderr.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
}

/// Flags of the host and `--pid` scan (no subcommand).
#[derive(Debug, Default, clap::Args)]
pub struct ScanArgs {
    /// Judge this process (default: every process on the host, each as its own dump).
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Option<u32>,
    /// With --pid: judge the process and all its descendants as one dump.
    #[arg(long, requires = "pid")]
    pub tree: bool,
    /// Host scan: one row per process, each judged as the root of its own dump, instead of
    /// one per workload (container, unit, session).
    #[arg(long, conflicts_with = "pid")]
    pub processes: bool,
    /// Also write the scan's raw facts to FILE (JSON) for --replay.
    #[arg(long, value_name = "FILE")]
    pub save_snapshot: Option<PathBuf>,
    /// Judge a saved snapshot instead of the live kernel (no privileges needed).
    #[arg(long, value_name = "FILE", conflicts_with = "save_snapshot")]
    pub replay: Option<PathBuf>,
}

impl ScanArgs {
    /// The first scan-only flag given, for the error when a subcommand was given too.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.pid.is_some(), "--pid"),
            (self.tree, "--tree"),
            (self.processes, "--processes"),
            (self.save_snapshot.is_some(), "--save-snapshot"),
            (self.replay.is_some(), "--replay"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find ops structs lacking a member in a kernel source tree (the 2009 Linux-CR script, done right).
    #[command(after_help = AUDIT_HELP)]
    Audit(ckpt_audit::AuditArgs),
    /// Would this container's checkpoint succeed with the options really in force? Per
    /// container: verdict, blocking processes and files, options needed (exit status as --pid).
    #[command(after_help = PREFLIGHT_EXAMPLES)]
    Preflight(PreflightArgs),
    /// Watch the host live: alerts when a process becomes uncheckpointable, Prometheus metrics.
    Daemon(crate::cmd::daemon::DaemonArgs),
    /// CRIU's action script: at pre-dump, stop a dump that would fail, before the tree is
    /// frozen, with the reason in CRIU's log. Enable: `action-script /usr/lib/ckpt-watch/criu-hook`.
    #[command(after_help = CRIU_HOOK_HELP)]
    CriuHook,
}

/// A validated command line: what to run and with which judging flags.
#[derive(Debug)]
pub enum Invocation {
    Scan(ScanArgs, JudgingArgs),
    Preflight(PreflightArgs, JudgingArgs),
    Daemon(crate::cmd::daemon::DaemonArgs, JudgingArgs),
    Audit(ckpt_audit::AuditArgs),
    CriuHook(JudgingArgs),
}

/// A flag given where it means nothing.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{flag} applies to the process scan, not to `{command}`: drop it, or drop `{command}`")]
    ScanOnly {
        flag: &'static str,
        command: &'static str,
    },
    #[error("{flag} does not apply to `audit`, which reads kernel sources, not processes")]
    NotForAudit { flag: &'static str },
    #[error(
        "audit: --json prints one object per definition; it cannot be combined with --stat or -v"
    )]
    AuditJson,
    #[error("--json: the daemon writes alerts as JSON lines with `--format json`")]
    DaemonJson,
    #[error(
        "criu-hook judges with the engine and options of the CRIU that runs it: drop --engine and --with"
    )]
    HookOptions,
}

impl Cli {
    /// The second stage: refuses flags the chosen command would ignore.
    pub fn validate(self) -> Result<Invocation, UsageError> {
        let Some(command) = self.command else {
            return Ok(Invocation::Scan(self.scan, self.judging));
        };
        let name = match &command {
            Command::Audit(_) => "audit",
            Command::Preflight(_) => "preflight",
            Command::Daemon(_) => "daemon",
            Command::CriuHook => "criu-hook",
        };
        if let Some(flag) = self.scan.first_given() {
            return Err(UsageError::ScanOnly {
                flag,
                command: name,
            });
        }
        let j = self.judging;
        match command {
            Command::Audit(mut args) => {
                let judging = [
                    (j.profile.is_some(), "--profile"),
                    (j.criu.is_some(), "--criu"),
                    (j.with.is_some(), "--with"),
                    (j.engine.is_some(), "--engine"),
                ];
                if let Some((_, flag)) = judging.into_iter().find(|(given, _)| *given) {
                    return Err(UsageError::NotForAudit { flag });
                }
                // Audit has its own --json and -v; the global ones, given before `audit`, mean
                // the same.
                args.json |= j.json;
                args.verbose |= j.verbose;
                if args.json && (args.verbose || args.stat.is_some()) {
                    return Err(UsageError::AuditJson);
                }
                Ok(Invocation::Audit(args))
            }
            Command::Preflight(args) => Ok(Invocation::Preflight(args, j)),
            Command::Daemon(_) if j.json => Err(UsageError::DaemonJson),
            Command::Daemon(args) => Ok(Invocation::Daemon(args, j)),
            // The engine and options are those of the CRIU running the hook.
            Command::CriuHook if j.engine.is_some() || j.with.is_some() => {
                Err(UsageError::HookOptions)
            }
            Command::CriuHook => Ok(Invocation::CriuHook(j)),
        }
    }
}

const AUDIT_HELP: &str = "\
EXAMPLES:
    ckpt-watch audit /usr/src/linux-source-6.12
    ckpt-watch audit --stat 2 /usr/src/linux-source-6.12
    ckpt-watch audit --struct proc_ops --op proc_ioctl --json linux/fs/proc

EXIT STATUS:
    0 every input audited    2 a usage or environment error, or some path or file could not be
    audited (unreadable, not C, unparsable, nested too deep): each is named on stderr, and the
    report covers the rest";

const CRIU_HOOK_HELP: &str = "\
CRIU runs it with CRTOOLS_SCRIPT_ACTION set; at pre-dump it judges the tree under
CRTOOLS_INIT_PID with CRIU's own config files and command line (or, for a dump over RPC, the
flags of the runc driving it). Enable it with one line in /etc/criu/default.conf (criu, LXC)
and /etc/criu/runc.conf (runc, Podman, CRI-O, containerd):

    action-script /usr/lib/ckpt-watch/criu-hook

EXIT STATUS:
    0 the dump goes on: ok, unknown, every other action, or ckpt-watch could not judge (it fails
    open and says why in CRIU's log)    1 blocks    3 needs options CRIU was not given";

const PREFLIGHT_EXAMPLES: &str = "\
EXAMPLES:
    sudo ckpt-watch preflight --all-containers
    sudo ckpt-watch preflight --container 3f4e2a1b9c0d        # a unique id prefix is enough
    sudo ckpt-watch preflight --cgroup /system.slice/docker-3f4e...scope --json
    sudo ckpt-watch preflight --container 3f4e --engine crio --with '--tcp-established'

Options in force: CRIU's config files (/etc/criu/default.conf, ~/.criu/default.conf,
$CRIU_CONFIG_FILE, and /etc/criu/runc.conf for runc, podman and crio), the engine's defaults
(--engine, else the engine whose cgroup layout the container has), then --with.";

/// What `preflight` judges: exactly one of these.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct PreflightTarget {
    /// A container by id (64 hex digits, or a unique prefix such as the 12 `docker ps` shows)
    /// or LXC name.
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// A cgroup directory (/sys/fs/cgroup/...) or a path inside the hierarchy (/system.slice/x).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Every container found in the cgroup hierarchies.
    #[arg(long)]
    pub all_containers: bool,
}

#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub target: PreflightTarget,
}

/// The log filter (tracing's directives): `CKPT_WATCH_LOG`, else `RUST_LOG`, else with `-v`
/// debug for ckpt-watch's own crates only (a dependency's debug, such as aya's hundreds of
/// relocation lines, is not what `-v` asks for), else warnings.
pub fn log_filter(verbose: bool, ckpt_watch_log: Option<&str>, rust_log: Option<&str>) -> String {
    let set = |v: &str| !v.trim().is_empty();
    match ckpt_watch_log
        .filter(|v| set(v))
        .or(rust_log.filter(|v| set(v)))
    {
        Some(directives) => directives.to_string(),
        None if verbose => "warn,ckpt_watch=debug,ckpt_user=debug,ckpt_audit=debug".into(),
        None => "warn".into(),
    }
}

/// Process exit status (see `--help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Blocks = 1,
    Error = 2,
    Needs = 3,
    Unknown = 4,
}

impl From<Verdict> for Exit {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Ok => Exit::Ok,
            Verdict::Needs => Exit::Needs,
            Verdict::Unknown => Exit::Unknown,
            Verdict::Blocks => Exit::Blocks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        Cli::try_parse_from(std::iter::once("ckpt-watch").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn tree_requires_pid() {
        assert!(parse(&["--tree"]).is_err());
        let Ok(Invocation::Scan(scan, j)) =
            parse(&["--pid", "5", "--tree", "--with", "--tcp-close"])
        else {
            panic!("not a scan")
        };
        assert_eq!((scan.pid, scan.tree), (Some(5), true));
        assert_eq!(j.with.as_deref(), Some("--tcp-close"));
    }

    #[test]
    fn preflight_takes_exactly_one_target() {
        assert!(parse(&["preflight"]).is_err());
        assert!(parse(&["preflight", "--container", "ab", "--all-containers"]).is_err());
    }

    /// Judging flags mean the same before and after the subcommand.
    #[test]
    fn judging_flags_work_in_any_position() {
        let orders: [&[&str]; 3] = [
            &[
                "--profile",
                "criu-3.17",
                "--engine",
                "crio",
                "preflight",
                "--container",
                "3f4e",
                "--with",
                "--tcp-close",
                "--json",
            ],
            &[
                "preflight",
                "--container",
                "3f4e",
                "--profile",
                "criu-3.17",
                "--engine",
                "crio",
                "--with",
                "--tcp-close",
                "--json",
            ],
            &[
                "--json",
                "--with",
                "--tcp-close",
                "preflight",
                "--engine",
                "crio",
                "--container",
                "3f4e",
                "--profile",
                "criu-3.17",
            ],
        ];
        for args in orders {
            let Ok(Invocation::Preflight(p, j)) = parse(args) else {
                panic!("{args:?}: not preflight")
            };
            assert_eq!(p.target.container.as_deref(), Some("3f4e"), "{args:?}");
            assert_eq!(j.profile.as_deref(), Some("criu-3.17"), "{args:?}");
            assert_eq!(j.engine, Some(Engine::Crio), "{args:?}");
            assert_eq!(j.with.as_deref(), Some("--tcp-close"), "{args:?}");
            assert!(j.json, "{args:?}");
        }
        for args in [
            &["--profile", "criu-3.17", "daemon"][..],
            &["daemon", "--profile", "criu-3.17"],
        ] {
            let Ok(Invocation::Daemon(_, j)) = parse(args) else {
                panic!("{args:?}: not daemon")
            };
            assert_eq!(j.profile.as_deref(), Some("criu-3.17"), "{args:?}");
        }
    }

    /// A flag the command would ignore is an error naming it, never dropped.
    #[test]
    fn flags_a_command_would_ignore_are_refused() {
        let err = parse(&["--pid", "5", "preflight", "--all-containers"]).unwrap_err();
        assert!(err.contains("--pid") && err.contains("preflight"), "{err}");
        let err = parse(&["--replay", "s.json", "daemon"]).unwrap_err();
        assert!(err.contains("--replay"), "{err}");
        let err = parse(&["audit", "--profile", "criu-4", "tree"]).unwrap_err();
        assert!(err.contains("--profile") && err.contains("audit"), "{err}");
        assert!(parse(&["--engine", "podman", "audit", "tree"]).is_err());
        assert!(parse(&["daemon", "--json"]).is_err());
        assert!(parse(&["-v", "audit", "--json", "tree"]).is_err());
        let Ok(Invocation::Audit(a)) = parse(&["--json", "audit", "tree"]) else {
            panic!("not audit")
        };
        assert!(a.json);
    }

    #[test]
    fn verbose_logs_our_crates_and_the_environment_wins() {
        let v = log_filter(true, None, None);
        assert!(v.contains("ckpt_user=debug") && !v.contains("aya"), "{v}");
        assert!(v.starts_with("warn,"), "others stay at warnings: {v}");
        assert_eq!(log_filter(false, None, None), "warn");
        assert_eq!(log_filter(true, None, Some("aya=debug")), "aya=debug");
        assert_eq!(log_filter(false, Some("info"), Some("aya=debug")), "info");
        assert_eq!(log_filter(false, Some(" "), Some("off")), "off");
    }

    #[test]
    fn exit_codes_follow_verdicts() {
        assert_eq!(Exit::from(Verdict::Blocks) as i32, 1);
        assert_eq!(Exit::from(Verdict::Needs) as i32, 3);
        assert_eq!(Exit::from(Verdict::Unknown) as i32, 4);
        assert_eq!(Exit::from(Verdict::Ok) as i32, 0);
    }
}
