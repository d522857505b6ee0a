//! The audit meets arbitrary and near-valid C: it never panics or overflows its stack, answers
//! in bounded time with no more definitions than the text could hold, and every diagnostic is
//! one line.

use std::time::{Duration, Instant};

use ckpt_audit::{Options, audit, lex, parse};
use proptest::prelude::*;

const SAMPLE: &str = r#"#define DEFINE_SHOW(__name) static const struct file_operations __name ## _fops = { .open = __name ## _open }
struct file_operations { int (*open)(void); int (*checkpoint)(void); };
struct wrap { const struct file_operations fops; int x; };
static const struct file_operations a_fops = {
#ifdef CONFIG_X
	.checkpoint = cp,
#endif
	.open = f, /* "}" */ .read = "{",
};
DEFINE_SHOW(b);
static struct wrap w = { .fops = { .open = g } };
struct file_operations arr[] = { { .open = h }, [1] = { i, 0 } };
void k(void) { use((struct file_operations){ .open = m }); }
"#;

/// Few cases per property, so the suite stays fast; a deeper run sets `PROPTEST_CASES`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        "[ -~]{0,16}".prop_map(String::into_bytes),
        prop::sample::select(vec![
            "{", "}", "(", ")", "#if 0\n", "#endif\n", "/*", "\"", "\\\n"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        (1usize..3000).prop_map(|n| "{".repeat(n).into_bytes()),
    ]
}

/// The sample with a few spans replaced by junk bytes.
fn c_source() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), 0usize..60, junk());
    let mutated = prop::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut s = SAMPLE.as_bytes().to_vec();
        for (at, len, insert) in edits {
            let start = at.index(s.len() + 1);
            let end = (start + len).min(s.len());
            s.splice(start..end, insert);
        }
        s
    });
    prop_oneof![4 => mutated, 1 => prop::collection::vec(any::<u8>(), 0..600)]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn audit_of_arbitrary_c(src in c_source()) {
        let dir = tempfile::Builder::new()
            .prefix("ckpt-audit-prop-")
            .tempdir()
            .unwrap();
        let file = dir.path().join("x.c");
        std::fs::write(&file, &src).unwrap();
        let start = Instant::now();
        let report = audit(std::slice::from_ref(&file), &Options::default());
        prop_assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        // Each definition needs at least an `=` and a brace of its own.
        prop_assert!(report.definitions.len() <= src.len() / 2);
        for d in &report.diagnostics {
            let line = d.to_string();
            prop_assert!(!line.contains('\n'), "{line:?}");
        }
    }

    #[test]
    fn lexing_and_nesting(src in c_source()) {
        let toks = lex::tokens(&src);
        prop_assert!(toks.len() <= src.len());
        prop_assert!(toks.windows(2).all(|w| w[0].end <= w[1].start));
        let shape = parse::shape(&src);
        if let Some((line, byte)) = shape.stray {
            prop_assert!(byte >= 0x80 && line as usize <= src.len() + 1);
        }
    }
}
