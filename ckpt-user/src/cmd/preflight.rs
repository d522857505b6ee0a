//! `ckpt-watch preflight`: will this container's checkpoint succeed with the options that will
//! really be used, and if not, why and what would fix it? Per container: the cgroup and its
//! processes, the dump CRIU would make (the tree of the cgroup's topmost process), the options
//! in force with their sources, the checkpointer's environment, and one verdict.
//!
//! One container costs in proportion to the container: the kernel side reports only the
//! cgroup's tasks (`Filter::Cgroup`), and only the cgroup's processes are read from /proc.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use anyhow::bail;
use serde::Serialize;

use crate::aggregate::{ProcessReport, Rules, SnapshotWorld};
use crate::checkpointer::criu::{Criu, RunningCheck};
use crate::checkpointer::engine::Engine;
use crate::checkpointer::env::{self, Checkpointer};
use crate::checkpointer::given::GivenOption;
use crate::classify::{self, Judgement, KernelFacts, Verdict};
use crate::cli::{Exit, JudgingArgs, PreflightArgs};
use crate::cmd::scan;
use crate::judge::{InForce, Judge};
use crate::report;
use crate::scope::cgroups::{self, Cgroup, CgroupError, Container};
use crate::scope::container_id::ContainerName;
use crate::scope::workload::choose_root;
use crate::scope::{ProcInfo, procfs};
use crate::snapshot::{Filter, ScanStart, Snapshot};

/// What is judged: a cgroup, and the container it is when the path names one.
struct Target {
    name: Option<ContainerName>,
    cgroup: Cgroup,
}

/// Namespaces of the dump's root: its own (a checkpointer dumps them with it) or the host's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Namespaces {
    pub own: Vec<&'static str>,
    pub host: Vec<&'static str>,
}

const NS_KINDS: [&str; 8] = ["pid", "net", "ipc", "mnt", "uts", "user", "cgroup", "time"];

impl Namespaces {
    fn of(pid: u32) -> Self {
        let mut ns = Namespaces::default();
        for (kind, theirs) in NS_KINDS.into_iter().zip(procfs::ns_inodes(pid, NS_KINDS)) {
            match theirs {
                Some(_) if theirs != procfs::own_ns_inode(kind) => ns.own.push(kind),
                Some(_) => ns.host.push(kind),
                None => {}
            }
        }
        ns
    }
}

/// One needed option and the way to pass it through the engine.
#[derive(Clone, Debug, Serialize)]
pub struct Remedy {
    pub option: String,
    pub how: String,
}

/// One container's preflight.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerReport {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_id: Option<String>,
    pub cgroup: Cgroup,
    pub engine: Engine,
    pub root: u32,
    pub namespaces: Namespaces,
    /// In the cgroup but not under the root: `criu dump -t ROOT` leaves them out.
    pub left_out: Vec<u32>,
    pub options_in_force: Vec<GivenOption>,
    /// The checkpointer's rights over these tasks and the kernel's features.
    pub environment: Vec<Judgement>,
    pub verdict: Verdict,
    /// The options still needed: the first choice of each `needs`.
    pub options: Vec<String>,
    /// How to give each of them to this engine's CRIU.
    pub remedies: Vec<Remedy>,
    pub processes: Vec<ProcessReport>,
}

impl ContainerReport {
    /// How the report names it: the short id, else the cgroup path.
    pub fn label(&self) -> String {
        match &self.container {
            Some(c) => format!("{} ({})", c.short_id(), c.runtime),
            None => format!("cgroup {}", self.cgroup.path),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PreflightReport {
    pub profile: String,
    /// Why this profile: `--profile`, or the CRIU found on PATH.
    pub profile_source: String,
    pub verdict: Verdict,
    pub containers: Vec<ContainerReport>,
}

fn targets(args: &PreflightArgs) -> anyhow::Result<Vec<Target>> {
    let hierarchies = cgroups::hierarchies()?;
    if let Some(path) = &args.target.cgroup {
        let cgroup = cgroups::cgroup_at(&hierarchies, path)?;
        return Ok(vec![Target {
            name: cgroups::container_of(&cgroup),
            cgroup,
        }]);
    }
    let found = cgroups::discover(&hierarchies);
    let chosen: Vec<Container> = match &args.target.container {
        Some(id) => vec![cgroups::find_container(&found, id)?.clone()],
        None => found,
    };
    Ok(chosen
        .into_iter()
        .map(|c| Target {
            name: Some(c.name),
            cgroup: c.cgroup,
        })
        .collect())
}

/// Each target's processes, as its cgroup lists them now.
fn members_of(targets: &[Target]) -> Result<Vec<BTreeSet<u32>>, CgroupError> {
    targets
        .iter()
        .map(|t| t.cgroup.pids().map(|p| p.into_iter().collect()))
        .collect()
}

/// The options a dump still needs (its files', then the first choice of each judgement of its
/// environment that `needs` one) and how to pass each to the CRIU of the dump `in_force`.
pub fn needed(
    files: &[String],
    environment: &[Judgement],
    in_force: &InForce,
) -> (Vec<String>, Vec<Remedy>) {
    let mut options = files.to_vec();
    for j in environment.iter().filter(|j| j.verdict == Verdict::Needs) {
        if let Some(o) = j.options.first().filter(|o| !options.contains(o)) {
            options.push(o.clone());
        }
    }
    let remedies = options
        .iter()
        .map(|o| Remedy {
            option: o.clone(),
            how: in_force.how_to_pass(o),
        })
        .collect();
    (options, remedies)
}

fn worst(verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    verdicts.max().unwrap_or(Verdict::Ok)
}

/// The targets and, unless that failed, their scan and their processes once scanned.
struct Scanned {
    targets: Vec<Target>,
    snapshot: anyhow::Result<(Snapshot, Vec<BTreeSet<u32>>)>,
}

fn scan_targets(args: &PreflightArgs, start: ScanStart) -> anyhow::Result<Scanned> {
    let targets = targets(args)?;
    let snapshot = scan_members(&targets, start);
    Ok(Scanned { targets, snapshot })
}

fn scan_members(
    targets: &[Target],
    start: ScanStart,
) -> anyhow::Result<(Snapshot, Vec<BTreeSet<u32>>)> {
    let listed = members_of(targets)?;
    if let ([t], [pids]) = (targets, listed.as_slice())
        && pids.is_empty()
    {
        bail!(
            "cgroup {} holds no processes: nothing to checkpoint",
            t.cgroup.path
        );
    }

    // One cgroup v2: the kernel reports its tasks only, and visits only its processes when
    // they are few. (A v1 scan is of the whole host: a dump's tree may leave the cgroup.)
    let (filter, visit) = match (targets, listed.as_slice()) {
        ([one], [pids]) => match one.cgroup.filter() {
            f @ Filter::Cgroup { .. } => (f, Some(pids)),
            f => (f, None),
        },
        _ => (Filter::All, None),
    };
    let mut snapshot = if targets.is_empty() {
        Snapshot::default()
    } else {
        Snapshot::take(start, filter, visit, None)?
    };
    // The processes judged are those in the cgroups once scanned: one forked in since the
    // listing (by a process choosing its timing) is judged too. When only the listed ones were
    // visited, such a one makes the scan go again over every task.
    let mut members = members_of(targets)?;
    if let (Some(visited), [now]) = (visit, members.as_slice())
        && !now.is_subset(visited)
    {
        snapshot = Snapshot::take(ScanStart::begin(), filter, None, None)?;
        members = members_of(targets)?;
    }
    for pid in members.iter().flatten() {
        if let std::collections::btree_map::Entry::Vacant(e) = snapshot.procs.entry(*pid)
            && let Some(p) = procfs::read_or_warn(*pid)
        {
            e.insert(p);
        }
    }
    Ok((snapshot, members))
}

pub fn run(
    args: &PreflightArgs,
    judging: &JudgingArgs,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let start = ScanStart::begin();
    // Checked beside the rest: nothing it says depends on what the scan finds, and it needs
    // only the binary, not the version the judge asks it for meanwhile.
    let criu_check = Criu::locate(judging.criu.as_deref()).map(|path| RunningCheck::start(&path));
    // The judge (CRIU's version, the profile, the config files) and the scan need nothing of
    // each other until the dump is judged: the profile is parsed while the kernel verifies
    // the programs. Its errors still come first, then the targets', then the options', as
    // when nothing was scanned before them.
    let judging_args = judging.clone();
    let verifying = start.verifying();
    let judging_thread = std::thread::spawn(move || {
        verifying.wait();
        Judge::new(&judging_args)
    });
    let scanned = scan_targets(args, start);
    let judge = judging_thread.join().expect("judging does not panic")?;
    let profile = &judge.profile;
    let Scanned { targets, snapshot } = scanned?;
    // Bad configuration is a usage error, reported before what the scan met.
    let in_force: Vec<InForce> = targets
        .iter()
        .map(|t| judge.in_force(t.name.as_ref()))
        .collect::<Result<_, _>>()?;
    let (snapshot, members) = snapshot?;
    let t = &snapshot.timings;
    tracing::debug!(btf = ?t.btf, load = ?t.load, iterate = ?t.iterate, kallsyms = ?t.kallsyms, procfs = ?t.procfs, files = snapshot.files.len(), "preflight scan");

    let ops = judge.resolve_ops(&snapshot)?;
    let classifier = classify::Classifier::new(profile, &ops);
    let world = SnapshotWorld::new(&snapshot);
    let checkpointer = Checkpointer::current()?;
    // What stops every dump whatever it holds: the kernel's features, the profile's known
    // incompatibilities with this kernel, and the installed CRIU's own verdict.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let kernel: Vec<Judgement> = env::kernel_features()
        .into_iter()
        .chain(classify::classify_kernel(
            profile,
            &KernelFacts::from_maps(&maps),
        ))
        .chain(
            criu_check
                .zip(judge.criu.as_ref())
                .map(|(check, criu)| check.judge(criu)),
        )
        .collect();
    let mut containers = Vec::new();
    for ((target, in_force), pids) in targets.into_iter().zip(&in_force).zip(&members) {
        let given = &in_force.given;
        // Processes that exited since the cgroup was read have nothing left to dump.
        let pids: BTreeSet<u32> = pids
            .iter()
            .copied()
            .filter(|p| snapshot.procs.contains_key(p))
            .collect();
        let parents: HashMap<u32, u32> =
            pids.iter().map(|p| (*p, snapshot.procs[p].ppid)).collect();
        let Some(set) = choose_root(&pids, &parents) else {
            tracing::info!(cgroup = %target.cgroup.path, "no processes: skipped");
            continue;
        };
        let rules = Rules {
            classifier: &classifier,
            given,
            own: snapshot.own(),
            describe: &scan::describe_live,
            keep_ok: true,
            kept: None,
        };
        let dump = rules.dump(&world, &set);
        let tasks: Vec<&ProcInfo> = set
            .members
            .iter()
            .filter_map(|p| snapshot.procs.get(p))
            .collect();
        let environment: Vec<Judgement> = env::judge_tasks(&checkpointer, &tasks)
            .into_iter()
            .chain(kernel.iter().cloned())
            .map(|j| given.apply(j))
            .collect();
        let (options, remedies) = needed(&dump.options, &environment, in_force);
        containers.push(ContainerReport {
            short_id: target.name.as_ref().map(|n| n.short_id().to_string()),
            engine: in_force.engine,
            container: target.name,
            cgroup: target.cgroup,
            root: set.root,
            namespaces: Namespaces::of(set.root),
            left_out: pids.difference(&set.members).copied().collect(),
            options_in_force: given.options().to_vec(),
            verdict: worst(environment.iter().map(|j| j.verdict).chain([dump.verdict])),
            environment,
            options,
            remedies,
            processes: dump.processes,
        });
    }

    let doc = PreflightReport {
        profile: profile.profile.name.clone(),
        profile_source: judge.profile_source.clone(),
        verdict: worst(containers.iter().map(|c| c.verdict)),
        containers,
    };
    if judging.json {
        report::preflight_json(out, &doc)?;
    } else {
        report::preflight_text(out, &doc, judging.verbose)?;
    }
    Ok(Exit::from(doc.verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_top_with_the_biggest_tree() {
        // 10 → 11 → 12 in the cgroup, and 20 (parent 1, outside) alone.
        let parents = HashMap::from([(10, 5), (11, 10), (12, 11), (20, 1)]);
        let pids = BTreeSet::from([10, 11, 12, 20]);
        let set = choose_root(&pids, &parents).unwrap();
        assert_eq!(set.root, 10);
        assert_eq!(set.members, BTreeSet::from([10, 11, 12]));
        assert!(choose_root(&BTreeSet::new(), &parents).is_none());
        let two = BTreeSet::from([20, 30]);
        assert_eq!(
            choose_root(&two, &HashMap::from([(20, 1), (30, 1)]))
                .unwrap()
                .root,
            20
        );
    }
}
