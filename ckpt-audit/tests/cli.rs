//! The command's contract: exit codes, bad input, JSON lines, --stat and the emitted profile.

use std::path::{Path, PathBuf};

use ckpt_audit::{AuditArgs, run};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: AuditArgs,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run_with(args: &[&str]) -> (i32, String) {
    let cli = Cli::try_parse_from(std::iter::once("audit").chain(args.iter().copied()))
        .expect("flags parse");
    let mut out = Vec::new();
    let code = run(&cli.args, &mut out).expect("run does not fail");
    (code, String::from_utf8(out).expect("utf-8 report"))
}

fn path(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

#[test]
fn no_existing_path_is_an_environment_error() {
    assert_eq!(run_with(&["/nonexistent/tree"]).0, 2);
}

/// Inputs that could not be audited make the run a partial failure (exit 2); the report still
/// covers the rest.
#[test]
fn bad_paths_are_reported_and_the_run_goes_on() {
    let (code, out) = run_with(&[
        "/nonexistent/tree",
        &path("templates_docs/doc.rst"),
        &path("split"),
    ]);
    assert_eq!(code, 2);
    assert!(out.contains("split_fops"), "{out}");
}

#[test]
fn an_unknown_struct_gives_zero_results_plainly() {
    let (code, out) = run_with(&["--struct", "no_such_ops", &path("forms")]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no definition of struct no_such_ops found"),
        "{out}"
    );
}

#[test]
fn a_non_identifier_member_is_a_usage_error() {
    assert_eq!(run_with(&["--op", ".checkpoint", &path("forms")]).0, 2);
}

#[test]
fn json_lines() {
    let (_, out) = run_with(&["--json", &path("array")]);
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(objs.len(), 3);
    assert_eq!(objs[0]["name"], "arr_fops[0]");
    assert_eq!(objs[0]["missing"], false);
    assert_eq!(objs[1]["missing"], true);
    assert_eq!(objs[1]["kind"], "array_element");
}

#[test]
fn stat_counts_by_path_component_like_cut() {
    let (_, out) = run_with(&["--stat", "2", &fixtures().display().to_string()]);
    // `./array/array.c` -> `array`; arr_fops[0] has .checkpoint, two elements lack it.
    assert!(out.lines().any(|l| l.trim() == "2 array"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "2 embedded"), "{out}");
}

#[test]
fn emitted_profile_is_valid_toml_in_the_design_format() {
    // A directory, not a file made here: "profile written" must mean the audit wrote it.
    let dir = tempfile::Builder::new()
        .prefix("ckpt-audit-profile-")
        .tempdir()
        .unwrap();
    let file = dir.path().join("profile.toml");
    let (code, _) = run_with(&[
        "--emit-profile",
        &file.display().to_string(),
        &path("forms"),
        &path("generated"),
    ]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&file).expect("profile written");
    let t: toml::Table = text.parse().expect("valid TOML");
    assert_eq!(t["profile"]["name"].as_str(), Some("linux-cr"));
    assert_eq!(t["profile"]["checkpointer"].as_str(), Some("linux-cr"));
    let ops = t["ops"].as_array().expect("[[ops]]");
    let gnu = ops
        .iter()
        .find(|o| o["name"].as_str() == Some("gnu_fops"))
        .expect("gnu_fops identity");
    // Only function pointers: `owner: THIS_MODULE` is left out.
    assert_eq!(gnu["members"].as_table().map(|m| m.len()), Some(1));
    assert_eq!(gnu["members"]["open"].as_str(), Some("gnu_open"));
    let rules = t["rule"].as_array().expect("[[rule]]");
    let list = |i: usize| {
        rules[i]["when"][0]["ops"]
            .as_array()
            .expect("ops list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(rules[0]["verdict"].as_str(), Some("ok"));
    assert!(list(0).contains(&"cond_fops".to_string()));
    assert!(list(0).contains(&"baz_local_fops".to_string()));
    assert!(
        list(1).contains(&"foo_fops".to_string()),
        "macro-generated names count"
    );
    // Local tables and compound literals are no data symbols of their own.
    assert!(!list(1).contains(&"local_fops".to_string()));
}

#[test]
fn members_set_at_run_time_are_said_so() {
    let (code, out) = run_with(&[&path("zeroed")]);
    assert_eq!(code, 0);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name} [")))
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    assert!(
        line("copied_fops").ends_with(
            "copied_fops [variable, no initialiser]: has .checkpoint; members: read, checkpoint, open; \
             set at run time in zeroed_init(): copy of base_fops, open"
        ),
        "{out}"
    );
    assert!(
        line("never_filled_fops")
            .ends_with("[variable, no initialiser]: lacks .checkpoint; members: "),
        "{out}"
    );
    assert!(
        out.contains(
            "4 without initialiser (zeroes until code fills them), 5 with members set at run time"
        ),
        "{out}"
    );
    let (_, json) = run_with(&["--json", &path("zeroed")]);
    let owned: serde_json::Value = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|o| o["name"] == "owned_fops")
        .expect("owned_fops");
    assert_eq!(owned["initialised"], true);
    assert_eq!(owned["members"][1]["name"], "owner");
    assert_eq!(
        owned["members"][1]["set_at_run_time"]["function"],
        "zeroed_init"
    );
    assert_eq!(owned["members"][1]["set_at_run_time"]["line"], 32);
}
