//! Rendering verdicts for people (aligned text) and programs (JSON).

use std::io::{self, Write};

use serde::Serialize;

use crate::aggregate::{DumpReport, FileReport, ProcessReport};
use crate::classify::{Judgement, Verdict};
use crate::preflight::{ContainerReport, PreflightReport};

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
        let mut s = Summary::default();
        for p in reports.iter().flat_map(|r| &r.processes) {
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

fn remedy(r: &FileReport) -> String {
    match (r.verdict, r.options.as_slice()) {
        (Verdict::Needs, [one]) => format!("{}; use {one}", r.reason),
        (Verdict::Needs, many) if !many.is_empty() => {
            format!("{}; use {}", r.reason, many.join(" or "))
        }
        _ => r.reason.clone(),
    }
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
        r.kind,
        r.fops,
        r.verdict.as_str(),
        remedy(r),
        r.what
    )
}

/// A process: its files that are not ok (all of them with `verbose`), then its verdict.
pub fn process_text(out: &mut dyn Write, p: &ProcessReport, verbose: bool) -> io::Result<()> {
    writeln!(out, "pid {} ({})", p.pid, p.comm)?;
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
        let fix = if j.options.is_empty() {
            String::new()
        } else {
            format!("; use {}", j.options.join(" or "))
        };
        writeln!(out, "  task   {:<7} {}{fix}", j.verdict.as_str(), j.reason)?;
    }
    Ok(())
}

fn verdict_line(v: Verdict, options: &[String]) -> String {
    match v {
        Verdict::Ok => "ok: checkpointable as it is".into(),
        Verdict::Needs => format!("needs: checkpointable with {}", options.join(" ")),
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
            p.comm,
            p.verdict.as_str(),
            detail
        )?;
    }
    let s = Summary::of(reports);
    writeln!(
        out,
        "summary ({profile}): {} processes: {} ok, {} need options, {} unknown, {} blocked ({} fds, {} mappings)",
        s.processes, s.ok, s.needs, s.unknown, s.blocks, s.fds, s.mappings
    )
}

#[derive(Serialize)]
struct ManyJson<'a> {
    profile: &'a str,
    verdict: Verdict,
    options: &'a [String],
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
    let fix = match j.options.as_slice() {
        [] => String::new(),
        o => format!("; use {}", o.join(" or ")),
    };
    writeln!(
        out,
        "    {:<7} {:<16} {}{fix}",
        j.verdict.as_str(),
        j.rule,
        j.reason
    )
}

fn container_text(
    out: &mut dyn Write,
    c: &ContainerReport,
    profile: &str,
    verbose: bool,
) -> io::Result<()> {
    writeln!(
        out,
        "container {}  cgroup {} ({:?}, id {})",
        c.label(),
        c.cgroup.path,
        c.cgroup.version,
        c.cgroup.id
    )?;
    if let Some(pod) = c.container.as_ref().and_then(|n| n.pod.as_deref()) {
        writeln!(out, "  pod {pod}")?;
    }
    let root_comm = c
        .processes
        .iter()
        .find(|p| p.pid == c.root)
        .map_or("", |p| p.comm.as_str());
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
    writeln!(out, "  options in force (engine {}):", c.engine.as_str())?;
    if c.options_in_force.is_empty() {
        writeln!(out, "    none")?;
    }
    for o in &c.options_in_force {
        writeln!(out, "    {:<28} {}", o.to_string(), o.source)?;
    }
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
        c.label(),
        c.processes.len(),
        if c.processes.len() == 1 { "" } else { "es" },
        verdict_line(c.verdict, &c.options)
    )?;
    for r in &c.remedies {
        writeln!(out, "  to pass {}: {}", r.option, r.how)?;
    }
    Ok(())
}

/// `preflight`: the profile and why, then each container, then a summary when there are several.
pub fn preflight_text(out: &mut dyn Write, doc: &PreflightReport, verbose: bool) -> io::Result<()> {
    writeln!(out, "profile {}: {}", doc.profile, doc.profile_source)?;
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
            rule: "r".into(),
        }
    }

    fn process(files: Vec<FileReport>, verdict: Verdict) -> ProcessReport {
        ProcessReport {
            pid: 7,
            comm: "x".into(),
            verdict,
            options: vec![],
            task: vec![],
            judged: (files.len(), 0),
            files,
            mappings: vec![],
        }
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
            processes: vec![process(vec![], Verdict::Blocks)],
        };
        let mut out = Vec::new();
        many_json(&mut out, &[d], "criu-4", true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["processes"][0]["pid"], 7);
        assert_eq!(v["summary"]["blocks"], 1);
        assert_eq!(v["verdict"], "blocks");
    }
}
