//! The checkpointer options that will really be used (`--with "..."`, an engine's defaults,
//! CRIU's configuration files), each with where it came from: a `needs` verdict whose option is
//! given becomes `ok`, and says which source gave it.

use std::fmt;

use serde::Serialize;

use crate::checkpointer::config_file::{self, Arg};
use crate::classify::{Judgement, Verdict};
use crate::report::printable;

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
    /// The command line of the CRIU (or runc) running the dump.
    Command { program: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::With => f.write_str("--with"),
            Self::Engine { engine } => write!(f, "engine {engine}"),
            Self::File { path, line } => write!(f, "{path}:{line}"),
            Self::Command { program } => write!(f, "{program}'s command line"),
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
    /// Options this engine cannot get to its CRIU at all, with why.
    unpassable: Vec<(String, String)>,
}

/// A size as CRIU's `parse_size` reads it: the leading number (`atol`), times 1024, 1024² or
/// 1024³ when a `K`, `M` or `G` appears anywhere in the text. `None` where CRIU would read 0 or
/// overflow: no limit is assumed to be met.
fn size_bytes(s: &str) -> Option<u64> {
    let mult: u64 = if s.contains('K') {
        1 << 10
    } else if s.contains('M') {
        1 << 20
    } else if s.contains('G') {
        1 << 30
    } else {
        1
    };
    let digits = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<u64>().ok()?.checked_mul(mult)
}

/// `--name[=value] [value]` pairs as written, unchecked: the remedies a profile proposes and
/// the engines' own defaults (which reach CRIU over RPC, not through its option parser).
fn split_options(text: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for token in text.split_whitespace() {
        if let Some(name) = token.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            out.push((name.to_string(), value));
        } else if let Some(last) = out.last_mut().filter(|o| o.1.is_none()) {
            last.1 = Some(token.to_string());
        }
    }
    out
}

impl Given {
    /// Parses `--with`'s command-line-like string, checked as CRIU's option parser checks its
    /// config files: known options (or unambiguous prefixes of one, as getopt_long takes
    /// them), values where an option takes one and nowhere else.
    pub fn parse(text: &str, source: Source) -> Result<Self, String> {
        let mut given = Given::default();
        let mut tokens = text.split_whitespace();
        while let Some(token) = tokens.next() {
            let Some(body) = token.strip_prefix("--") else {
                return Err(format!(
                    "`{}` is not an option (options start with --; give CRIU's long names)",
                    printable(token)
                ));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (name, arg) = config_file::lookup(name)?;
            let value = match (arg, inline) {
                (Arg::Flag | Arg::Plain, None) => None,
                (Arg::Flag | Arg::Plain, Some(_)) => {
                    return Err(format!("`--{name}` takes no value"));
                }
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => Some(
                    tokens
                        .next()
                        .ok_or_else(|| format!("`--{name}` needs a value"))?
                        .to_string(),
                ),
                (Arg::Optional, v) => v,
            };
            given.push(&name, value, source.clone());
        }
        Ok(given)
    }

    /// Options an engine always passes, as written (see [`split_options`]).
    pub fn unchecked(text: &str, source: Source) -> Self {
        let mut given = Given::default();
        for (name, value) in split_options(text) {
            given.push(&name, value, source.clone());
        }
        given
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
        let (name, value) = split_options(wanted).into_iter().next()?;
        let name = format!("--{name}");
        self.options.iter().find(|o| {
            o.name == name
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
            } else if let Some(why) = self.none_passable(&j.options) {
                // A remedy the engine cannot apply in any way is no remedy.
                j.reason = format!("{}; {why}", j.reason);
                j.verdict = Verdict::Blocks;
            }
        }
        j
    }

    /// Marks `option` (`--irmap-scan-path`) as one this engine cannot pass, and why.
    pub fn cannot_pass(&mut self, option: &str, why: String) {
        self.unpassable.push((option.to_string(), why));
    }

    /// Why none of `options` can be given, when that is so.
    fn none_passable(&self, options: &[String]) -> Option<String> {
        let whys: Vec<&str> = options
            .iter()
            .map(|o| {
                let name = o.split([' ', '=']).next().unwrap_or(o);
                self.unpassable
                    .iter()
                    .find(|(u, _)| u == name)
                    .map(|(_, why)| why.as_str())
            })
            .collect::<Option<_>>()?;
        (!whys.is_empty()).then(|| whys.join("; "))
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

    /// `--with` is checked as a config file line is, abbreviations included.
    #[test]
    fn with_is_checked_like_a_config_file() {
        let err = |t: &str| Given::parse(t, Source::With).unwrap_err();
        assert_eq!(
            err("--no-such-option"),
            "unknown CRIU option `no-such-option`"
        );
        assert_eq!(err("--file-locks=yes"), "`--file-locks` takes no value");
        assert_eq!(err("--ghost-limit"), "`--ghost-limit` needs a value");
        assert!(err("--tcp").contains("ambiguous"), "{}", err("--tcp"));
        assert!(err("--tcp-established -j").contains("`-j` is not an option"));
        let g = Given::parse("--tcp-est --ghost-lim 2M --ext-unix-sk", Source::With).unwrap();
        assert_eq!(
            g.options.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            ["--tcp-established", "--ghost-limit 2M", "--ext-unix-sk"]
        );
        assert_eq!(g.apply(needs(&["--tcp-established"])).verdict, Verdict::Ok);
        let g = Given::parse("--tcp-established --no-tcp-est", Source::With).unwrap();
        assert!(g.is_empty());
    }

    /// Sizes as CRIU's parse_size reads them; a value that is not one never panics.
    #[test]
    fn sizes_read_as_criu_reads_them() {
        assert_eq!(size_bytes("2M\u{3000}"), Some(2 << 20));
        assert_eq!(size_bytes("\u{3000}2M"), None);
        assert_eq!(size_bytes(" 10K"), Some(10 << 10));
        assert_eq!(size_bytes("3"), Some(3));
        assert_eq!(size_bytes("M"), None);
        assert_eq!(size_bytes("99999999999999999999G"), None);
        let g = Given::unchecked("--ghost-limit 2M\u{3000}", Source::With);
        assert_eq!(g.apply(needs(&["--ghost-limit 2M"])).verdict, Verdict::Ok);
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
    fn a_remedy_no_way_can_pass_blocks() {
        let mut g = Given::default();
        g.cannot_pass("--irmap-scan-path", "runc cannot pass it".into());
        let j = g.apply(needs(&["--irmap-scan-path /tmp"]));
        assert_eq!(j.verdict, Verdict::Blocks);
        assert!(j.reason.ends_with("; runc cannot pass it"), "{}", j.reason);
        // One alternative that can be passed keeps it a `needs`.
        let j = g.apply(needs(&["--irmap-scan-path /tmp", "--force-irmap"]));
        assert_eq!(j.verdict, Verdict::Needs);
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
