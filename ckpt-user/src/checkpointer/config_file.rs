//! CRIU's configuration files (`criu/config.c`): one option per line without the leading `--`
//! (`tcp-established`, `ghost-limit 100M`, `manage-cgroups=full`), `#` starts a comment, quotes
//! group words, and a boolean also takes a `no-` prefix. A line CRIU would reject is an error
//! naming the file and line, so a typo is found before the checkpoint, not during it.

use std::path::Path;

use crate::input::{self, ReadError};
use crate::report::printable;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read CRIU config file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: String,
        line: usize,
        message: String,
    },
}

/// How an option takes its value (getopt's `has_arg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A boolean (CRIU's `BOOL_OPT`): no value; `no-<name>` turns it off.
    Flag,
    /// A switch without a `no-` form.
    Plain,
    Required,
    /// Only as `name=value` (getopt's optional_argument).
    Optional,
}

/// CRIU's long options (criu/config.c `long_opts`): those of 3.17 and 4.2 together, each
/// checked against both binaries (`criu --NAME --version`, `--NAME=x`, `--no-NAME`).
const OPTIONS: &[(&str, Arg)] = &[
    ("action-script", Arg::Required),
    ("address", Arg::Required),
    ("all", Arg::Flag),
    ("allow-uprobes", Arg::Flag),
    ("auto-dedup", Arg::Flag),
    ("cgroup-dump-controller", Arg::Required),
    ("cgroup-props", Arg::Required),
    ("cgroup-props-file", Arg::Required),
    ("cgroup-root", Arg::Required),
    ("cgroup-yard", Arg::Required),
    ("close", Arg::Required),
    ("config", Arg::Required),
    ("cpu-cap", Arg::Optional),
    ("daemon", Arg::Flag),
    ("deprecated", Arg::Flag),
    ("display-stats", Arg::Flag),
    ("empty-ns", Arg::Required),
    ("enable-external-masters", Arg::Plain),
    ("enable-external-sharing", Arg::Plain),
    ("enable-fs", Arg::Required),
    ("evasive-devices", Arg::Flag),
    ("exec-cmd", Arg::Plain),
    ("experimental", Arg::Flag),
    ("ext-mount-map", Arg::Required),
    ("ext-unix-sk", Arg::Optional),
    ("external", Arg::Required),
    ("extra", Arg::Flag),
    ("feature", Arg::Required),
    ("file-locks", Arg::Flag),
    ("file-validation", Arg::Required),
    ("force-irmap", Arg::Flag),
    ("freeze-cgroup", Arg::Required),
    ("ghost-fiemap", Arg::Flag),
    ("ghost-limit", Arg::Required),
    ("help", Arg::Plain),
    ("images-dir", Arg::Required),
    ("inherit-fd", Arg::Required),
    ("irmap-scan-path", Arg::Required),
    ("join-ns", Arg::Required),
    ("lazy-pages", Arg::Plain),
    ("leave-running", Arg::Plain),
    ("leave-stopped", Arg::Plain),
    ("libdir", Arg::Required),
    ("link-remap", Arg::Flag),
    ("log-file", Arg::Required),
    ("log-pid", Arg::Flag),
    ("lsm-mount-context", Arg::Required),
    ("lsm-profile", Arg::Required),
    ("manage-cgroups", Arg::Optional),
    ("mntns-compat-mode", Arg::Flag),
    ("ms", Arg::Plain),
    ("network-lock", Arg::Required),
    ("no-default-config", Arg::Plain),
    ("page-server", Arg::Flag),
    ("pidfile", Arg::Required),
    ("port", Arg::Required),
    ("pre-dump-mode", Arg::Required),
    ("prev-images-dir", Arg::Required),
    ("ps-socket", Arg::Required),
    ("restore-detached", Arg::Flag),
    ("restore-sibling", Arg::Flag),
    ("root", Arg::Required),
    ("shell-job", Arg::Flag),
    ("skip-file-rwx-check", Arg::Flag),
    ("skip-in-flight", Arg::Flag),
    ("skip-mnt", Arg::Required),
    ("status-fd", Arg::Required),
    ("stream", Arg::Flag),
    ("tcp-close", Arg::Flag),
    ("tcp-established", Arg::Flag),
    ("timeout", Arg::Required),
    ("tls", Arg::Flag),
    ("tls-cacert", Arg::Required),
    ("tls-cacrl", Arg::Required),
    ("tls-cert", Arg::Required),
    ("tls-key", Arg::Required),
    ("tls-no-cn-verify", Arg::Plain),
    ("track-mem", Arg::Flag),
    ("tree", Arg::Required),
    ("unprivileged", Arg::Flag),
    ("verbosity", Arg::Optional),
    ("version", Arg::Plain),
    ("veth-pair", Arg::Required),
    ("weak-sysctls", Arg::Flag),
    ("work-dir", Arg::Required),
];

/// Resolves a long option as getopt_long does for CRIU, in its config files and on its command
/// line alike: an exact name, else a prefix that only one name starts with (`tcp-est`). Gives
/// the full name and how it takes a value; a `no-` form of a boolean is a switch.
pub fn lookup(name: &str) -> Result<(String, Arg), String> {
    let all = OPTIONS.iter().flat_map(|&(n, a)| {
        let negated = (a == Arg::Flag).then(|| (format!("no-{n}"), Arg::Plain));
        std::iter::once((n.to_string(), a)).chain(negated)
    });
    let mut matches: Vec<(String, Arg)> = Vec::new();
    for (full, arg) in all {
        if full == name {
            return Ok((full, arg));
        }
        if !name.is_empty() && full.starts_with(name) {
            matches.push((full, arg));
        }
    }
    match matches.as_slice() {
        [(full, arg)] => Ok((full.clone(), *arg)),
        [] => Err(format!("unknown CRIU option `{}`", printable(name))),
        many => Err(format!(
            "CRIU option `{}` is ambiguous: {}",
            printable(name),
            many.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// One option line: `name` without the leading `--`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigLine {
    pub line: usize,
    pub name: String,
    pub value: Option<String>,
}

/// Splits a line into words: `#` outside quotes ends it, quotes group and are removed. Words
/// end at spaces and tabs only, as CRIU's `%[^ \t\n]` reads them: other white space (U+3000)
/// is part of a value.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '#') => break,
            (None, ' ' | '\t') => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    words.extend(word);
    Ok(words)
}

fn option_line(words: &[String]) -> Result<(String, Option<String>), String> {
    let (first, rest) = words.split_first().expect("called with at least one word");
    if first.starts_with('-') {
        return Err(format!(
            "`{}`: write options without the leading dashes (`{}`)",
            printable(first),
            printable(first.trim_start_matches('-'))
        ));
    }
    let (name, inline) = match first.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (first.as_str(), None),
    };
    let (name, arg) = lookup(name)?;
    let name = name.as_str();
    let value = match (arg, inline, rest) {
        (Arg::Flag | Arg::Plain, None, []) => None,
        (Arg::Flag | Arg::Plain, _, _) => return Err(format!("`{name}` takes no value")),
        (Arg::Required, Some(v), []) => Some(v),
        (Arg::Required, None, [v]) => Some(v.clone()),
        (Arg::Required, None, []) => return Err(format!("`{name}` needs a value")),
        (Arg::Optional, v, []) => v,
        (Arg::Optional, None, [v]) => {
            return Err(format!(
                "`{name}` takes its optional value as `{name}={}`, not after a space",
                printable(v)
            ));
        }
        (_, _, extra) => {
            return Err(format!(
                "one option per line: unexpected `{}` after `{}`",
                printable(extra.last().map_or("", String::as_str)),
                printable(first)
            ));
        }
    };
    Ok((name.to_string(), value))
}

/// Parses a configuration file's text; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Vec<ConfigLine>, ConfigError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let malformed = |message: String| ConfigError::Malformed {
            path: path.to_string(),
            line: i + 1,
            message,
        };
        let words = words(raw).map_err(malformed)?;
        if words.is_empty() {
            continue;
        }
        let (name, value) = option_line(&words).map_err(malformed)?;
        lines.push(ConfigLine {
            line: i + 1,
            name,
            value,
        });
    }
    Ok(lines)
}

/// Reads and parses a file (at most [`input::CONFIG_MAX`] bytes); a file that does not exist
/// holds no options (CRIU skips it too).
pub fn read(path: &Path) -> Result<Option<Vec<ConfigLine>>, ConfigError> {
    let shown = printable(&path.display().to_string());
    match input::read_capped(path, input::CONFIG_MAX) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes), &shown).map(Some),
        Err(e) if e.not_found() => Ok(None),
        Err(e) => Err(ConfigError::Io {
            path: shown,
            source: match e {
                ReadError::Io(io) => io,
                too_big => std::io::Error::other(too_big.to_string()),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, Option<String>)> {
        parse(text, "t.conf")
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect()
    }

    fn err(text: &str) -> String {
        parse(text, "t.conf").unwrap_err().to_string()
    }

    #[test]
    fn options_values_comments_and_quotes() {
        let text = "# CRIU defaults\n\ntcp-established\nghost-limit 100M  # big ghosts\n\
                    manage-cgroups=full\nlsm-profile \"apparmor:my profile\"\nno-link-remap\n";
        assert_eq!(
            ok(text),
            [
                ("tcp-established".into(), None),
                ("ghost-limit".into(), Some("100M".into())),
                ("manage-cgroups".into(), Some("full".into())),
                ("lsm-profile".into(), Some("apparmor:my profile".into())),
                ("no-link-remap".into(), None),
            ]
        );
        assert_eq!(parse("file-locks\n", "x").unwrap()[0].line, 1);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        assert_eq!(
            err("file-locks\n--tcp-established\n"),
            "t.conf:2: `--tcp-established`: write options without the leading dashes (`tcp-established`)"
        );
        assert_eq!(
            err("tcp-establised\n"),
            "t.conf:1: unknown CRIU option `tcp-establised`"
        );
        assert_eq!(
            err("\n\nghost-limit\n"),
            "t.conf:3: `ghost-limit` needs a value"
        );
        assert_eq!(
            err("file-locks yes\n"),
            "t.conf:1: `file-locks` takes no value"
        );
        assert!(err("manage-cgroups full\n").contains("`manage-cgroups=full`"));
        assert!(err("ghost-limit 1M 2M\n").contains("one option per line"));
        assert_eq!(err("lsm-profile \"x\n"), "t.conf:1: unterminated \" quote");
        assert!(err("no-ghost-limit\n").contains("unknown CRIU option"));
        assert!(err("leave-running\rx\n").contains("unknown CRIU option `leave-running\\rx`"));
    }

    /// getopt_long takes any unambiguous prefix, in config files as on the command line.
    #[test]
    fn abbreviations_as_getopt_long_reads_them() {
        assert_eq!(
            ok("tcp-est\nno-file-lo\nghost-lim 2M\n"),
            [
                ("tcp-established".into(), None),
                ("no-file-locks".into(), None),
                ("ghost-limit".into(), Some("2M".into())),
            ]
        );
        assert_eq!(
            err("tcp\n"),
            "t.conf:1: CRIU option `tcp` is ambiguous: tcp-close, tcp-established"
        );
        assert_eq!(lookup("tree").unwrap().0, "tree");
        assert!(lookup("").is_err());
    }

    /// A value holding non-ASCII white space (U+3000) stays one word, as CRIU reads it.
    #[test]
    fn unicode_white_space_is_part_of_a_value() {
        assert_eq!(
            ok("ghost-limit 2M\u{3000}\n"),
            [("ghost-limit".into(), Some("2M\u{3000}".into()))]
        );
    }

    #[test]
    fn an_endless_file_is_refused() {
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot read CRIU config file /dev/zero: larger than 16 MiB: refused"
        );
    }

    #[test]
    fn missing_file_is_no_options() {
        assert_eq!(
            read(Path::new("/nonexistent/criu/default.conf")).unwrap(),
            None
        );
    }
}
