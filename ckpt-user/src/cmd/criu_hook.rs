//! `ckpt-watch criu-hook`: a guard inside CRIU, run as its action script. CRIU runs the
//! pre-dump scripts first thing in `cr_dump_tasks` (criu/cr-dump.c, 3.17 and 4.x alike), before
//! `collect_pstree` seizes and freezes the tree: the hook judges the tree being dumped with the
//! options this CRIU was given, and a dump that would fail stops there, its reason and remedy
//! in CRIU's log (scripts write into it). Every other action passes at once.
//!
//! It fails open: when ckpt-watch cannot judge (no BPF, a process gone), the dump goes on as
//! it would without the hook, and the log says so. `unknown` passes too, and so does `needs`
//! when the options came over RPC from a client whose command line does not show them.

use std::io::Write;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::aggregate::{DumpReport, Rules, SnapshotWorld};
use crate::checkpointer::criu::Criu;
use crate::checkpointer::engine::{ConfigPaths, Engine};
use crate::checkpointer::given::GivenOption;
use crate::checkpointer::running::{self, RunningDump};
use crate::classify::{self, Classifier, Judgement, KernelFacts, Verdict};
use crate::cli::{Exit, JudgingArgs};
use crate::cmd::preflight::{self, Remedy};
use crate::cmd::scan;
use crate::judge::Judge;
use crate::report;
use crate::scope::{DumpSet, procfs};
use crate::snapshot::{ScanStart, Snapshot};

/// What CRIU sets for its scripts (criu/action-scripts.c).
pub const ENV_ACTION: &str = "CRTOOLS_SCRIPT_ACTION";
pub const ENV_ROOT: &str = "CRTOOLS_INIT_PID";

/// The one line that enables the hook, for CRIU's config files.
pub const CONFIG_LINE: &str = "action-script /usr/lib/ckpt-watch/criu-hook";

/// One dump judged by the hook.
#[derive(Clone, Debug, Serialize)]
pub struct HookReport {
    pub dump: DumpReport,
    pub profile: String,
    pub engine: Engine,
    pub options_in_force: Vec<GivenOption>,
    /// What stops every dump on this kernel, whatever the tree holds.
    pub kernel: Vec<Judgement>,
    pub verdict: Verdict,
    /// The options still needed.
    pub options: Vec<String>,
    pub remedies: Vec<Remedy>,
    /// An RPC client whose options ckpt-watch cannot see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen_client: Option<String>,
}

pub fn run(judging: &JudgingArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let Ok(action) = std::env::var(ENV_ACTION) else {
        bail!(
            "criu-hook is CRIU's action script and runs only under CRIU ({ENV_ACTION} is not set): enable it with the line `{CONFIG_LINE}` in /etc/criu/default.conf (and /etc/criu/runc.conf for runc and Podman)"
        );
    };
    if action != "pre-dump" {
        return Ok(Exit::Ok);
    }
    match judge_running_dump(judging) {
        Ok(h) => {
            report::hook_text(out, &h)?;
            let stop = match h.verdict {
                Verdict::Blocks => true,
                Verdict::Needs if h.unseen_client.is_some() => {
                    writeln!(
                        out,
                        "ckpt-watch: {} may have passed these options over RPC: the dump goes on",
                        h.unseen_client.as_deref().unwrap_or_default()
                    )?;
                    false
                }
                Verdict::Needs => true,
                Verdict::Unknown | Verdict::Ok => false,
            };
            if stop {
                writeln!(
                    out,
                    "ckpt-watch: stopping the dump before CRIU freezes the tree"
                )?;
                return Ok(Exit::from(h.verdict));
            }
            Ok(Exit::Ok)
        }
        Err(e) => {
            writeln!(
                out,
                "ckpt-watch: cannot judge this dump, it goes on unguarded: {}",
                report::printable(&format!("{e:#}"))
            )?;
            Ok(Exit::Ok)
        }
    }
}

/// The dump CRIU is about to make: the tree under `$CRTOOLS_INIT_PID`, judged with the options of
/// the CRIU that runs this hook (its parent).
fn judge_running_dump(judging: &JudgingArgs) -> anyhow::Result<HookReport> {
    let root: u32 = std::env::var(ENV_ROOT)
        .ok()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{ENV_ROOT} is not a pid"))?;
    let start = ScanStart::begin();
    let criu_pid = std::os::unix::process::parent_id();
    let criu_argv = running::cmdline(criu_pid)
        .with_context(|| format!("reading the command line of CRIU (pid {criu_pid})"))?;
    // The RPC client, for a CRIU serving one (its command line holds the options it sent), and
    // what drives that client.
    let parent = |pid: u32| procfs::read_or_warn(pid).map(|p| p.ppid);
    let argv = |pid: Option<u32>| {
        pid.and_then(|p| running::cmdline(p).ok())
            .unwrap_or_default()
    };
    let client = parent(criu_pid);
    let dump: RunningDump = running::running_dump(
        &criu_argv,
        &argv(client),
        &argv(client.and_then(parent)),
        ConfigPaths::from_env(),
    )
    .map_err(|e| anyhow::anyhow!("CRIU's command line: {e}"))?;
    let unseen = dump.unseen_client.clone();
    let criu = Criu::running(criu_pid, &criu_argv);
    let judge = Judge::for_running(judging, criu, dump)?;
    let in_force = judge.in_force(None)?;
    let given = &in_force.given;
    procfs::ensure_process(root)?;
    let snapshot = Snapshot::take_tree(start, root)?;
    let ops = judge.resolve_ops(&snapshot)?;
    let classifier = Classifier::new(&judge.profile, &ops);
    let rules = Rules {
        classifier: &classifier,
        given,
        own: snapshot.own(),
        describe: &scan::describe_live,
        keep_ok: true,
        kept: None,
    };
    let parents = snapshot.procs.values().map(|p| (p.pid, p.ppid)).collect();
    let dump = rules.dump(
        &SnapshotWorld::new(&snapshot),
        &DumpSet::tree(root, &parents),
    );
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let kernel: Vec<Judgement> =
        classify::classify_kernel(&judge.profile, &KernelFacts::from_maps(&maps))
            .into_iter()
            .map(|j| given.apply(j))
            .collect();
    let verdict = kernel
        .iter()
        .map(|j| j.verdict)
        .fold(dump.verdict, Verdict::max);
    let (options, remedies) = preflight::needed(&dump.options, &kernel, &in_force);
    Ok(HookReport {
        dump,
        profile: judge.profile.profile.name.clone(),
        engine: in_force.engine,
        options_in_force: given.options().to_vec(),
        kernel,
        verdict,
        options,
        remedies,
        unseen_client: unseen,
    })
}
