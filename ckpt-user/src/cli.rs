//! Command-line interface: raw flags (clap) → a validated, ready-to-run command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::classify::Verdict;
use crate::engine::Engine;

const EXAMPLES: &str = "\
EXAMPLES:
    sudo ckpt-watch                      # every process on the host that would not checkpoint
    sudo ckpt-watch --pid 1234           # every fd and mapping of one process
    sudo ckpt-watch --pid 1234 --tree    # the process and its descendants as one dump
    sudo ckpt-watch --pid 1234 --with '--tcp-established --file-locks'
    sudo ckpt-watch --pid 1234 --json --save-snapshot snap.json
    ckpt-watch --replay snap.json --pid 1234     # judge a saved snapshot, no root needed
    ckpt-watch audit --stat 2 /usr/src/linux     # ops structs lacking .checkpoint

EXIT STATUS:
    0 checkpointable as it is    1 something blocks    2 usage or environment error
    3 checkpointable only with the listed options       4 unknown kinds present";

#[derive(Debug, Parser)]
#[command(
    name = "ckpt-watch",
    version,
    about = "Would this process survive a CRIU checkpoint right now? If not, which open file stops it?",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub scan: ScanArgs,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Judge this process (default: every process on the host, each as its own dump).
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Option<u32>,
    /// With --pid: judge the process and all its descendants as one dump.
    #[arg(long, requires = "pid")]
    pub tree: bool,
    /// Profile: a built-in name (criu-4, criu-3.17) or a TOML file. Default: the CRIU on PATH,
    /// else the newest.
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// Judge as if the checkpointer ran with these options, e.g. "--tcp-established --file-locks".
    #[arg(long = "with", value_name = "OPTIONS", allow_hyphen_values = true)]
    pub with: Option<String>,
    /// Add the options this engine always passes to CRIU (default: criu, none); CRIU's config
    /// files are read either way.
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<Engine>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show every fd and mapping, not only those that are not ok; log timings to stderr.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Also write the scan's raw facts to FILE (JSON) for --replay.
    #[arg(long, value_name = "FILE")]
    pub save_snapshot: Option<PathBuf>,
    /// Judge a saved snapshot instead of the live kernel (no privileges needed).
    #[arg(long, value_name = "FILE", conflicts_with = "save_snapshot")]
    pub replay: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find ops structs lacking a member in a kernel source tree (the 2009 Linux-CR script, done right).
    Audit(ckpt_audit::AuditArgs),
    /// Would this container's checkpoint succeed with the options really in force? Per
    /// container: verdict, blocking processes and files, options needed (exit status as --pid).
    #[command(after_help = PREFLIGHT_EXAMPLES)]
    Preflight(PreflightArgs),
    /// Watch the host live: alerts when a process becomes uncheckpointable, Prometheus metrics.
    Daemon(crate::daemon::DaemonArgs),
}

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
    /// The engine that will checkpoint (default: the one whose cgroup layout the container has,
    /// runc for Docker and containerd; criu for a plain cgroup).
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<Engine>,
    /// Options the checkpoint will be given beyond the engine's and the config files'.
    #[arg(long = "with", value_name = "OPTIONS", allow_hyphen_values = true)]
    pub with: Option<String>,
    /// Profile: a built-in name (criu-4, criu-3.17) or a TOML file. Default: the CRIU on PATH.
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Show every fd, mapping and environment check; log timings to stderr.
    #[arg(long, short = 'v')]
    pub verbose: bool,
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

    #[test]
    fn tree_requires_pid() {
        assert!(Cli::try_parse_from(["ckpt-watch", "--tree"]).is_err());
        let cli = Cli::try_parse_from([
            "ckpt-watch",
            "--pid",
            "5",
            "--tree",
            "--with",
            "--tcp-close",
        ])
        .unwrap();
        assert_eq!((cli.scan.pid, cli.scan.tree), (Some(5), true));
        assert_eq!(cli.scan.with.as_deref(), Some("--tcp-close"));
    }

    #[test]
    fn preflight_takes_exactly_one_target() {
        assert!(Cli::try_parse_from(["ckpt-watch", "preflight"]).is_err());
        let both = [
            "ckpt-watch",
            "preflight",
            "--container",
            "ab",
            "--all-containers",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        let cli = Cli::try_parse_from([
            "ckpt-watch",
            "preflight",
            "--container",
            "3f4e",
            "--engine",
            "crio",
            "--with",
            "--tcp-close",
        ])
        .unwrap();
        let Some(Command::Preflight(p)) = cli.command else {
            panic!("not preflight")
        };
        assert_eq!(p.target.container.as_deref(), Some("3f4e"));
        assert_eq!(
            (p.engine, p.with.as_deref()),
            (Some(Engine::Crio), Some("--tcp-close"))
        );
    }

    #[test]
    fn exit_codes_follow_verdicts() {
        assert_eq!(Exit::from(Verdict::Blocks) as i32, 1);
        assert_eq!(Exit::from(Verdict::Needs) as i32, 3);
        assert_eq!(Exit::from(Verdict::Unknown) as i32, 4);
        assert_eq!(Exit::from(Verdict::Ok) as i32, 0);
    }
}
