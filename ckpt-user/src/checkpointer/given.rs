//! The checkpointer options that will really be used (`--with "..."`, an engine's defaults,
//! CRIU's configuration files), each with where it came from: a `needs` verdict whose option is
//! given becomes `ok`, and says which source gave it.

use std::fmt;

use serde::Serialize;

use crate::classify::{Judgement, Verdict};

/// Where an option in force comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum Source {
    /// `--with "..."` on ckpt-watch's command line.
    With,
    /// What the container engine always passes.
    Engine { engine: String },
    /// A CRIU configuration file.
    File { path: String, line: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::With => f.write_str("--with"),
            Self::Engine { engine } => write!(f, "engine {engine}"),
            Self::File { path, line } => write!(f, "{path}:{line}"),
        }
    }
}

/// One option: `--ghost-limit 2M` → name `--ghost-limit`, value `2M`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GivenOption {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub source: Source,
}

impl fmt::Display for GivenOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} {v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The options in force, in the order the checkpointer reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    options: Vec<GivenOption>,
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
    pub fn parse(text: &str, source: Source) -> Result<Self, String> {
        let mut given = Given::default();
        for token in text.split_whitespace() {
            if let Some(name) = token.strip_prefix("--") {
                let (name, value) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                given.push(name, value, source.clone());
            } else if let Some(last) = given.options.last_mut().filter(|o| o.value.is_none()) {
                last.value = Some(token.to_string());
            } else {
                return Err(format!(
                    "`{token}` is not an option (options start with --)"
                ));
            }
        }
        Ok(given)
    }

    /// Adds `--name [value]`. A boolean's `no-name` spelling (CRIU accepts it on the command
    /// line and in its files) withdraws what came before instead.
    pub fn push(&mut self, name: &str, value: Option<String>, source: Source) {
        let name = name.trim_start_matches('-');
        if let Some(positive) = name.strip_prefix("no-") {
            let withdrawn = format!("--{positive}");
            self.options.retain(|o| o.name != withdrawn);
            return;
        }
        self.options.push(GivenOption {
            name: format!("--{name}"),
            value,
            source,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    pub fn options(&self) -> &[GivenOption] {
        &self.options
    }

    pub fn merge(&mut self, other: Given) {
        self.options.extend(other.options);
    }

    /// The option in force that satisfies `wanted` (one alternative of a `needs`, e.g.
    /// `--ghost-limit 2M`: a given limit at least that large).
    fn satisfying(&self, wanted: &str) -> Option<&GivenOption> {
        let want = Given::parse(wanted, Source::With).ok()?;
        let GivenOption { name, value, .. } = want.options.first()?;
        self.options.iter().find(|o| {
            o.name == *name
                && match (name.as_str(), value.as_deref(), o.value.as_deref()) {
                    (_, None, _) => true,
                    ("--ghost-limit", Some(w), Some(g)) => size_bytes(g)
                        .zip(size_bytes(w))
                        .is_some_and(|(g, w)| g >= w),
                    (_, Some(w), Some(g)) => w == g,
                    (_, Some(_), None) => false,
                }
        })
    }

    /// Turns a `needs` into `ok` when one of its options is given, naming where it came from.
    pub fn apply(&self, mut j: Judgement) -> Judgement {
        if j.verdict == Verdict::Needs {
            let given = j
                .options
                .iter()
                .find_map(|o| self.satisfying(o).map(|g| (o.clone(), g.source.clone())));
            if let Some((opt, source)) = given {
                j.reason = format!("{} (passes with {opt}, from {source})", j.reason);
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
        let g = Given::parse(
            "--tcp-established --ghost-limit 2M --external=unix[5]",
            Source::With,
        )
        .unwrap();
        assert_eq!(g.options.len(), 3);
        assert_eq!(g.options[1].to_string(), "--ghost-limit 2M");
        assert!(Given::parse("tcp-established", Source::With).is_err());
    }

    #[test]
    fn given_option_turns_needs_into_ok() {
        let g = Given::parse("--tcp-close", Source::With).unwrap();
        assert_eq!(
            g.apply(needs(&["--tcp-established", "--tcp-close"]))
                .verdict,
            Verdict::Ok
        );
        assert_eq!(g.apply(needs(&["--file-locks"])).verdict, Verdict::Needs);
    }

    #[test]
    fn values_must_match_and_sizes_compare() {
        let g = Given::parse("--ghost-limit 1G --external unix[42]", Source::With).unwrap();
        assert_eq!(g.apply(needs(&["--ghost-limit 2M"])).verdict, Verdict::Ok);
        assert_eq!(
            g.apply(needs(&["--external unix[42]"])).verdict,
            Verdict::Ok
        );
        assert_eq!(
            g.apply(needs(&["--external unix[43]"])).verdict,
            Verdict::Needs
        );
        let small = Given::parse("--ghost-limit 1M", Source::With).unwrap();
        assert_eq!(
            small.apply(needs(&["--ghost-limit 2M"])).verdict,
            Verdict::Needs
        );
    }

    #[test]
    fn sources_are_named_and_no_prefix_withdraws() {
        let file = Source::File {
            path: "/etc/criu/default.conf".into(),
            line: 3,
        };
        let mut g = Given::default();
        g.push("file-locks", None, file.clone());
        g.push("tcp-established", None, file);
        g.push("no-tcp-established", None, Source::With);
        let ok = g.apply(needs(&["--file-locks"]));
        assert_eq!(ok.verdict, Verdict::Ok);
        assert!(
            ok.reason.contains("from /etc/criu/default.conf:3"),
            "{}",
            ok.reason
        );
        assert_eq!(
            g.apply(needs(&["--tcp-established"])).verdict,
            Verdict::Needs
        );
    }
}
