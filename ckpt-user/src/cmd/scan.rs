//! The scan command, top to bottom: choose profile → snapshot → resolve → judge → report.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::bail;

use crate::aggregate::{
    DumpReport, KeptReports, Rules, SnapshotWorld, WorkloadReport, describe_facts,
};
use crate::checkpointer::given::Given;
use crate::classify;
use crate::cli::{Exit, JudgingArgs, ScanArgs};
use crate::facts::FileFact;
use crate::judge::Judge;
use crate::report;
use crate::scope::container_id::Runtime;
use crate::scope::workload::{self, Names};
use crate::scope::{DumpSet, procfs};
use crate::snapshot::{Filter, OkByKind, ScanStart, Scanned, Snapshot};

/// The path /proc shows for a live fd; the kernel's facts otherwise.
pub fn describe_live(f: &FileFact) -> String {
    f.fd.and_then(|fd| std::fs::read_link(format!("/proc/{}/fd/{fd}", f.pid)).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| describe_facts(f))
}

pub fn scan(args: &ScanArgs, judging: &JudgingArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let (judge, snapshot) = match &args.replay {
        // A replay judges the snapshot alone: what it scanned, with the CRIU it recorded.
        Some(path) => {
            let snapshot = Snapshot::load(path)?;
            let recorded = snapshot.scanned.as_ref().and_then(|s| s.criu.clone());
            let judge = Judge::for_replay(judging, recorded)?;
            if let Some(pid) = args.pid {
                snapshot.check_scanned(pid)?;
            }
            (judge, snapshot)
        }
        None => {
            // Without the privileges nothing else matters: say so before reading config files.
            crate::kernel::privileges::ensure_can_load_bpf()?;
            let start = ScanStart::begin();
            let judge = Judge::new(judging)?;
            if let Some(pid) = args.pid {
                procfs::ensure_process(pid)?;
            }
            // A pid (with or without --tree) is scanned as its subtree: that is its dump.
            let filter = args.pid.map_or(Filter::All, Filter::Pid);
            // A host scan lists only what is not ok: its kernel only counts the files of
            // kinds judged ok (not when every fd is to be listed, or saved).
            let by_kind = match judging.verbose || args.save_snapshot.is_some() {
                true => None,
                false => Some(judge.by_kind()?),
            };
            let by_kind = by_kind.as_ref().map(|b| b as &dyn OkByKind);
            let mut snapshot = match args.pid {
                Some(pid) => Snapshot::take_tree(start, pid)?,
                None => Snapshot::take(start, filter, None, by_kind)?,
            };
            if let Some(path) = &args.save_snapshot {
                let name = &judge.profile.profile.name;
                snapshot.scanned = Some(Scanned::now(filter, name, judge.criu.as_ref()));
                snapshot.save(path)?;
            }
            (judge, snapshot)
        }
    };
    // The process ends with the scan: the kernel takes its memory back at once, where freeing
    // a host's ~200,000 facts one by one took ~10 ms.
    let snapshot = std::mem::ManuallyDrop::new(snapshot);
    let profile = &judge.profile;
    let given = judge.options(judge.engine_for(None))?;
    let live = args.replay.is_none();
    let t = &snapshot.timings;
    tracing::debug!(btf = ?t.btf, load = ?t.load, iterate = ?t.iterate, kallsyms = ?t.kallsyms, refine = ?t.refine, procfs = ?t.procfs, files = snapshot.files.len(), "scan");

    let resolving = std::time::Instant::now();
    let ops = judge.resolve_ops(&snapshot)?;
    let resolve = resolving.elapsed();
    let describe: &(dyn Fn(&FileFact) -> String + Sync) = if live {
        &describe_live
    } else {
        &describe_facts
    };
    let classifier = classify::Classifier::new(profile, &ops);
    let rules = Rules {
        classifier: &classifier,
        given: &given,
        own: snapshot.own(),
        describe,
        keep_ok: args.pid.is_some() || judging.verbose,
        kept: None,
    };
    let indexing = std::time::Instant::now();
    let world = SnapshotWorld::new(&snapshot);
    let index = indexing.elapsed();
    let name = &profile.profile.name;
    let parents: HashMap<u32, u32> = snapshot.procs.values().map(|p| (p.pid, p.ppid)).collect();
    // Built once: every process of a host scan is the root of its own subtree.
    let children = crate::scope::children_of(&parents);

    if args.pid.is_none() && !args.processes {
        // The host scan speaks in workloads: what people checkpoint (DESIGN.md §7). Names come
        // from the engines' state files only on the live host, never on replay.
        let names = if live {
            Names::read(Path::new("/"))
        } else {
            Names::default()
        };
        // A container is judged with its engine's options, as preflight and the daemon judge
        // it: read once per engine, and per container only where its runc state names another
        // config file (on the live host only: a replay reads nothing of the host it runs on).
        let mut by_runtime: HashMap<Runtime, Given> = HashMap::new();
        let kept = KeptReports::default();
        let rules = Rules {
            kept: Some(&kept),
            ..rules
        };
        let mut reports = Vec::new();
        let judging_started = std::time::Instant::now();
        for w in workload::discover(&snapshot.procs, &names) {
            let dump = match &w.container {
                Some(c) => {
                    let own = if live {
                        judge.annotated(c).transpose()?
                    } else {
                        None
                    };
                    if own.is_none() && !by_runtime.contains_key(&c.runtime) {
                        let engine = judge.engine_for(Some(c.runtime));
                        by_runtime.insert(c.runtime, judge.options(engine)?);
                    }
                    let rules = Rules {
                        given: own.as_ref().unwrap_or_else(|| &by_runtime[&c.runtime]),
                        kept: None,
                        ..rules.clone()
                    };
                    rules.dump(&world, &w.dump)
                }
                None => rules.dump(&world, &w.dump),
            };
            reports.push(WorkloadReport::new(w, dump));
        }
        WorkloadReport::sort(&mut reports);
        tracing::debug!(?resolve, ?index, judge = ?judging_started.elapsed(), workloads = reports.len(), "judged");
        let verdict = reports.first().map_or(classify::Verdict::Ok, |r| r.verdict);
        if judging.json {
            report::workloads_json(out, &reports, name, &judge.profile_source)?;
        } else {
            report::workloads_text(out, &reports, name, judging.verbose)?;
        }
        return Ok(Exit::from(verdict));
    }
    let reports: Vec<DumpReport> = match args.pid {
        Some(pid) => {
            if !snapshot.procs.contains_key(&pid) && !snapshot.files.iter().any(|f| f.pid == pid) {
                bail!(
                    "process {pid} exited during the scan (or its files are hidden from this pid namespace): nothing left to judge"
                );
            }
            let set = if args.tree {
                DumpSet::tree(pid, &parents)
            } else {
                DumpSet::process(pid, &parents)
            };
            vec![rules.dump(&world, &set)]
        }
        None => world
            .pids()
            .into_iter()
            .map(|pid| rules.dump(&world, &DumpSet::process_in(pid, &children)))
            .collect(),
    };

    let verdict = reports
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(classify::Verdict::Ok);
    match (judging.json, args.pid, args.tree) {
        (true, Some(_), false) => report::process_json(out, &reports[0].processes[0])?,
        (true, _, _) => report::many_json(out, &reports, name, args.pid.is_none())?,
        (false, Some(_), _) => report::dump_text(out, &reports[0], name, judging.verbose)?,
        (false, None, _) => report::host_text(out, &reports, name, judging.verbose)?,
    }
    Ok(Exit::from(verdict))
}
