//! Loading profiles through the library as a user would: built-in names, and TOML files with
//! every kind of mistake, each of which must fail at load with a one-line message that says
//! where. The last test runs the real binary with a bad profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_user::classify::{BUILTIN_PROFILES, ProfileError, load_profile};
use tempfile::TempDir;

const HEADER: &str = "[profile]\nname = \"mine\"\ncheckpointer = \"criu\"\nversion = \"4.2\"\n";

/// A fresh directory, in cargo's scratch space for tests under target/ (nothing goes to /tmp),
/// removed when dropped.
fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("ckpt-watch-profiles-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// Writes `text` to a file called `name` (messages name it) in a fresh directory, removed
/// when the returned guard drops.
fn write(name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = scratch();
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write profile");
    (dir, path)
}

/// Writes `text` to a file, loads it, and returns the error with its one-line message.
fn load_err(name: &str, text: &str) -> (ProfileError, String) {
    let (_dir, path) = write(name, text);
    let err = load_profile(path.to_str().unwrap()).expect_err("the profile must be rejected");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "message is not one line: {msg:?}");
    (err, msg)
}

fn rule(id: &str, body: &str) -> String {
    format!("{HEADER}\n[[rule]]\nid = \"{id}\"\n{body}\n")
}

#[test]
fn every_builtin_profile_loads() {
    assert!(BUILTIN_PROFILES.len() >= 2);
    for (name, _) in BUILTIN_PROFILES {
        let p = load_profile(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.profile.name, *name);
        assert_eq!(p.profile.checkpointer, "criu");
        assert!(!p.rules.is_empty(), "{name} has no rules");
        assert!(!p.task_rules.is_empty(), "{name} has no task rules");
        let mut ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "{name}: duplicate rule ids");
    }
}

#[test]
fn the_newest_builtin_profile_comes_first() {
    assert_eq!(BUILTIN_PROFILES[0].0, "criu-4");
}

#[test]
fn a_valid_user_profile_loads_from_a_file() {
    let (_dir, path) = write(
        "valid.toml",
        &rule(
            "io",
            "kind = \"io_uring\"\nverdict = \"blocks\"\nwhen = [{ name = \"[io_uring]\" }]",
        ),
    );
    let p = load_profile(path.to_str().unwrap()).expect("loads");
    assert_eq!(p.profile.name, "mine");
    assert_eq!(p.rules[0].id, "io");
}

#[test]
fn a_profile_extending_a_builtin_inherits_its_rules() {
    let text = "[profile]\nname = \"child\"\ncheckpointer = \"criu\"\nversion = \"4.2\"\nextends = \"criu-4\"\n\
         [[rule]]\nid = \"io-uring\"\nverdict = \"unknown\"\nwhen = [{ name = \"[io_uring]\" }]\n";
    let (_dir, path) = write("child.toml", text);
    let child = load_profile(path.to_str().unwrap()).expect("loads");
    let parent = load_profile("criu-4").unwrap();
    assert_eq!(child.rules.len(), parent.rules.len());
    let io = child.rules.iter().find(|r| r.id == "io-uring").unwrap();
    assert_eq!(io.verdict, ckpt_user::classify::Verdict::Unknown);
}

#[test]
fn extending_an_unknown_profile_is_rejected() {
    let text =
        "[profile]\nname = \"c\"\ncheckpointer = \"criu\"\nversion = \"1\"\nextends = \"criu-9\"\n";
    let (_, msg) = load_err("extends.toml", text);
    assert!(msg.contains("criu-9"), "{msg}");
}

#[test]
fn malformed_toml_reports_line_and_column() {
    let text = format!("{HEADER}\n[[rule]]\nid = \"x\"\nverdict = \n");
    let (err, msg) = load_err("malformed.toml", &text);
    match err {
        ProfileError::Syntax { line, column, .. } => {
            assert_eq!(line, 8, "{msg}");
            assert!(column >= 1, "{msg}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(msg.contains("malformed.toml"), "{msg}");
    assert!(msg.contains("line 8, column"), "{msg}");
}

#[test]
fn unknown_field_is_named() {
    let (_, msg) = load_err(
        "field.toml",
        &rule("r", "verdit = \"ok\"\nverdict = \"ok\""),
    );
    assert!(msg.contains("verdit"), "{msg}");
    assert!(msg.contains("line "), "{msg}");
}

#[test]
fn unknown_condition_is_named() {
    let (_, msg) = load_err(
        "cond.toml",
        &rule("r", "verdict = \"ok\"\nwhen = [{ famly = \"unix\" }]"),
    );
    assert!(msg.contains("famly"), "{msg}");
}

#[test]
fn unknown_verdict_is_named() {
    let (_, msg) = load_err("verdict.toml", &rule("r", "verdict = \"maybe\""));
    assert!(msg.contains("maybe"), "{msg}");
}

/// A condition with a bad name must fail naming the rule and the bad value.
#[track_caller]
fn rejects_condition(file: &str, cond: &str, bad: &str) {
    let id = format!("rule-with-{}", file.trim_end_matches(".toml"));
    let (err, msg) = load_err(
        file,
        &rule(&id, &format!("verdict = \"ok\"\nwhen = [{{ {cond} }}]")),
    );
    match &err {
        ProfileError::Invalid { rule, .. } => assert_eq!(rule, &id),
        other => panic!("expected an invalid-rule error, got {other:?}"),
    }
    assert!(msg.contains(&id) && msg.contains(bad), "{msg}");
}

#[test]
fn unknown_socket_family_is_rejected_naming_the_rule() {
    rejects_condition("family.toml", "family = [\"unix\", \"unixx\"]", "unixx");
}

#[test]
fn unknown_socket_type_is_rejected_naming_the_rule() {
    rejects_condition("socktype.toml", "sock_type = \"streem\"", "streem");
}

#[test]
fn unknown_tcp_state_is_rejected_naming_the_rule() {
    rejects_condition("state.toml", "tcp_state = \"establishd\"", "establishd");
}

#[test]
fn unknown_file_type_is_rejected_naming_the_rule() {
    rejects_condition("filetype.toml", "file_type = \"regular\"", "regular");
}

#[test]
fn bad_ranges_are_rejected_naming_the_rule() {
    rejects_condition("range.toml", "major = \"143-136\"", "143-136");
    rejects_condition("minor.toml", "minor = [1, \"a-b\"]", "a-b");
}

#[test]
fn needs_without_options_is_rejected() {
    let (err, msg) = load_err(
        "needs.toml",
        &rule(
            "half-done",
            "verdict = \"needs\"\nwhen = [{ locked = true }]",
        ),
    );
    assert!(matches!(err, ProfileError::Invalid { .. }), "{err:?}");
    assert!(
        msg.contains("half-done") && msg.contains("options"),
        "{msg}"
    );
}

#[test]
fn missing_file_lists_the_builtin_profiles() {
    let dir = scratch();
    let missing = dir.path().join("does-not-exist.toml");
    let err = load_profile(missing.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, ProfileError::NotFound(..)), "{err:?}");
    let msg = err.to_string();
    for (name, _) in BUILTIN_PROFILES {
        assert!(msg.contains(name), "{msg}");
    }
    assert!(
        msg.contains("does-not-exist.toml") && !msg.contains('\n'),
        "{msg}"
    );
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zoo-snapshot.json")
}

#[test]
fn the_binary_rejects_a_bad_profile_with_one_line_and_status_2() {
    let cases = [
        ("bin-syntax.toml", format!("{HEADER}\n[[rule]\n")),
        (
            "bin-family.toml",
            rule("r", "verdict = \"ok\"\nwhen = [{ family = \"nope\" }]"),
        ),
        ("bin-verdict.toml", rule("r", "verdict = \"perhaps\"")),
    ];
    for (name, text) in cases {
        let (_dir, path) = write(name, &text);
        let out = Command::new(env!("CARGO_BIN_EXE_ckpt-watch"))
            .arg("--profile")
            .arg(&path)
            .arg("--replay")
            .arg(fixture())
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run ckpt-watch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: stdout {:?}", out.stdout);
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.starts_with("ckpt-watch: error: "),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn the_binary_names_the_builtins_for_an_unknown_profile() {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt-watch"))
        .args(["--profile", "criu-5", "--replay"])
        .arg(fixture())
        .output()
        .expect("run ckpt-watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("criu-4") && stderr.contains("criu-3.17"),
        "{stderr}"
    );
}
