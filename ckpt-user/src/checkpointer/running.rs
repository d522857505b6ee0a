//! What a running CRIU was given, read from outside: the options on its command line (or, for
//! a dump over RPC, on the command line of the runc that drives it) and the config files it
//! read, as criu/config.c reads them. The criu-hook judges a dump with exactly these.

use std::path::PathBuf;

use crate::checkpointer::config_file;
use crate::checkpointer::engine::{ConfigPaths, Engine};
use crate::checkpointer::given::{Given, Source};
use crate::checkpointer::runc_state;

/// CRIU's short options (criu/config.c `short_opts`, the same in 3.17 and 4.x): the letter,
/// its long name, and whether it takes a value (`v` and `x` only attached: `-v4`, `-x`).
const SHORT: &[(char, &str, Short)] = &[
    ('d', "restore-detached", Short::Flag),
    ('S', "restore-sibling", Short::Flag),
    ('s', "leave-stopped", Short::Flag),
    ('R', "leave-running", Short::Flag),
    ('t', "tree", Short::Value),
    ('h', "help", Short::Flag),
    ('D', "images-dir", Short::Value),
    ('o', "log-file", Short::Value),
    ('v', "verbosity", Short::Attached),
    ('x', "ext-unix-sk", Short::Attached),
    ('V', "version", Short::Flag),
    ('r', "root", Short::Value),
    ('j', "shell-job", Short::Flag),
    ('J', "join-ns", Short::Value),
    ('l', "file-locks", Short::Flag),
    ('W', "work-dir", Short::Value),
    ('L', "libdir", Short::Value),
    ('M', "ext-mount-map", Short::Value),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Short {
    Flag,
    Value,
    /// getopt's `::`: a value only when attached to the letter.
    Attached,
}

/// Options that say where things go and how loudly, not what is dumped: left out of the
/// options a verdict is judged with (and shown with).
const LOGISTICS: &[&str] = &[
    "tree",
    "images-dir",
    "work-dir",
    "log-file",
    "log-pid",
    "verbosity",
    "action-script",
    "pidfile",
    "display-stats",
    "prev-images-dir",
];

/// runc checkpoint's flags that reach CRIU as the options of the same name
/// (libcontainer's `criuOpts`); every other runc flag concerns runc alone.
const RUNC_FLAGS: [&str; 4] = ["tcp-established", "ext-unix-sk", "shell-job", "file-locks"];

/// A dump in progress as ckpt-watch can see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningDump {
    pub engine: Engine,
    /// The options given on CRIU's (or runc's) command line.
    pub given: Given,
    pub paths: ConfigPaths,
    /// Set when the options came over RPC from a client whose command line does not show
    /// them: a `needs` cannot be told from an option that client passed.
    pub unseen_client: Option<String>,
}

/// `/proc/PID/cmdline` as words. A CRIU serving RPC retitles itself with one string over its
/// arguments (`criu: dump --rpc -t 42 ...`): that one is split on spaces too.
pub fn cmdline(pid: u32) -> std::io::Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let mut words = Vec::new();
    for w in raw.split(|b| *b == 0).map(String::from_utf8_lossy) {
        if w.starts_with("criu: ") {
            words.extend(w.split_whitespace().map(String::from));
        } else if !w.is_empty() {
            words.push(w.into_owned());
        }
    }
    Ok(words)
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Whether CRIU's command line says it serves RPC (`criu swrk`, or the title it sets then).
pub fn is_rpc(criu_argv: &[String]) -> bool {
    criu_argv.iter().any(|w| w == "swrk" || w == "--rpc")
}

/// The dump `criu_argv` runs, with `client_argv` the command line of CRIU's parent (the RPC
/// client, when there is one), `driver` that of the client's parent (Podman, when it drives
/// runc) and `env` the config files CRIU's environment names.
pub fn running_dump(
    criu_argv: &[String],
    client_argv: &[String],
    driver: &[String],
    env: ConfigPaths,
) -> Result<RunningDump, String> {
    if is_rpc(criu_argv) {
        let client = client_argv.first().map(|w| basename(w)).unwrap_or("");
        if client == "runc" {
            // Podman passes its own flags on to runc's command line; it only changes how a
            // missing option is to be given.
            let engine = match driver.first().map(|w| basename(w)) {
                Some("podman") => Engine::Podman,
                _ => Engine::Runc,
            };
            let mut given = Given::default();
            let source = Source::Command {
                program: "runc".into(),
            };
            for flag in client_argv.iter().filter_map(|w| w.strip_prefix("--")) {
                if RUNC_FLAGS.contains(&flag) {
                    given.push(flag, None, source.clone());
                }
            }
            let paths = ConfigPaths {
                runc: runc_state::for_runc_command(client_argv),
                ..env
            };
            return Ok(RunningDump {
                engine,
                given,
                paths,
                unseen_client: None,
            });
        }
        return Ok(RunningDump {
            engine: Engine::Criu,
            given: Given::default(),
            paths: env,
            unseen_client: Some(if client.is_empty() {
                "an RPC client that has exited".into()
            } else {
                crate::report::printable(client)
            }),
        });
    }
    // The words after the CRIU binary (a loader such as ld.so may come first).
    let start = criu_argv
        .iter()
        .position(|w| basename(w).starts_with("criu"))
        .map_or(0, |i| i + 1);
    let (options, config, no_default) = command_line_options(&criu_argv[start..])?;
    let mut paths = env;
    if no_default {
        paths.global = None;
        paths.user = None;
    }
    paths.command_line = config.map(PathBuf::from);
    let mut given = Given::default();
    let source = Source::Command {
        program: "criu".into(),
    };
    for (name, value) in options {
        given.push(&name, value, source.clone());
    }
    Ok(RunningDump {
        engine: Engine::Criu,
        given,
        paths,
        unseen_client: None,
    })
}

/// A long option's name and its value.
type Named = (String, Option<String>);

/// The options of CRIU's own command line by long name, the `--config` file, and whether
/// `--no-default-config` was given. Non-options (the command, `dump`) are skipped.
fn command_line_options(words: &[String]) -> Result<(Vec<Named>, Option<String>, bool), String> {
    let mut out = Vec::new();
    let mut config = None;
    let mut no_default = false;
    let mut words = words.iter();
    while let Some(w) = words.next() {
        if let Some(body) = w.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (name, arg) = config_file::lookup(name)?;
            let value = match arg {
                config_file::Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => Some(
                        words
                            .next()
                            .cloned()
                            .ok_or(format!("--{name} has no value"))?,
                    ),
                },
                _ => inline,
            };
            match name.as_str() {
                "config" => config = value,
                "no-default-config" => no_default = true,
                n if LOGISTICS.contains(&n) => {}
                _ => out.push((name, value)),
            }
        } else if let Some(letters) = w.strip_prefix('-').filter(|l| !l.is_empty()) {
            for (i, c) in letters.char_indices() {
                let Some(&(_, long, kind)) = SHORT.iter().find(|(l, _, _)| *l == c) else {
                    return Err(format!("-{c} is not one of CRIU's options"));
                };
                let rest = &letters[i + c.len_utf8()..];
                let value = match kind {
                    Short::Flag => None,
                    Short::Attached => Some(rest.to_string()).filter(|r| !r.is_empty()),
                    Short::Value if rest.is_empty() => {
                        Some(words.next().cloned().ok_or(format!("-{c} has no value"))?)
                    }
                    Short::Value => Some(rest.to_string()),
                };
                if !LOGISTICS.contains(&long) {
                    out.push((long.to_string(), value));
                }
                if kind != Short::Flag {
                    break;
                }
            }
        }
    }
    Ok((out, config, no_default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpointer::runc_state::RuncFile;

    fn names(d: &RunningDump) -> String {
        d.given
            .options()
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn env() -> ConfigPaths {
        ConfigPaths {
            global: Some("/etc/criu/default.conf".into()),
            user: Some("/root/.criu/default.conf".into()),
            env: None,
            command_line: None,
            runc: RuncFile::Default,
        }
    }

    #[test]
    fn a_command_line_dump_is_read_as_criu_reads_it() {
        let d = running_dump(
            &words("/usr/sbin/criu dump -t 42 -D /tmp/d -o dump.log -v4 -j --action-script=/h --tcp-est --ghost-limit 9M -lx"),
            &words("bash"),
            &[],
            env(),
        )
        .unwrap();
        assert_eq!(d.engine, Engine::Criu);
        assert_eq!(
            names(&d),
            "--shell-job --tcp-established --ghost-limit 9M --file-locks --ext-unix-sk"
        );
        assert_eq!(d.paths.global, env().global);
        assert_eq!(d.unseen_client, None);
    }

    #[test]
    fn config_flags_pick_the_files() {
        let d = running_dump(
            &words("/lib64/ld-linux-x86-64.so.2 --library-path /x /opt/criu dump --no-default-config --config=/c.conf -t 1"),
            &[],
            &[],
            env(),
        )
        .unwrap();
        assert_eq!(names(&d), "");
        assert_eq!(d.paths.global, None);
        assert_eq!(d.paths.user, None);
        assert_eq!(d.paths.command_line, Some(PathBuf::from("/c.conf")));
    }

    #[test]
    fn rpc_dumps_take_runc_flags_or_say_they_cannot_see_them() {
        let criu = words("criu: dump --rpc -t 10743 .");
        let runc = words(
            "runc checkpoint --image-path /x --tcp-established --file-locks --leave-running c1",
        );
        let d = running_dump(&criu, &runc, &words("containerd-shim-runc-v2"), env()).unwrap();
        assert_eq!(d.engine, Engine::Runc);
        assert_eq!(names(&d), "--tcp-established --file-locks");
        // Driven by Podman: its flags, its way of passing what is missing.
        let podman = words("/usr/bin/podman container checkpoint --file-locks c1");
        let d = running_dump(&criu, &runc, &podman, env()).unwrap();
        assert_eq!(d.engine, Engine::Podman);
        assert_eq!(names(&d), "--tcp-established --file-locks");
        let d = running_dump(
            &words("criu swrk 3"),
            &words("/usr/bin/crun checkpoint c"),
            &podman,
            env(),
        )
        .unwrap();
        assert_eq!(d.engine, Engine::Criu);
        assert_eq!(d.unseen_client.as_deref(), Some("crun"));
    }

    #[test]
    fn unknown_options_are_errors() {
        for argv in ["criu dump -Z", "criu dump --frobnicate", "criu dump -t"] {
            assert!(
                running_dump(&words(argv), &[], &[], env()).is_err(),
                "{argv}"
            );
        }
    }
}
