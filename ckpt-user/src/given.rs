//! The checkpointer options that will really be used (`--with "..."`): a `needs` verdict whose
//! option is given becomes `ok`.

use crate::classify::{Judgement, Verdict};

/// Options as `(name, value)`: `--ghost-limit 2M` → ("--ghost-limit", Some("2M")).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    options: Vec<(String, Option<String>)>,
}

fn size_bytes(s: &str) -> Option<u64> {
    let (num, mult) = match s.trim().to_ascii_uppercase().chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

impl Given {
    /// Parses a command-line-like string. A token not starting with `-` is the previous
    /// option's value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut options: Vec<(String, Option<String>)> = Vec::new();
        for token in text.split_whitespace() {
            if let Some(name) = token.strip_prefix("--") {
                let (name, value) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                options.push((format!("--{name}"), value));
            } else if let Some(last) = options.last_mut().filter(|o| o.1.is_none()) {
                last.1 = Some(token.to_string());
            } else {
                return Err(format!(
                    "`{token}` is not an option (options start with --)"
                ));
            }
        }
        Ok(Self { options })
    }

    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    pub fn merge(&mut self, other: Given) {
        self.options.extend(other.options);
    }

    /// Whether `wanted` (one alternative of a `needs`, e.g. `--ghost-limit 2M`) is satisfied.
    fn satisfies(&self, wanted: &str) -> bool {
        let Ok(want) = Given::parse(wanted) else {
            return false;
        };
        let Some((name, value)) = want.options.first() else {
            return false;
        };
        self.options.iter().any(|(n, v)| {
            n == name
                && match (name.as_str(), value, v) {
                    (_, None, _) => true,
                    ("--ghost-limit", Some(w), Some(g)) => size_bytes(g)
                        .zip(size_bytes(w))
                        .is_some_and(|(g, w)| g >= w),
                    (_, Some(w), Some(g)) => w == g,
                    (_, Some(_), None) => false,
                }
        })
    }

    /// Turns a `needs` into `ok` when one of its options is given.
    pub fn apply(&self, mut j: Judgement) -> Judgement {
        if j.verdict == Verdict::Needs {
            if let Some(opt) = j.options.iter().find(|o| self.satisfies(o)) {
                j.reason = format!("{} (passes with {opt}, given)", j.reason);
                j.verdict = Verdict::Ok;
            }
        }
        j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(options: &[&str]) -> Judgement {
        Judgement {
            verdict: Verdict::Needs,
            kind: "k".into(),
            rule: "r".into(),
            reason: "why".into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parses_names_and_values() {
        let g = Given::parse("--tcp-established --ghost-limit 2M --external=unix[5]").unwrap();
        assert_eq!(g.options.len(), 3);
        assert_eq!(g.options[1], ("--ghost-limit".into(), Some("2M".into())));
        assert!(Given::parse("tcp-established").is_err());
    }

    #[test]
    fn given_option_turns_needs_into_ok() {
        let g = Given::parse("--tcp-close").unwrap();
        assert_eq!(
            g.apply(needs(&["--tcp-established", "--tcp-close"]))
                .verdict,
            Verdict::Ok
        );
        assert_eq!(g.apply(needs(&["--file-locks"])).verdict, Verdict::Needs);
    }

    #[test]
    fn values_must_match_and_sizes_compare() {
        let g = Given::parse("--ghost-limit 1G --external unix[42]").unwrap();
        assert_eq!(g.apply(needs(&["--ghost-limit 2M"])).verdict, Verdict::Ok);
        assert_eq!(
            g.apply(needs(&["--external unix[42]"])).verdict,
            Verdict::Ok
        );
        assert_eq!(
            g.apply(needs(&["--external unix[43]"])).verdict,
            Verdict::Needs
        );
        let small = Given::parse("--ghost-limit 1M").unwrap();
        assert_eq!(
            small.apply(needs(&["--ghost-limit 2M"])).verdict,
            Verdict::Needs
        );
    }
}
