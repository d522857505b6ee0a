//! The container suite: real runc containers on an overlay rootfs, each checkpointed for real
//! with `runc checkpoint --leave-running` (the call Podman, Docker, containerd and CRI-O all
//! end in; CRIU 3.17 underneath), against `ckpt-watch preflight --engine runc --profile
//! criu-3.17`: passes ⇔ ok, passes only with option X ⇔ needs X, nothing helps ⇔ blocks.

use std::os::unix::net::UnixListener;
use std::time::Instant;

use serde_json::Value;

use super::super::records::Record;
use super::oracle::{items, proposals, reasons, string_list};
use super::resolve::ckpt_watch;
use super::runc::{self, Container, Spec, Started};

/// runc checkpoint's own flags for CRIU options.
const RUNC_FLAGS: &[&str] = &[
    "--tcp-established",
    "--file-locks",
    "--ext-unix-sk",
    "--shell-job",
];
/// Also tried when ckpt-watch's proposals do not help, after runc's flags: options of the
/// zoo oracle's catch-all that only runc.conf can carry, so that `fails` means nothing helps.
const CONFIG_ONLY: &[&str] = &["--link-remap", "--skip-in-flight", "--ghost-limit 1G"];

/// Host files and directories bound into containers.
const DATA_FILE: &str = "/srv/zoo/ctr/data.txt";
const LOCK_DIR: &str = "/srv/zoo/ctr/lock";
const SOCKET_DIR: &str = "/srv/zoo/ctr/sock";
/// A host process (the runner) listens here; the container connects through its bind mount.
const HOST_SOCKET: &str = "/srv/zoo/ctr/sock/host.sock";

/// The container's process.
#[derive(Clone, Copy)]
enum Process {
    /// `sh -c SCRIPT`; the script says READY.
    Shell(&'static str),
    /// `fdzoo --no-janitor --dir DIR CASE`.
    Zoo {
        case: &'static str,
        dir: &'static str,
    },
    /// fdctl, driven by the scenario's commands.
    Fdctl,
}

impl Process {
    fn args(self) -> Vec<String> {
        let words: Vec<&str> = match self {
            Process::Shell(script) => vec!["/bin/sh", "-c", script],
            Process::Zoo { case, dir } => vec!["/bin/fdzoo", "--no-janitor", "--dir", dir, case],
            Process::Fdctl => vec!["/bin/fdctl"],
        };
        words.into_iter().map(String::from).collect()
    }
}

struct Scenario {
    name: &'static str,
    process: Process,
    terminal: bool,
    host_namespaces: &'static [&'static str],
    binds: &'static [(&'static str, &'static str)],
    devices: &'static [(&'static str, u32, u32)],
    /// fdctl commands, sent once it is ready.
    commands: &'static [&'static str],
    /// A process `runc exec -d` starts beside the init.
    exec: &'static [&'static str],
    /// The runner listens on HOST_SOCKET and accepts the container's connection.
    host_peer: bool,
}

const fn scenario(name: &'static str, process: Process) -> Scenario {
    Scenario {
        name,
        process,
        terminal: false,
        host_namespaces: &[],
        binds: &[],
        devices: &[],
        commands: &[],
        exec: &[],
        host_peer: false,
    }
}

/// An fdzoo case whose files live in /zoo, a directory of the image: on the overlay.
const fn zoo(name: &'static str, case: &'static str) -> Scenario {
    scenario(name, Process::Zoo { case, dir: "/zoo" })
}

impl Scenario {
    const fn host(mut self, namespaces: &'static [&'static str]) -> Self {
        self.host_namespaces = namespaces;
        self
    }

    const fn bind(mut self, binds: &'static [(&'static str, &'static str)]) -> Self {
        self.binds = binds;
        self
    }

    const fn device(mut self, devices: &'static [(&'static str, u32, u32)]) -> Self {
        self.devices = devices;
        self
    }
}

const SLEEP: Process = Process::Shell("echo READY; exec sleep 1000000");

static SCENARIOS: &[Scenario] = &[
    scenario("plain", SLEEP),
    scenario(
        "shell-children",
        Process::Shell("sleep 1000000 & sleep 1000000 & echo READY; wait"),
    ),
    Scenario {
        terminal: true,
        ..scenario("terminal", SLEEP)
    },
    Scenario {
        exec: &["/bin/sleep", "1000000"],
        ..scenario("exec-beside-init", SLEEP)
    },
    scenario("host-network", SLEEP).host(&["network"]),
    scenario("host-pid", SLEEP).host(&["pid"]),
    scenario("host-ipc", SLEEP).host(&["ipc"]),
    scenario(
        "bind-file-open",
        Process::Shell("exec 3</data.txt; echo READY; exec sleep 1000000"),
    )
    .bind(&[(DATA_FILE, "/data.txt")]),
    scenario(
        "flock-bind",
        Process::Zoo {
            case: "flock_ex",
            dir: "/lock",
        },
    )
    .bind(&[(LOCK_DIR, "/lock")]),
    Scenario {
        commands: &["unix /sock/host.sock"],
        host_peer: true,
        ..scenario("unix-host-peer", Process::Fdctl).bind(&[(SOCKET_DIR, "/sock")])
    },
    zoo("deleted-small", "reg_deleted_small"),
    zoo("deleted-big", "reg_deleted_big"),
    zoo("memfd", "memfd"),
    zoo("eventfd", "eventfd"),
    zoo("epoll", "epoll_eventfd"),
    zoo("timerfd", "timerfd_armed"),
    zoo("signalfd", "signalfd"),
    zoo("inotify-overlay", "inotify_watch"),
    zoo("tun", "dev_net_tun").device(&[("/dev/net/tun", 10, 200)]),
    zoo("fuse", "dev_fuse").device(&[("/dev/fuse", 10, 229)]),
    zoo("io-uring", "io_uring"),
    zoo("perf-event", "perf_event"),
    zoo("shm-private-ipc", "sysv_shm_attached"),
    zoo("shm-host-ipc", "sysv_shm_attached").host(&["ipc"]),
    scenario(
        "fifty-processes",
        Process::Shell(
            "i=1; while [ $i -lt 50 ]; do sleep 1000000 & i=$((i+1)); done; echo READY; wait",
        ),
    ),
];

/// Runs every scenario, one container at a time, and hands each record to `emit` as it
/// comes (a guest cut short still reports what it did).
pub fn run(emit: &mut dyn FnMut(&Record) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = prepare() {
        return emit(&error("setup", e));
    }
    for s in SCENARIOS {
        let started = Instant::now();
        let record = check(s).unwrap_or_else(|e| error(s.name, e));
        eprintln!(
            "vm-guest: container {} in {:.1?}",
            s.name,
            started.elapsed()
        );
        emit(&record)?;
    }
    Ok(())
}

/// The image's lower layer and the host side of the bind mounts.
fn prepare() -> anyhow::Result<()> {
    runc::prepare_image()?;
    std::fs::write(DATA_FILE, "bound into a container\n")?;
    std::fs::create_dir_all(LOCK_DIR)?;
    std::fs::create_dir_all(SOCKET_DIR)?;
    Ok(())
}

fn check(s: &Scenario) -> anyhow::Result<Record> {
    let listener = match s.host_peer {
        true => {
            let _ = std::fs::remove_file(HOST_SOCKET);
            Some(UnixListener::bind(HOST_SOCKET)?)
        }
        false => None,
    };
    let spec = Spec {
        args: s.process.args(),
        terminal: s.terminal,
        host_namespaces: s.host_namespaces,
        binds: s.binds,
        devices: s.devices,
    };
    let mut container = match Container::start(s.name, &spec)? {
        Started::Ready(container) => container,
        Started::Unsupported(why) => {
            return Ok(Record::Skip {
                case: format!("container {}", s.name),
                why,
            });
        }
    };
    for command in s.commands {
        container.command(command)?;
    }
    // Held until the container is gone: the peer of the container's socket.
    let _peer = listener.as_ref().map(UnixListener::accept).transpose()?;
    if !s.exec.is_empty() {
        container.exec(s.exec)?;
    }
    let report = ckpt_watch(&[
        "preflight",
        "--container",
        &container.id,
        "--engine",
        "runc",
    ])?;
    judge(s.name, &container, &report["containers"][0])
}

/// Checkpoints the container plainly, then with what ckpt-watch proposes, then with
/// everything that might help, and compares with ckpt-watch's verdict on it.
fn judge(name: &str, container: &Container, report: &Value) -> anyhow::Result<Record> {
    let verdict = report["verdict"].as_str().unwrap_or("?").to_string();
    let options = string_list(&report["options"]);
    let mut judged: Vec<&Value> = report["environment"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    for process in report["processes"].as_array().into_iter().flatten() {
        judged.extend(items(process));
    }
    let proposed = proposals(&options, &judged);
    let (plain_ok, error) = container.checkpoint(&[], &[])?;
    let mut failed = Vec::new();
    let helping = match plain_ok {
        true => None,
        false => helping_options(container, &proposed, &mut failed)?,
    };
    let (runc, agree) = match (plain_ok, &helping) {
        (true, _) => ("dumps".to_string(), verdict == "ok"),
        (false, Some(options)) => (
            format!("needs {options}"),
            verdict == "needs" && proposed.contains(options),
        ),
        (false, None) => ("fails".to_string(), verdict == "blocks"),
    };
    Ok(Record::Container {
        scenario: name.into(),
        via_config: helping.as_deref().is_some_and(|o| !split(o).1.is_empty()),
        runc,
        error,
        verdict,
        options,
        reasons: reasons(&judged),
        failed,
        agree,
    })
}

/// The first option set that makes the checkpoint pass: ckpt-watch's proposals, then the
/// catch-all, together first so that a scenario nothing helps costs one checkpoint, then
/// each alone. Proposals and the catch-all that failed go to `failed`, with their error.
fn helping_options(
    container: &Container,
    proposed: &[String],
    failed: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    for options in proposed {
        if checkpoint(container, options, failed)? {
            return Ok(Some(options.clone()));
        }
    }
    let catch_all: Vec<&str> = RUNC_FLAGS.iter().chain(CONFIG_ONLY).copied().collect();
    if !checkpoint(container, &catch_all.join(" "), failed)? {
        return Ok(None);
    }
    for option in &catch_all {
        if checkpoint(container, option, &mut Vec::new())? {
            return Ok(Some(option.to_string()));
        }
    }
    Ok(Some(catch_all.join(" ")))
}

/// `runc checkpoint` with an option set given as runc would be given it; whether it passed.
fn checkpoint(
    container: &Container,
    options: &str,
    failed: &mut Vec<String>,
) -> anyhow::Result<bool> {
    let (flags, config) = split(options);
    let (passed, error) = container.checkpoint(&flags, &config)?;
    if !passed {
        failed.push(format!("with {options}: {error}"));
    }
    Ok(passed)
}

/// An option set as runc takes it: runc's own flags, and the rest as lines of runc.conf
/// (`--ghost-limit 1G` → `ghost-limit 1G`, `--external unix[123]` → `external unix[123]`).
fn split(options: &str) -> (Vec<String>, Vec<String>) {
    let mut groups: Vec<Vec<&str>> = Vec::new();
    for word in options.split_whitespace() {
        match groups.last_mut() {
            Some(group) if !word.starts_with("--") => group.push(word),
            _ => groups.push(vec![word]),
        }
    }
    let (flags, config): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|g| g.len() == 1 && RUNC_FLAGS.contains(&g[0]));
    (
        flags.into_iter().map(|g| g[0].to_string()).collect(),
        config
            .into_iter()
            .map(|g| g.join(" ").trim_start_matches("--").to_string())
            .collect(),
    )
}

fn error(scenario: &str, e: anyhow::Error) -> Record {
    Record::Error {
        case: format!("container {scenario}"),
        what: format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_runc_lacks_go_to_its_criu_config() {
        let (flags, config) = split("--tcp-established --ghost-limit 1G --external unix[42]");
        assert_eq!(flags, ["--tcp-established"]);
        assert_eq!(config, ["ghost-limit 1G", "external unix[42]"]);
        assert_eq!(split(""), (vec![], vec![]));
    }

    #[test]
    fn scenarios_have_unique_ids() {
        let mut ids: Vec<String> = SCENARIOS
            .iter()
            .map(|s| runc::container_id(s.name))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), SCENARIOS.len());
    }
}
