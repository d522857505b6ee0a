//! One fixture per failure class of the seed script (and per form the audit reads): what the
//! script reports on it, run for real, beside what the audit reports.

use std::path::{Path, PathBuf};

use ckpt_audit::testing::run_seed;
use ckpt_audit::{AuditReport, DefKind, Options, audit};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ours(name: &str, op: &str) -> AuditReport {
    let opts = Options {
        op: op.into(),
        ..Options::default()
    };
    audit(&[fixture(name)], &opts)
}

/// `(name, has the member)` of every definition, in file and line order.
fn verdicts(r: &AuditReport) -> Vec<(String, bool)> {
    r.definitions
        .iter()
        .map(|d| (d.name.clone(), d.has_member))
        .collect()
}

fn seed(name: &str, op: &str) -> Vec<String> {
    let (mut lines, _) =
        run_seed(&fixture(name), &["--operation", op, "."]).expect("seed script runs");
    lines.sort();
    lines
}

fn v(items: &[(&str, bool)]) -> Vec<(String, bool)> {
    items.iter().map(|(n, h)| (n.to_string(), *h)).collect()
}

#[test]
fn split_declarations() {
    // The script sees neither table; its one entry is the comment that explains why.
    assert_eq!(seed("split", "checkpoint"), ["./split.c:2+5"]);
    assert_eq!(
        verdicts(&ours("split", "checkpoint")),
        v(&[("split_fops", false), ("split_two_fops", false)])
    );
}

#[test]
fn arrays_are_judged_element_by_element() {
    // The script stops at element 0, which has .checkpoint: the array looks fine.
    assert!(seed("array", "checkpoint").is_empty());
    let r = ours("array", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("arr_fops[0]", true),
            ("arr_fops[1]", false),
            ("arr_fops[2]", false)
        ])
    );
    assert!(
        r.definitions
            .iter()
            .all(|d| d.kind == DefKind::ArrayElement)
    );
}

#[test]
fn member_hiding_macros_are_expanded() {
    // DRM_GEM_FOPS-style: .checkpoint is in the macro, so the script calls it missing.
    assert_eq!(seed("member_macro", "checkpoint"), ["./member_macro.c:8+5"]);
    let r = ours("member_macro", "checkpoint");
    assert_eq!(verdicts(&r), v(&[("gem_fops", true)]));
    let members: Vec<&str> = r.definitions[0]
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(members, ["owner", "open", "release", "checkpoint", "mmap"]);
}

#[test]
fn member_names_match_exactly() {
    // Asked for `read`, the script's `\.read` matches `.read_iter`.
    assert!(seed("substring", "read").is_empty());
    assert_eq!(
        verdicts(&ours("substring", "read")),
        v(&[("iter_fops", false)])
    );
    assert_eq!(
        verdicts(&ours("substring", "read_iter")),
        v(&[("iter_fops", true)])
    );
}

#[test]
fn templates_comments_and_docs_are_not_definitions() {
    assert_eq!(
        seed("templates_docs", "checkpoint"),
        [
            "./doc.rst:6+3",
            "./rule.cocci:4+3",
            "./template.c:3+3",
            "./template.c:7+1"
        ]
    );
    let r = ours("templates_docs", "checkpoint");
    assert!(r.definitions.is_empty());
    // The .rst and .cocci files are not even read.
    assert_eq!(r.files_scanned, 1);
}

#[test]
fn braces_in_comments_and_strings_do_not_end_a_table() {
    assert_eq!(
        seed("first_brace", "checkpoint"),
        ["./first_brace.c:3+2", "./first_brace.c:8+2"]
    );
    assert_eq!(
        verdicts(&ours("first_brace", "checkpoint")),
        v(&[("comment_fops", true), ("string_fops", true)])
    );
}

#[test]
fn tables_embedded_in_other_structs() {
    assert!(seed("embedded", "checkpoint").is_empty());
    let r = ours("embedded", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("wrapped.fops", false),
            ("wrapped_array[0].fops", true),
            ("wrapped_array[1].fops", false)
        ])
    );
    assert!(r.definitions.iter().all(|d| d.kind == DefKind::Embedded));
}

#[test]
fn macro_generated_tables() {
    // The script reports the two templates in the header and none of the tables.
    assert_eq!(
        seed("generated", "checkpoint"),
        ["./seq_file.h:17+6", "./seq_file.h:8+7"]
    );
    let r = ours("generated", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("foo_fops", false),
            ("bar_fops", false),
            ("baz_local_fops", true)
        ])
    );
    let via: Vec<Option<&str>> = r
        .definitions
        .iter()
        .map(|d| d.via_macro.as_deref())
        .collect();
    assert_eq!(
        via,
        [
            Some("DEFINE_SHOW_ATTRIBUTE"),
            Some("DEFINE_MY_ATTRIBUTE"),
            Some("LOCAL_FOPS")
        ]
    );
    assert_eq!(
        r.definitions[1].line, 5,
        "a call split over lines is reported at its first line"
    );
}

#[test]
fn if0_code_is_in_no_configuration() {
    assert_eq!(seed("if0", "checkpoint"), ["./if0.c:3+3"]);
    assert!(ours("if0", "checkpoint").definitions.is_empty());
}

#[test]
fn every_form_of_initialiser() {
    // The script reports three of seven, two of them wrongly (cond_fops has .checkpoint under
    // #ifdef; multi_b is the second declarator of line 30).
    assert_eq!(
        seed("forms", "checkpoint"),
        ["./forms.c:12+4", "./forms.c:17+3", "./forms.c:34+1"]
    );
    let r = ours("forms", "checkpoint");
    assert!(r.layout_found);
    assert_eq!(
        verdicts(&r),
        v(&[
            ("gnu_fops", false),
            ("positional_fops", false),
            ("cond_fops", true),
            ("multi_a", false),
            ("multi_b", true),
            ("local_fops", false),
            ("(compound literal)", false),
        ])
    );
    let d = |n: &str| r.definitions.iter().find(|d| d.name == n).expect(n);
    let names = |n: &str| {
        d(n).members
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("gnu_fops"), ["owner", "open"]);
    assert_eq!(names("positional_fops"), ["owner", "llseek", "read"]);
    let cond = &d("cond_fops").members;
    assert_eq!(
        cond[1].condition.as_deref(),
        Some("#ifdef CONFIG_CHECKPOINT")
    );
    assert!(!d("local_fops").file_scope);
    assert_eq!(d("(compound literal)").kind, DefKind::CompoundLiteral);
}

#[test]
fn positional_without_the_struct_definition_is_said_so() {
    let r = ours("positional", "checkpoint");
    assert!(!r.layout_found);
    assert_eq!(r.definitions[0].positional, 3);
    assert!(r.definitions[0].members.is_empty());
}

#[test]
fn pointers_are_not_tables() {
    assert_eq!(seed("not_definitions", "checkpoint"), ["./pointers.c:5+3"]);
    assert!(ours("not_definitions", "checkpoint").definitions.is_empty());
}

/// The members of definition `name`, in order; those set by code marked `name@function`.
fn members(r: &AuditReport, name: &str) -> Vec<String> {
    let d = r
        .definitions
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} found"));
    d.members
        .iter()
        .map(|m| match &m.set_at_run_time {
            Some(rt) => format!("{}@{}", m.name, rt.function),
            None => m.name.clone(),
        })
        .collect()
}

#[test]
fn tables_in_structs_of_anonymous_type() {
    // The outer declarations name no file_operations: the script sees nothing.
    assert!(seed("anonymous", "checkpoint").is_empty());
    let r = ours("anonymous", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("named_fops[0].fops", false),
            ("named_fops[1].fops", true),
            ("counted.fops", false),
        ])
    );
    assert!(r.definitions.iter().all(|d| d.kind == DefKind::Embedded));
    assert_eq!(members(&r, "named_fops[0].fops"), ["open", "read"]);
    // Positional elements are named through the anonymous type's own layout.
    assert_eq!(members(&r, "named_fops[1].fops"), ["read", "checkpoint"]);
    // Left out of the initialiser: zeroes, every member missing.
    assert!(members(&r, "counted.fops").is_empty());
    assert!(!r.definitions[2].initialised);
}

#[test]
fn x_macro_built_tables() {
    // The script sees the template of the file-scope X, and none of the six tables.
    assert_eq!(seed("xmacro", "checkpoint"), ["./xmacro.c:15+1"]);
    let r = ours("xmacro", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            // Members of an anonymous struct, one per list entry, each with its table.
            ("param_fops.alpha", false),
            ("param_fops.beta", false),
            // One table per entry of a list from the included header...
            ("alpha_fops", false),
            ("beta_fops", false),
            // ... and of a list the file defines itself (same line: sorted by name).
            ("delta_fops", true),
            ("gamma_fops", true),
        ])
    );
    assert_eq!(members(&r, "param_fops.alpha"), ["open", "read"]);
    assert_eq!(members(&r, "beta_fops"), ["write"]);
    let via: Vec<Option<&str>> = r
        .definitions
        .iter()
        .map(|d| d.via_macro.as_deref())
        .collect();
    assert_eq!(
        via,
        [
            None,
            None,
            Some("PARAMS"),
            Some("PARAMS"),
            Some("LOCAL_LIST"),
            Some("LOCAL_LIST")
        ]
    );
}

#[test]
fn objects_without_initialiser_and_filled_at_run_time() {
    // The script reports the three written-out initialisers (forward_fops, owned_fops and the
    // local copy, whose `=` it takes for one) and none of the objects code fills.
    assert_eq!(
        seed("zeroed", "checkpoint"),
        ["./zeroed.c:15+1", "./zeroed.c:41+5", "./zeroed.c:6+1"]
    );
    let r = ours("zeroed", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("base_fops", true),
            ("never_filled_fops", false),
            // The forward declaration is no object of its own.
            ("forward_fops", false),
            // A copy of base_fops, which has .checkpoint.
            ("copied_fops", true),
            ("by_call_fops", false),
            ("owned_fops", false),
            ("slots[]", true),
            ("local", true),
        ])
    );
    let d = |n: &str| r.definitions.iter().find(|d| d.name == n).expect(n);
    assert!(members(&r, "never_filled_fops").is_empty());
    assert!(!d("never_filled_fops").initialised);
    assert!(d("forward_fops").initialised);
    // Copied, then one member added and one taken away (`= NULL`).
    assert_eq!(
        members(&r, "copied_fops"),
        [
            "read@zeroed_init",
            "checkpoint@zeroed_init",
            "open@zeroed_init"
        ]
    );
    let copied = d("copied_fops").members[0].set_at_run_time.clone().unwrap();
    assert_eq!(copied.copied_from.as_deref(), Some("base_fops"));
    assert_eq!(copied.line, 24);
    // What default_fops() puts there is out of sight, and said so; register_fops() comes
    // after the object was filled, so it only registers it.
    assert_eq!(members(&r, "by_call_fops"), ["open@zeroed_init"]);
    assert_eq!(
        d("by_call_fops").unreadable,
        ["address passed to default_fops() in zeroed_init()"]
    );
    assert_eq!(members(&r, "owned_fops"), ["open", "owner@zeroed_init"]);
    // `slots[i].checkpoint = ...` fills the array defined once as `slots[]`.
    assert_eq!(members(&r, "slots[]"), ["checkpoint@zeroed_init"]);
    assert_eq!(d("slots[]").kind, DefKind::ArrayElement);
    // A local copied at its declaration, then extended.
    assert!(!d("local").file_scope);
    assert_eq!(
        members(&r, "local"),
        [
            "read@local_user",
            "unlocked_ioctl@local_user",
            "checkpoint@local_user",
            "write@local_user"
        ]
    );
}

#[test]
fn wrapper_instances_left_out_or_filled_at_run_time() {
    assert_eq!(
        seed("filled_wrappers", "checkpoint"),
        ["./filled_wrappers.c:17+1"]
    );
    let r = ours("filled_wrappers", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("zero_holder.fops", false),
            ("named_holder.fops", false),
            ("holders[0].fops", false),
            ("holders[1].fops", false),
            ("from_macro.fops", false),
            ("holder_base_fops", false),
        ])
    );
    // Every instance of the wrapper holds a table, written or not.
    assert!(members(&r, "zero_holder.fops").is_empty());
    assert_eq!(members(&r, "named_holder.fops"), ["open@holders_init"]);
    // `holders[0].fops = holder_base_fops;` copies a whole embedded table.
    assert_eq!(members(&r, "holders[0].fops"), ["llseek@holders_init"]);
    assert_eq!(members(&r, "holders[1].fops"), ["read"]);
    // A braced initialiser hidden in a macro, after `=`.
    assert_eq!(members(&r, "from_macro.fops"), ["open"]);
}

#[test]
fn table_macros_that_call_helper_macros_first() {
    // The script sees the two templates, not the three tables.
    assert_eq!(
        seed("helper_macros", "checkpoint"),
        ["./helper_macros.c:20+3", "./helper_macros.c:9+4"]
    );
    let r = ours("helper_macros", "checkpoint");
    assert_eq!(
        verdicts(&r),
        v(&[
            ("first_ops", false),
            ("second_ops", false),
            ("stsi_1_2_2_fs_ops", false)
        ])
    );
    assert_eq!(members(&r, "second_ops"), ["open", "read"]);
    assert_eq!(r.definitions[2].via_macro.as_deref(), Some("STSI_FILE"));
}
