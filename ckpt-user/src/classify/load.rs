//! Finding, parsing and checking profiles: built-in ones by name, or a user's TOML file.

use std::path::Path;

use super::names;
use super::profile::{Cond, NumOrRange, OneOrMany, Profile};
use crate::input::{self, ReadError};
use crate::report::printable;
use crate::resolve::{Catalogue, CatalogueError};

/// Profiles shipped in the binary, newest first (the default when no CRIU is found).
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("criu-4", include_str!("profiles/criu-4.toml")),
    ("criu-3.17", include_str!("profiles/criu-3.17.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {0:?} is neither a built-in profile ({1}) nor a readable file: {2}")]
    NotFound(String, String, std::io::Error),
    #[error("profile {0}: {1}")]
    Unreadable(String, String),
    #[error("profile {source_name}: line {line}, column {column}: {message}")]
    Syntax {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("profile {source_name}: rule {rule}: {message}")]
    Invalid {
        source_name: String,
        rule: String,
        message: String,
    },
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Parses and checks profile text. Names inside conditions (families, states, ranges, file
/// types) are checked here so a typo fails at load, not silently at match time.
pub fn parse_profile(text: &str, source_name: &str) -> Result<Profile, ProfileError> {
    let mut profile: Profile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        ProfileError::Syntax {
            source_name: source_name.into(),
            line,
            column,
            message: printable(&e.message().replace('\n', " ")),
        }
    })?;
    // Ids and names come from the file: escaped, an error stays one line.
    for rule in &profile.rules {
        for cond in &rule.when {
            check_cond(cond).map_err(|message| ProfileError::Invalid {
                source_name: source_name.into(),
                rule: printable(&rule.id),
                message: printable(&message),
            })?;
        }
        if rule.verdict == super::Verdict::Needs && rule.options.is_empty() {
            return Err(ProfileError::Invalid {
                source_name: source_name.into(),
                rule: printable(&rule.id),
                message: "verdict `needs` without `options`".into(),
            });
        }
    }
    Catalogue::default().extend(profile.ops.clone(), source_name)?;
    if let Some(parent) = profile.profile.extends.clone() {
        let (_, parent_text) = BUILTIN_PROFILES
            .iter()
            .find(|(n, _)| *n == parent)
            .ok_or_else(|| ProfileError::Invalid {
                source_name: source_name.into(),
                rule: "[profile]".into(),
                message: format!("extends unknown built-in profile `{}`", printable(&parent)),
            })?;
        profile = inherit(parse_profile(parent_text, &parent)?, profile);
    }
    Ok(profile)
}

/// `child`'s rules replace the parent's rules of the same id in place; its other rules go first.
fn inherit(parent: Profile, child: Profile) -> Profile {
    fn merge<R: Clone>(parent: Vec<R>, child: Vec<R>, id: impl Fn(&R) -> &str) -> Vec<R> {
        let (replacing, new): (Vec<R>, Vec<R>) = child
            .into_iter()
            .partition(|c| parent.iter().any(|p| id(p) == id(c)));
        let replaced = parent.into_iter().map(|p| {
            replacing
                .iter()
                .find(|c| id(c) == id(&p))
                .cloned()
                .unwrap_or(p)
        });
        new.into_iter().chain(replaced).collect()
    }
    Profile {
        rules: merge(parent.rules, child.rules, |r| r.id.as_str()),
        task_rules: merge(parent.task_rules, child.task_rules, |r| r.id.as_str()),
        kernel_rules: merge(parent.kernel_rules, child.kernel_rules, |r| r.id.as_str()),
        ops: parent.ops.into_iter().chain(child.ops).collect(),
        profile: child.profile,
    }
}

fn check_names(
    list: &Option<OneOrMany<String>>,
    what: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<(), String> {
    match list.as_ref().and_then(|l| l.iter().find(|n| !valid(n))) {
        Some(bad) => Err(format!("unknown {what} `{bad}`")),
        None => Ok(()),
    }
}

fn check_ranges(list: &Option<OneOrMany<NumOrRange>>, what: &str) -> Result<(), String> {
    for r in list.iter().flat_map(|l| l.iter()) {
        if let NumOrRange::Range(s) = r {
            names::parse_range(s)
                .ok_or_else(|| format!("bad {what} range `{s}` (want \"lo-hi\")"))?;
        }
    }
    Ok(())
}

fn check_cond(c: &Cond) -> Result<(), String> {
    const FILE_TYPES: [&str; 8] = ["reg", "dir", "chr", "blk", "fifo", "sock", "lnk", "none"];
    check_names(&c.family, "socket family", |n| names::family(n).is_some())?;
    check_names(&c.sock_type, "socket type", |n| {
        names::sock_type(n).is_some()
    })?;
    check_names(&c.tcp_state, "TCP state", |n| names::tcp_state(n).is_some())?;
    check_names(&c.bpf_map_type, "BPF map type", |n| {
        names::bpf_map_type(n).is_some()
    })?;
    check_names(&c.file_type, "file type", |n| FILE_TYPES.contains(&n))?;
    check_names(&c.watches, "watches", |n| {
        ["reachable", "scan-path", "lost", "no-handle"].contains(&n)
    })?;
    check_names(&c.sock_filter, "socket filter", |n| {
        ["none", "classic", "ebpf"].contains(&n)
    })?;
    check_ranges(&c.major, "major")?;
    check_ranges(&c.minor, "minor")
}

/// A built-in profile by name, or a TOML file by path.
pub fn load_profile(name_or_path: &str) -> Result<Profile, ProfileError> {
    if let Some((name, text)) = BUILTIN_PROFILES.iter().find(|(n, _)| *n == name_or_path) {
        return parse_profile(text, name);
    }
    let shown = printable(name_or_path);
    let bytes = input::read_capped(Path::new(name_or_path), input::CONFIG_MAX).map_err(|e| {
        let builtin: Vec<&str> = BUILTIN_PROFILES.iter().map(|(n, _)| *n).collect();
        match e {
            ReadError::Io(io) => ProfileError::NotFound(shown.clone(), builtin.join(", "), io),
            too_big => ProfileError::Unreadable(shown.clone(), too_big.to_string()),
        }
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| ProfileError::Unreadable(shown.clone(), format!("not UTF-8 text ({e})")))?;
    parse_profile(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_or_binary_profile_is_a_one_line_error() {
        let err = load_profile("/dev/zero").unwrap_err().to_string();
        assert_eq!(err, "profile /dev/zero: larger than 16 MiB: refused");
        let file = tempfile::Builder::new()
            .prefix("ckpt-load-")
            .suffix(".toml")
            .tempfile()
            .unwrap();
        std::fs::write(file.path(), b"[profile]\nname = \"\xff\"\n").unwrap();
        let err = load_profile(file.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not UTF-8 text"), "{err}");
        let text = "[profile]\nname = \"x\"\ncheckpointer = \"criu\"\nversion = \"4\"\n\
                    [[rule]]\nid = \"a\\nb\"\nkind = \"k\"\nverdict = \"needs\"\n\
                    reason = \"r\"\napplies_to = \"fd\"\nwhen = [{ ops = \"x\" }]\n";
        let err = parse_profile(text, "t.toml").unwrap_err().to_string();
        assert_eq!(
            err,
            "profile t.toml: rule a\\nb: verdict `needs` without `options`"
        );
    }
}
