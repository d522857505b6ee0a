//! Writes an audit report: one line per definition, the source with `--verbose`, a histogram
//! with `--stat N`, or JSON lines with `--json`; totals close the text forms.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::resolve::{DefKind, Definition};
use crate::{AuditReport, Options};

/// The `--stat N` key of a shown path: what `cut -d / -f N` prints for it. Shown paths start with
/// `./`, so N = 1 is `.`, N = 2 the top-level directory (`fs`), N = 3 the next (`ext4`); past the
/// file name the key is empty, as with `cut`.
pub fn stat_key(path: &Path, n: usize) -> String {
    let s = path.to_string_lossy();
    s.split('/')
        .nth(n.saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

/// `--stat N`: definitions lacking the member, counted by path component, like the seed's
/// `cut -d / -f N | sort | uniq -c`.
pub fn histogram(r: &AuditReport, n: usize) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for d in r.definitions.iter().filter(|d| !d.has_member) {
        *h.entry(stat_key(&d.file, n)).or_insert(0) += 1;
    }
    h
}

fn origin(d: &Definition) -> String {
    let kind = match d.kind {
        DefKind::Variable if d.file_scope => "variable",
        DefKind::Variable => "local variable",
        DefKind::ArrayElement => "array element",
        DefKind::CompoundLiteral => "compound literal",
        DefKind::Embedded => "embedded",
    };
    let mut s = kind.to_string();
    if let Some(m) = &d.via_macro {
        s += &format!(", from macro {m}");
    }
    if !d.initialised {
        s += ", no initialiser";
    }
    s
}

/// `; set at run time in cuse_init(): copy of fuse_dev_operations, owner, open`: what code
/// sets, by function, in source order.
fn run_time(d: &Definition) -> String {
    let mut by_fn: Vec<(&str, Vec<String>)> = Vec::new();
    for m in &d.members {
        let Some(rt) = &m.set_at_run_time else {
            continue;
        };
        let what = match &rt.copied_from {
            Some(src) => format!("copy of {src}"),
            None => m.name.clone(),
        };
        match by_fn.iter_mut().find(|(f, _)| *f == rt.function) {
            Some((_, list)) if list.contains(&what) => {}
            Some((_, list)) => list.push(what),
            None => by_fn.push((&rt.function, vec![what])),
        }
    }
    by_fn
        .into_iter()
        .map(|(f, list)| format!("; set at run time in {f}(): {}", list.join(", ")))
        .collect()
}

/// One line: `./fs/ext4/file.c:930: ext4_file_operations [variable]: lacks .checkpoint; members: ...`.
pub fn line(d: &Definition, op: &str) -> String {
    let verdict = if d.has_member {
        format!("has .{op}")
    } else {
        format!("lacks .{op}")
    };
    let members: Vec<&str> = d.members.iter().map(|m| m.name.as_str()).collect();
    let mut s = format!(
        "{}:{}: {} [{}]: {verdict}; members: {}",
        d.file.display(),
        d.line,
        d.name,
        origin(d),
        members.join(", ")
    );
    s += &run_time(d);
    if d.positional > 0 {
        s += &format!(
            "; {} positional (struct definition not found)",
            d.positional
        );
    }
    if !d.unreadable.is_empty() {
        s += &format!("; unread: {}", d.unreadable.join(", "));
    }
    s
}

/// The source of a definition with line numbers, and what only the audit could see in it.
fn verbose(out: &mut dyn Write, r: &AuditReport, d: &Definition) -> io::Result<()> {
    let text = r
        .sources
        .get(&d.file)
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    for (i, l) in text
        .lines()
        .enumerate()
        .skip(d.line as usize - 1)
        .take((d.end_line - d.line + 1) as usize)
    {
        writeln!(out, "{:>6}\t{l}", i + 1)?;
    }
    if let Some(m) = &d.via_macro {
        writeln!(out, "\t(expanded from {m})")?;
    }
    for m in &d.members {
        let Some(rt) = &m.set_at_run_time else {
            continue;
        };
        let copied = rt
            .copied_from
            .as_ref()
            .map(|c| format!(", copied from {c}"))
            .unwrap_or_default();
        writeln!(
            out,
            "\t.{} is set at run time, line {} in {}(){copied}",
            m.name, rt.line, rt.function
        )?;
    }
    for m in d.members.iter().filter(|m| m.condition.is_some()) {
        writeln!(
            out,
            "\t.{} is set in one branch of `{}` only: counted as present",
            m.name,
            m.condition.as_deref().unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Totals, by how each definition was written.
pub fn totals(out: &mut dyn Write, r: &AuditReport, opts: &Options) -> io::Result<()> {
    let t = r.totals();
    let by = |f: &dyn Fn(&Definition) -> bool| r.definitions.iter().filter(|d| f(d)).count();
    if t.found == 0 {
        writeln!(
            out,
            "no definition of struct {} found in {} C file(s); is the struct name right?",
            opts.struct_name, r.files_scanned
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} definitions of struct {} ({} written out, {} generated by macros; {} array elements, {} embedded, {} compound literals): {} with .{op}, {} without",
        t.found,
        opts.struct_name,
        by(&|d| d.via_macro.is_none()),
        by(&|d| d.via_macro.is_some()),
        by(&|d| d.kind == DefKind::ArrayElement),
        by(&|d| d.kind == DefKind::Embedded),
        by(&|d| d.kind == DefKind::CompoundLiteral),
        t.with_member,
        t.missing,
        op = opts.op,
    )?;
    let zeroed = by(&|d| !d.initialised);
    let run_time = by(&|d| d.members.iter().any(|m| m.set_at_run_time.is_some()));
    if zeroed + run_time > 0 {
        writeln!(
            out,
            "{zeroed} without initialiser (zeroes until code fills them), {run_time} with members set at run time"
        )?;
    }
    if !r.layout_found && r.definitions.iter().any(|d| d.positional > 0) {
        writeln!(
            out,
            "struct {} itself is not defined under the given paths: positional members were not named",
            opts.struct_name
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonDef<'a> {
    #[serde(flatten)]
    def: &'a Definition,
    missing: bool,
}

/// Writes the report in the form the flags ask for.
pub fn write(
    out: &mut dyn Write,
    r: &AuditReport,
    opts: &Options,
    stat: Option<usize>,
    verbose_src: bool,
    json: bool,
) -> io::Result<()> {
    if json {
        // JSON lines: one object per definition, so large trees stream and `jq -c` filters.
        for d in &r.definitions {
            serde_json::to_writer(
                &mut *out,
                &JsonDef {
                    def: d,
                    missing: !d.has_member,
                },
            )?;
            writeln!(out)?;
        }
        return Ok(());
    }
    if let Some(n) = stat {
        for (k, c) in histogram(r, n) {
            writeln!(out, "{c:>7} {k}")?;
        }
    } else {
        for d in &r.definitions {
            writeln!(out, "{}", line(d, &opts.op))?;
            if verbose_src {
                verbose(out, r, d)?;
            }
        }
    }
    totals(out, r, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_keys_follow_cut() {
        let p = Path::new("./fs/ext4/file.c");
        assert_eq!(stat_key(p, 1), ".");
        assert_eq!(stat_key(p, 2), "fs");
        assert_eq!(stat_key(p, 4), "file.c");
        assert_eq!(stat_key(p, 5), "");
    }
}
