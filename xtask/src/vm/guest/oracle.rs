//! The second oracle: Debian's CRIU 3.17 dumps the subject (`--leave-running`), plainly and,
//! when that fails, with what ckpt-watch says is needed, then with everything that might
//! help; its result must match ckpt-watch's `criu-3.17` verdict:
//! dumps ⇔ ok, passes only with option X ⇔ needs X, nothing helps ⇔ blocks.

use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use super::super::records::Record;
use super::zoo::Subject;

/// Options that can turn a failing dump into a passing one without naming an object:
/// what is tried when ckpt-watch's own proposals do not help.
const EVERYTHING: &[&str] = &[
    "--shell-job",
    "--ext-unix-sk",
    "--tcp-established",
    "--file-locks",
    "--link-remap",
    "--skip-in-flight",
    "--ghost-limit 1G",
];

/// CRIU's result for one case against ckpt-watch's live `report` on it.
pub fn check(case: &str, subject: &Subject, report: &Value) -> anyhow::Result<Record> {
    let verdict = report["verdict"].as_str().unwrap_or("?").to_string();
    let options = string_list(&report["options"]);
    let (plain_ok, error) = dump(subject.pid, &[])?;
    let items = items(report);
    let proposed = proposals(&options, &items);
    let criu = if plain_ok {
        "dumps".to_string()
    } else {
        match helping_option(subject.pid, &proposed)? {
            Some(option) => format!("needs {option}"),
            None => "fails".to_string(),
        }
    };
    let agree = match criu.strip_prefix("needs ") {
        Some(option) => verdict == "needs" && proposed.iter().any(|p| p == option),
        None if criu == "dumps" => verdict == "ok",
        None => verdict == "blocks",
    };
    Ok(Record::Oracle {
        case: case.into(),
        criu,
        error,
        verdict,
        options,
        reasons: reasons(&items),
        agree,
    })
}

/// The judged items of a process report: task checks, fds and mappings.
pub fn items(process: &Value) -> Vec<&Value> {
    ["task", "files", "mappings"]
        .iter()
        .flat_map(|k| process[k].as_array().into_iter().flatten())
        .collect()
}

/// What ckpt-watch proposes, best first: its `chosen` options together, then every
/// alternative any of its `items` offers alone.
pub fn proposals(chosen: &[String], items: &[&Value]) -> Vec<String> {
    let mut out = Vec::new();
    if chosen.len() > 1 {
        out.push(chosen.join(" "));
    }
    for item in items {
        for option in string_list(&item["options"]) {
            if !out.contains(&option) {
                out.push(option);
            }
        }
    }
    out
}

/// The first option (set) that makes the dump pass: ckpt-watch's proposals, then the
/// catch-all set, together first so that a case nothing helps costs one dump, then alone.
fn helping_option(pid: u32, proposed: &[String]) -> anyhow::Result<Option<String>> {
    for option in proposed {
        if dump(pid, &[option.as_str()])?.0 {
            return Ok(Some(option.clone()));
        }
    }
    if !dump(pid, EVERYTHING)?.0 {
        return Ok(None);
    }
    for option in EVERYTHING {
        if dump(pid, &[option])?.0 {
            return Ok(Some(option.to_string()));
        }
    }
    Ok(Some(EVERYTHING.join(" ")))
}

/// `criu dump -t PID --leave-running` with `options`; (passed, first error line).
fn dump(pid: u32, options: &[&str]) -> anyhow::Result<(bool, String)> {
    let dir = "/tmp/criu-images";
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let status = Command::new("/usr/sbin/criu")
        .args([
            "dump",
            "-t",
            &pid.to_string(),
            "--leave-running",
            "-D",
            dir,
            "-o",
            "dump.log",
            "-v2",
        ])
        .args(options.iter().flat_map(|o| o.split_whitespace()))
        .status()
        .context("running criu")?;
    // Lossy: CRIU logs paths and names as the kernel gives them, not always UTF-8.
    let log =
        String::from_utf8_lossy(&std::fs::read(format!("{dir}/dump.log")).unwrap_or_default())
            .into_owned();
    let error = if status.success() {
        String::new()
    } else {
        first_error(&log)
    };
    let _ = std::fs::remove_dir_all(dir);
    Ok((status.success(), error))
}

/// The first telling error line of a failed dump: CRIU logs "exited, status=1" (util.c) for
/// every helper that fails, also while probing the kernel, and "Can't stat" (irmap.c) for
/// every hint path its search for an inode's name misses, so the line naming the object is
/// preferred.
pub fn first_error(log: &str) -> String {
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error (")).collect();
    let telling = errors
        .iter()
        .find(|l| !l.contains("criu/util.c") && !l.contains("criu/irmap.c"));
    telling
        .or(errors.first())
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// The reasons of the items that are not ok.
pub fn reasons(items: &[&Value]) -> Vec<String> {
    items
        .iter()
        .filter(|item| item["verdict"] != "ok")
        .filter_map(|item| item["reason"].as_str().map(String::from))
        .collect()
}

pub fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}
