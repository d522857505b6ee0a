//! Rendering verdicts for people (aligned text) and programs (JSON).

use std::io::{self, Write};

use serde::Serialize;

use crate::aggregate::{DumpReport, FileReport, ProcessReport, WorkloadReport};
use crate::checkpointer::engine::Engine;
use crate::checkpointer::given::GivenOption;
use crate::classify::{Judgement, Verdict};
use crate::cmd::criu_hook::HookReport;
use crate::cmd::preflight::{ContainerReport, PreflightReport, Remedy};

/// Counts for the host summary line.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub processes: usize,
    pub ok: usize,
    pub needs: usize,
    pub unknown: usize,
    pub blocks: usize,
    pub fds: usize,
    pub mappings: usize,
}

impl Summary {
    pub fn of(reports: &[DumpReport]) -> Self {
        Self::of_processes(reports.iter().flat_map(|r| &r.processes))
    }

    fn of_processes<'p>(processes: impl Iterator<Item = &'p ProcessReport>) -> Self {
        let mut s = Summary::default();
        for p in processes {
            s.processes += 1;
            s.fds += p.judged.0;
            s.mappings += p.judged.1;
            match p.verdict {
                Verdict::Ok => s.ok += 1,
                Verdict::Needs => s.needs += 1,
                Verdict::Unknown => s.unknown += 1,
                Verdict::Blocks => s.blocks += 1,
            }
        }
        s
    }
}

/// The reason and what to do, escaped: reasons and options may quote paths and names.
fn remedy(r: &FileReport) -> String {
    printable(&match (r.verdict, r.options.as_slice()) {
        (Verdict::Needs, [one]) => format!("{}; use {one}", r.reason),
        (Verdict::Needs, many) if !many.is_empty() => {
            format!("{}; use {}", r.reason, many.join(" or "))
        }
        _ => r.reason.clone(),
    })
}

/// A judgement's reason and its options, escaped.
fn reason_and_fix(reason: &str, options: &[String]) -> String {
    printable(&match options {
        [] => reason.to_string(),
        o => format!("{reason}; use {}", o.join(" or ")),
    })
}

fn file_line(out: &mut dyn Write, r: &FileReport) -> io::Result<()> {
    let slot = match (r.fd, &r.range) {
        (Some(fd), _) => fd.to_string(),
        (None, Some(range)) => format!("map {range}"),
        (None, None) => "-".into(),
    };
    writeln!(
        out,
        "  {:<6} {:<14} {:<24} {:<7} {}  [{}]",
        slot,
        printable(&r.kind),
        printable(&r.fops),
        r.verdict.as_str(),
        remedy(r),
        printable(&r.what)
    )
}

/// A process: its files that are not ok (all of them with `verbose`), then its verdict. Every
/// string a process chooses (its name, its files' paths) is escaped: it cannot forge a line.
pub fn process_text(out: &mut dyn Write, p: &ProcessReport, verbose: bool) -> io::Result<()> {
    writeln!(out, "pid {} ({})", p.pid, printable(&p.comm))?;
    let shown: Vec<&FileReport> = p
        .files
        .iter()
        .chain(&p.mappings)
        .filter(|r| verbose || r.verdict != Verdict::Ok)
        .collect();
    if !shown.is_empty() {
        writeln!(
            out,
            "  {:<6} {:<14} {:<24} {:<7} REASON / REMEDY  [WHAT]",
            "FD", "KIND", "FOPS", "VERDICT"
        )?;
        for r in shown {
            file_line(out, r)?;
        }
    }
    for j in p
        .task
        .iter()
        .filter(|j| verbose || j.verdict != Verdict::Ok)
    {
        writeln!(
            out,
            "  task   {:<7} {}",
            j.verdict.as_str(),
            reason_and_fix(&j.reason, &j.options)
        )?;
    }
    Ok(())
}

fn verdict_line(v: Verdict, options: &[String]) -> String {
    match v {
        Verdict::Ok => "ok: checkpointable as it is".into(),
        Verdict::Needs => format!(
            "needs: checkpointable with {}; {}",
            printable(&options.join(" ")),
            printable(&crate::aggregate::restore_needs(options).join("; "))
        ),
        Verdict::Unknown => "unknown: holds kinds of files the profile does not classify".into(),
        Verdict::Blocks => "blocks: a checkpoint would fail".into(),
    }
}

/// One dump (`--pid`, `--pid --tree`).
pub fn dump_text(
    out: &mut dyn Write,
    d: &DumpReport,
    profile: &str,
    verbose: bool,
) -> io::Result<()> {
    let profile = &printable(profile);
    for p in &d.processes {
        process_text(out, p, verbose)?;
    }
    writeln!(
        out,
        "verdict ({profile}, {} process{}): {}",
        d.processes.len(),
        if d.processes.len() == 1 { "" } else { "es" },
        verdict_line(d.verdict, &d.options)
    )
}

/// The whole host: one line per process that is not ok, the summary last.
pub fn host_text(
    out: &mut dyn Write,
    reports: &[DumpReport],
    profile: &str,
    verbose: bool,
) -> io::Result<()> {
    let profile = &printable(profile);
    writeln!(out, "{:<8} {:<16} {:<7} DETAIL", "PID", "COMM", "VERDICT")?;
    for p in reports.iter().flat_map(|r| &r.processes) {
        if p.verdict == Verdict::Ok && !verbose {
            continue;
        }
        let worst = p
            .files
            .iter()
            .chain(&p.mappings)
            .filter(|r| r.verdict == p.verdict)
            .map(|r| match r.fd {
                Some(fd) => format!("fd {fd} {} ({})", r.kind, r.fops),
                None => format!("map {} ({})", r.kind, r.fops),
            })
            .next()
            .or_else(|| {
                p.task
                    .iter()
                    .find(|j| j.verdict == p.verdict)
                    .map(|j| j.reason.clone())
            })
            .unwrap_or_default();
        let detail = match p.verdict {
            Verdict::Needs => p.options.join(" "),
            _ => worst,
        };
        writeln!(
            out,
            "{:<8} {:<16} {:<7} {}",
            p.pid,
            printable(&p.comm),
            p.verdict.as_str(),
            printable(&detail)
        )?;
    }
    let s = Summary::of(reports);
    writeln!(
        out,
        "summary ({profile}): {} processes: {} ok, {} need options, {} unknown, {} blocked ({} fds, {} mappings)",
        s.processes, s.ok, s.needs, s.unknown, s.blocks, s.fds, s.mappings
    )
}

/// Counts for the workload summary: workloads by verdict, and what was judged.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct WorkloadSummary {
    pub workloads: usize,
    pub ok: usize,
    pub needs: usize,
    pub unknown: usize,
    pub blocks: usize,
    pub processes: usize,
    pub fds: usize,
    pub mappings: usize,
}

impl WorkloadSummary {
    pub fn of(reports: &[WorkloadReport]) -> Self {
        // A workload's dump may hold another's (a session started from a shell): each process
        // is judged with each dump it is in, but counted once.
        let mut seen = std::collections::HashSet::new();
        let judged = Summary::of_processes(
            reports
                .iter()
                .flat_map(|r| &r.processes)
                .filter(|p| seen.insert(p.pid)),
        );
        let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
        Self {
            workloads: reports.len(),
            ok: count(Verdict::Ok),
            needs: count(Verdict::Needs),
            unknown: count(Verdict::Unknown),
            blocks: count(Verdict::Blocks),
            processes: judged.processes,
            fds: judged.fds,
            mappings: judged.mappings,
        }
    }
}

/// A container id as shown: its first 12 characters (an LXC name may hold any character).
fn short(id: &str) -> &str {
    let chars = crate::scope::container_id::SHORT_ID;
    id.char_indices()
        .nth(chars)
        .map_or(id, |(end, _)| &id[..end])
}

/// A process-chosen string (a command name, a path) made safe for a terminal and for one-line
/// logs: control characters, which could move the cursor or forge a line, are escaped.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
        .replace("\\'", "'")
        .replace("\\\"", "\"")
}

/// What decides a process's verdict: its items of that verdict, as `pid 7 (x) fd 3 io_uring:
/// reason`.
fn deciding(p: &ProcessReport) -> impl Iterator<Item = String> + '_ {
    let who = format!("pid {} ({})", p.pid, printable(&p.comm));
    let files = p
        .files
        .iter()
        .chain(&p.mappings)
        .filter(move |r| r.verdict == p.verdict)
        .map({
            let who = who.clone();
            move |r| {
                let slot = match (r.fd, &r.range) {
                    (Some(fd), _) => format!("fd {fd}"),
                    (None, Some(range)) => format!("map {range}"),
                    (None, None) => "-".into(),
                };
                format!(
                    "{who} {slot} {}: {}  [{}]",
                    printable(&r.kind),
                    remedy(r),
                    printable(&r.what)
                )
            }
        });
    let tasks = p
        .task
        .iter()
        .filter(move |j| j.verdict == p.verdict)
        .map(move |j| format!("{who} task: {}", reason_and_fix(&j.reason, &j.options)));
    files.chain(tasks)
}

/// How many deciding items a workload row shows before `... and N more`.
const SHOWN_ITEMS: usize = 3;

/// The host scan: one row per workload that is not ok (every one with `verbose`), worst
/// first, what decides it under it, the summary last.
pub fn workloads_text(
    out: &mut dyn Write,
    reports: &[WorkloadReport],
    profile: &str,
    verbose: bool,
) -> io::Result<()> {
    let profile = &printable(profile);
    writeln!(
        out,
        "{:<46} {:<24} {:<7} DETAIL",
        "WORKLOAD", "ROOT", "VERDICT"
    )?;
    for w in reports
        .iter()
        .filter(|w| verbose || w.verdict != Verdict::Ok)
    {
        let label = match w.kind {
            crate::scope::workload::Kind::Container => format!(
                "container {} {}",
                printable(short(&w.id)),
                printable(&w.name)
            ),
            crate::scope::workload::Kind::Unit => format!("unit {}", printable(&w.name)),
            crate::scope::workload::Kind::Session => format!("session {}", w.id),
        };
        let root_comm = w
            .processes
            .iter()
            .find(|p| p.pid == w.root)
            .map_or(String::new(), |p| printable(&p.comm));
        let detail = match w.verdict {
            Verdict::Needs => format!("needs {}", printable(&w.options.join(" "))),
            Verdict::Ok => "checkpointable as it is".into(),
            Verdict::Unknown => "holds kinds the profile does not classify".into(),
            Verdict::Blocks => "a checkpoint would fail".into(),
        };
        writeln!(
            out,
            "{:<46} {:<24} {:<7} {detail}",
            label,
            format!("{} ({root_comm})", w.root),
            w.verdict.as_str()
        )?;
        let items: Vec<String> = w
            .processes
            .iter()
            .filter(|p| p.verdict == w.verdict && p.verdict != Verdict::Ok)
            .flat_map(deciding)
            .collect();
        for item in items.iter().take(SHOWN_ITEMS) {
            writeln!(out, "    {item}")?;
        }
        if items.len() > SHOWN_ITEMS {
            writeln!(out, "    ... and {} more", items.len() - SHOWN_ITEMS)?;
        }
        if !w.left_out.is_empty() {
            writeln!(
                out,
                "    left out of the root's dump: pid {}",
                w.left_out
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
    }
    let s = WorkloadSummary::of(reports);
    writeln!(
        out,
        "summary ({profile}): {} workloads: {} ok, {} need options, {} unknown, {} blocked ({} processes, {} fds, {} mappings judged)",
        s.workloads, s.ok, s.needs, s.unknown, s.blocks, s.processes, s.fds, s.mappings
    )
}

#[derive(Serialize)]
struct WorkloadsJson<'a> {
    profile: &'a str,
    profile_source: &'a str,
    verdict: Verdict,
    workloads: &'a [WorkloadReport],
    summary: WorkloadSummary,
}

/// The host scan's JSON: `{"profile","profile_source","verdict","workloads":[..],"summary"}`.
pub fn workloads_json(
    out: &mut dyn Write,
    reports: &[WorkloadReport],
    profile: &str,
    profile_source: &str,
) -> io::Result<()> {
    let doc = WorkloadsJson {
        profile,
        profile_source,
        verdict: reports
            .iter()
            .map(|r| r.verdict)
            .max()
            .unwrap_or(Verdict::Ok),
        workloads: reports,
        summary: WorkloadSummary::of(reports),
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)
}

#[derive(Serialize)]
struct ManyJson<'a> {
    profile: &'a str,
    verdict: Verdict,
    options: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    restore: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
    processes: Vec<&'a ProcessReport>,
}

/// `--pid N --json`: the process object itself.
pub fn process_json(out: &mut dyn Write, p: &ProcessReport) -> io::Result<()> {
    serde_json::to_writer(&mut *out, p)?;
    writeln!(out)
}

/// `--tree --json` and the host scan: `{"processes":[...]}` with the overall verdict.
pub fn many_json(
    out: &mut dyn Write,
    reports: &[DumpReport],
    profile: &str,
    host: bool,
) -> io::Result<()> {
    let verdict = reports
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Ok);
    let options: Vec<String> = if host {
        vec![]
    } else {
        reports.iter().flat_map(|r| r.options.clone()).collect()
    };
    let doc = ManyJson {
        profile,
        verdict,
        restore: crate::aggregate::restore_needs(&options),
        options: &options,
        summary: host.then(|| Summary::of(reports)),
        processes: reports.iter().flat_map(|r| &r.processes).collect(),
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)
}

/// `preflight --json`: `{"profile":..,"profile_source":..,"verdict":..,"containers":[..]}`.
pub fn preflight_json(out: &mut dyn Write, doc: &PreflightReport) -> io::Result<()> {
    serde_json::to_writer(&mut *out, doc)?;
    writeln!(out)
}

fn judgement_line(out: &mut dyn Write, j: &Judgement) -> io::Result<()> {
    writeln!(
        out,
        "    {:<7} {:<16} {}",
        j.verdict.as_str(),
        printable(&j.rule),
        reason_and_fix(&j.reason, &j.options)
    )
}

fn container_text(
    out: &mut dyn Write,
    c: &ContainerReport,
    profile: &str,
    verbose: bool,
) -> io::Result<()> {
    let profile = &printable(profile);
    writeln!(
        out,
        "container {}  cgroup {} ({:?}, id {})",
        printable(&c.label()),
        printable(&c.cgroup.path),
        c.cgroup.version,
        c.cgroup.id
    )?;
    if let Some(pod) = c.container.as_ref().and_then(|n| n.pod.as_deref()) {
        writeln!(out, "  pod {}", printable(pod))?;
    }
    let root_comm = c
        .processes
        .iter()
        .find(|p| p.pid == c.root)
        .map_or(String::new(), |p| printable(&p.comm));
    writeln!(
        out,
        "  root pid {} ({root_comm}), {} process{}; own namespaces: {}; host's: {}",
        c.root,
        c.processes.len(),
        if c.processes.len() == 1 { "" } else { "es" },
        if c.namespaces.own.is_empty() {
            "none".into()
        } else {
            c.namespaces.own.join(" ")
        },
        if c.namespaces.host.is_empty() {
            "none".into()
        } else {
            c.namespaces.host.join(" ")
        },
    )?;
    if !c.left_out.is_empty() {
        let pids: Vec<String> = c.left_out.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "  left out: pid {} in the cgroup but not under the root: a dump of the root leaves {} behind",
            pids.join(", "),
            if pids.len() == 1 { "it" } else { "them" }
        )?;
    }
    options_text(out, c.engine, &c.options_in_force)?;
    writeln!(out, "  checkpointer environment:")?;
    for j in c
        .environment
        .iter()
        .filter(|j| verbose || j.verdict != Verdict::Ok || j.kind == "checkpointer")
    {
        judgement_line(out, j)?;
    }
    for p in c
        .processes
        .iter()
        .filter(|p| verbose || p.verdict != Verdict::Ok)
    {
        process_text(out, p, verbose)?;
    }
    writeln!(
        out,
        "verdict ({profile}, container {}, {} process{}): {}",
        printable(&c.label()),
        c.processes.len(),
        if c.processes.len() == 1 { "" } else { "es" },
        verdict_line(c.verdict, &c.options)
    )?;
    remedies_text(out, &c.remedies)
}

/// The options in force, each with where it came from.
fn options_text(out: &mut dyn Write, engine: Engine, options: &[GivenOption]) -> io::Result<()> {
    writeln!(out, "  options in force (engine {}):", engine.as_str())?;
    if options.is_empty() {
        writeln!(out, "    none")?;
    }
    for o in options {
        writeln!(
            out,
            "    {:<28} {}",
            printable(&o.to_string()),
            printable(&o.source.to_string())
        )?;
    }
    Ok(())
}

fn remedies_text(out: &mut dyn Write, remedies: &[Remedy]) -> io::Result<()> {
    for r in remedies {
        writeln!(
            out,
            "  to pass {}: {}",
            printable(&r.option),
            printable(&r.how)
        )?;
    }
    Ok(())
}

/// The criu-hook's verdict in CRIU's log: what decides it (the kernel, the tree's files), the
/// options CRIU was given, and how to pass what is missing.
pub fn hook_text(out: &mut dyn Write, h: &HookReport) -> io::Result<()> {
    for j in h.kernel.iter().filter(|j| j.verdict != Verdict::Ok) {
        judgement_line(out, j)?;
    }
    for p in h.dump.processes.iter().filter(|p| p.verdict != Verdict::Ok) {
        process_text(out, p, false)?;
    }
    options_text(out, h.engine, &h.options_in_force)?;
    let n = h.dump.processes.len();
    writeln!(
        out,
        "ckpt-watch: the dump of tree {} ({}, {n} process{}): {}",
        h.dump.root,
        printable(&h.profile),
        if n == 1 { "" } else { "es" },
        verdict_line(h.verdict, &h.options)
    )?;
    remedies_text(out, &h.remedies)
}

/// `preflight`: the profile and why, then each container, then a summary when there are several.
pub fn preflight_text(out: &mut dyn Write, doc: &PreflightReport, verbose: bool) -> io::Result<()> {
    writeln!(
        out,
        "profile {}: {}",
        printable(&doc.profile),
        printable(&doc.profile_source)
    )?;
    if doc.containers.is_empty() {
        return writeln!(out, "no containers found");
    }
    for c in &doc.containers {
        writeln!(out)?;
        container_text(out, c, &doc.profile, verbose)?;
    }
    if doc.containers.len() > 1 {
        let count = |v: Verdict| doc.containers.iter().filter(|c| c.verdict == v).count();
        writeln!(
            out,
            "\nsummary ({}): {} containers: {} ok, {} need options, {} unknown, {} blocked",
            doc.profile,
            doc.containers.len(),
            count(Verdict::Ok),
            count(Verdict::Needs),
            count(Verdict::Unknown),
            count(Verdict::Blocks)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(fd: u32, verdict: Verdict, options: &[&str]) -> FileReport {
        FileReport {
            fd: Some(fd),
            range: None,
            kind: "io_uring".into(),
            what: "anon_inode:[io_uring]".into(),
            fops: "io_uring_fops".into(),
            verdict,
            reason: "why".into(),
            options: options.iter().map(|s| s.to_string()).collect(),
            restore: vec![],
            rule: "r".into(),
        }
    }

    fn process(files: Vec<FileReport>, verdict: Verdict) -> ProcessReport {
        ProcessReport {
            pid: 7,
            comm: "x".into(),
            verdict,
            options: vec![],
            restore: vec![],
            task: vec![],
            judged: (files.len(), 0),
            files,
            mappings: vec![],
        }
    }

    #[test]
    fn a_needs_verdict_says_what_restore_will_need() {
        let line = verdict_line(Verdict::Needs, &["--tcp-established".to_string()]);
        assert!(
            line.starts_with(
                "needs: checkpointable with --tcp-established; restore will need --tcp-established"
            ),
            "{line}"
        );
        assert!(!verdict_line(Verdict::Ok, &[]).contains("restore"));
    }

    #[test]
    fn text_hides_ok_files_unless_verbose() {
        let p = process(
            vec![file(0, Verdict::Ok, &[]), file(3, Verdict::Blocks, &[])],
            Verdict::Blocks,
        );
        let mut out = Vec::new();
        process_text(&mut out, &p, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("  3 ") && !text.contains("  0 "), "{text}");
        let mut out = Vec::new();
        process_text(&mut out, &p, true).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("  0 "));
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("nginx"), "nginx");
        assert_eq!(printable("a\nverdict (x): ok"), "a\\nverdict (x): ok");
        assert_eq!(printable("\x1b[2J"), "\\u{1b}[2J");
        assert_eq!(printable("it's \"q\""), "it's \"q\"");
    }

    /// A process names itself and its file so as to forge a verdict line and clear the screen.
    #[test]
    fn process_chosen_strings_cannot_forge_lines() {
        let mut f = file(3, Verdict::Blocks, &["--irmap-scan-path /a\nverdict: ok"]);
        f.what = "/tmp/x\nverdict (criu-4, 1 process): ok: checkpointable as it is\x1b[2J".into();
        f.reason = "deleted file /tmp/\r\x1b]0;title\x07".into();
        let mut p = process(vec![f], Verdict::Blocks);
        p.comm = "\x1b[2Jevil\u{202e}".into();
        p.task = vec![Judgement {
            verdict: Verdict::Blocks,
            kind: "task".into(),
            rule: "r".into(),
            reason: "traced by \nx".into(),
            options: vec![],
        }];
        let d = DumpReport {
            root: 7,
            verdict: Verdict::Blocks,
            options: vec![],
            restore: vec![],
            processes: vec![p],
        };
        let mut out = Vec::new();
        dump_text(&mut out, &d, "criu-4", true).unwrap();
        host_text(&mut out, std::slice::from_ref(&d), "criu-4", true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
            "{text:?}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("verdict")).count(), 1);
        assert_eq!(short("aé123456789012345"), "aé1234567890");
    }

    #[test]
    fn remedy_lists_alternatives() {
        let r = file(3, Verdict::Needs, &["--tcp-established", "--tcp-close"]);
        assert_eq!(remedy(&r), "why; use --tcp-established or --tcp-close");
    }

    #[test]
    fn json_schema_of_a_process() {
        let p = process(vec![file(3, Verdict::Blocks, &[])], Verdict::Blocks);
        let mut out = Vec::new();
        process_json(&mut out, &p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pid"], 7);
        assert_eq!(v["verdict"], "blocks");
        assert_eq!(v["files"][0]["fd"], 3);
        assert_eq!(v["files"][0]["kind"], "io_uring");
        assert_eq!(v["files"][0]["fops"], "io_uring_fops");
        assert!(v["files"][0]["options"].as_array().unwrap().is_empty());
        assert!(v["mappings"].is_array() && v["options"].is_array());
    }

    #[test]
    fn host_json_has_summary_and_processes() {
        let d = DumpReport {
            root: 7,
            verdict: Verdict::Blocks,
            options: vec![],
            restore: vec![],
            processes: vec![process(vec![], Verdict::Blocks)],
        };
        let mut out = Vec::new();
        many_json(&mut out, &[d], "criu-4", true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["processes"][0]["pid"], 7);
        assert_eq!(v["summary"]["blocks"], 1);
        assert_eq!(v["verdict"], "blocks");
    }

    #[test]
    fn a_process_in_nested_workloads_is_counted_once() {
        let workload = |id: &str, pids: &[u32]| WorkloadReport {
            kind: crate::scope::workload::Kind::Session,
            id: id.into(),
            name: "sh".into(),
            root: pids[0],
            verdict: Verdict::Blocks,
            options: vec![],
            restore: vec![],
            left_out: vec![],
            processes: pids
                .iter()
                .map(|&pid| ProcessReport {
                    pid,
                    ..process(vec![file(3, Verdict::Blocks, &[])], Verdict::Blocks)
                })
                .collect(),
        };
        // Session 10's tree holds session 20, which holds pid 21.
        let s = WorkloadSummary::of(&[workload("10", &[10, 20, 21]), workload("20", &[20, 21])]);
        assert_eq!(
            (s.workloads, s.blocks, s.processes, s.fds),
            (2, 2, 3, 3),
            "{s:?}"
        );
    }
}
