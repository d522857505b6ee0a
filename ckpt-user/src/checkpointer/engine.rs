//! The options a checkpoint will really run with: CRIU's configuration files, the engine's own
//! defaults, and `--with`, in the order CRIU applies them (later wins; `no-x` withdraws `x`).
//!
//! - CRIU's command line (`criu`, LXC, which execs it): `/etc/criu/default.conf`,
//!   `~/.criu/default.conf`, `$CRIU_CONFIG_FILE`, then the command line.
//! - runc and what drives it (Podman, CRI-O, Docker, containerd) talk RPC: the same three
//!   files, then the RPC options (which set shell-job, tcp-established, ext-unix-sk and
//!   file-locks whatever the files said), then runc's own file `/etc/criu/runc.conf`, which
//!   overrides them. `--with` stands for the engine's own flags.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpointer::config_file::{self, ConfigError};
use crate::checkpointer::given::{Given, Source};
use crate::checkpointer::runc_state::{self, RuncFile};
use crate::scope::container_id::Runtime;

/// Who runs CRIU. Every engine but LXC ends in `runc checkpoint`, which drives CRIU over RPC
/// (docs/engines.md has the sources for each fact below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `criu dump` by hand: no options beyond the config files.
    Criu,
    /// `runc checkpoint`.
    Runc,
    /// `podman container checkpoint` (through runc).
    Podman,
    /// `docker checkpoint create` (containerd's runc shim).
    Docker,
    /// containerd's CRI: the kubelet's checkpoint API.
    Containerd,
    /// CRI-O's CRI checkpoint.
    Crio,
    /// `lxc-checkpoint` (liblxc runs the CRIU command line; Incus and LXD do the same).
    Lxc,
}

/// The four booleans runc always sends over RPC, true or false: whatever CRIU's
/// default.conf says of them, the RPC value wins; only runc.conf, parsed after the RPC
/// options, can turn them on (libcontainer `Checkpoint`, criu/cr-service.c).
pub const RPC_BOOLEANS: [&str; 4] = ["shell-job", "tcp-established", "ext-unix-sk", "file-locks"];

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Criu => "criu",
            Self::Runc => "runc",
            Self::Podman => "podman",
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::Crio => "crio",
            Self::Lxc => "lxc",
        }
    }

    /// What the engine always passes. runc: `orphan-pts-master` (so `-t` containers dump
    /// without `--shell-job`), `manage-cgroups`, a freezer cgroup and external mounts for every
    /// bind mount, which no rule here depends on; CRI-O adds `--file-locks`; LXC's
    /// `exec_criu` passes its list on every dump.
    fn defaults(self) -> &'static [&'static str] {
        match self {
            Self::Criu => &[],
            Self::Runc | Self::Podman | Self::Docker | Self::Containerd => {
                &["--manage-cgroups", "--orphan-pts-master"]
            }
            Self::Crio => &["--manage-cgroups", "--orphan-pts-master", "--file-locks"],
            Self::Lxc => &[
                "--tcp-established",
                "--file-locks",
                "--link-remap",
                "--manage-cgroups=full",
                "--ext-mount-map auto",
                "--enable-external-sharing",
                "--enable-external-masters",
                "--enable-fs hugetlbfs",
                "--enable-fs tracefs",
                "--skip-in-flight",
                "--force-irmap",
            ],
        }
    }

    /// Whether CRIU is driven over RPC through runc (and so reads runc.conf last).
    pub fn through_runc(self) -> bool {
        !matches!(self, Self::Criu | Self::Lxc)
    }

    /// The engine's own command-line flags that reach CRIU.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Self::Runc => &RPC_BOOLEANS,
            Self::Podman => &["tcp-established", "file-locks"],
            // Docker passes only --leave-running; the CRI request has no options at all.
            Self::Docker | Self::Containerd | Self::Crio | Self::Lxc => &[],
            Self::Criu => &[],
        }
    }

    /// Whether `option` (`--irmap-scan-path`) reaches this engine's CRIU only through runc's
    /// config file: driven over RPC, with no flag of the engine's own for it.
    pub fn needs_config_file(self, option: &str) -> bool {
        let name = option.trim_start_matches('-');
        self.through_runc() && !self.flags().contains(&name)
    }

    /// Whether runc sends `option` over RPC whatever CRIU's default.conf says, so that only
    /// the file runc hands CRIU after its RPC options can turn it on.
    pub fn rpc_forces(self, option: &str) -> bool {
        self.through_runc() && RPC_BOOLEANS.contains(&option.trim_start_matches('-'))
    }

    /// How a user gets `option` (`--external unix[42]`) to this engine's CRIU: its own flag
    /// where it has one, else the config file that CRIU reads last for it (`runc`: the one
    /// runc hands CRIU for this container).
    pub fn how_to_pass(self, option: &str, runc: &RuncFile) -> String {
        let line = option.trim_start_matches('-');
        let name = line.split([' ', '=']).next().unwrap_or(line);
        if self.flags().contains(&name) {
            let command = match self {
                Self::Runc => "runc checkpoint",
                _ => "podman container checkpoint",
            };
            return format!("`{command} --{name}`");
        }
        // CRIU takes it over RPC only: its command line and config files reject the name.
        if name == "orphan-pts-master" {
            return "only runc passes it (it always does); CRIU's command line and config files do not take it".into();
        }
        match self {
            Self::Criu => {
                format!("`criu dump {option}`, or the line `{line}` in /etc/criu/default.conf")
            }
            Self::Lxc => format!(
                "the line `{line}` in /etc/criu/default.conf (lxc-checkpoint has no flag for it)"
            ),
            _ => match runc {
                RuncFile::Default => format!(
                    "the line `{line}` in {} ({} has no flag for it; runc gives CRIU that file last)",
                    runc_state::DEFAULT,
                    self.command()
                ),
                RuncFile::Annotated(path) => format!(
                    "the line `{line}` in {} ({} has no flag for it; the container's org.criu.config annotation makes runc give CRIU that file last)",
                    path.display(),
                    self.command()
                ),
                RuncFile::Disabled if self.rpc_forces(option) => format!(
                    "no way: {} has no flag for it, runc's RPC turns it off, and the container's empty org.criu.config annotation leaves CRIU no file to read after that",
                    self.command()
                ),
                RuncFile::Disabled => format!(
                    "the line `{line}` in /etc/criu/default.conf ({} has no flag for it and the container's empty org.criu.config annotation gives CRIU no file of runc's; default.conf applies to every dump on this host)",
                    self.command()
                ),
            },
        }
    }

    fn command(self) -> &'static str {
        match self {
            Self::Criu => "criu dump",
            Self::Runc => "runc checkpoint",
            Self::Podman => "podman container checkpoint",
            Self::Docker => "docker checkpoint create",
            Self::Containerd => "the CRI checkpoint",
            Self::Crio => "the CRI checkpoint",
            Self::Lxc => "lxc-checkpoint",
        }
    }

    /// The engine that checkpoints containers a runtime created. A bare Kubernetes id does not
    /// say whether containerd or CRI-O made it; both take no options, so either reads the same.
    pub fn for_runtime(runtime: Runtime) -> Self {
        match runtime {
            Runtime::Docker => Self::Docker,
            Runtime::Containerd | Runtime::Cri => Self::Containerd,
            Runtime::Crio => Self::Crio,
            Runtime::Podman => Self::Podman,
            Runtime::Lxc => Self::Lxc,
        }
    }
}

/// Where CRIU's configuration files are on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPaths {
    /// None under `--no-default-config`, as for `user`.
    pub global: Option<PathBuf>,
    pub user: Option<PathBuf>,
    pub env: Option<PathBuf>,
    /// `criu --config FILE`, read after `$CRIU_CONFIG_FILE`.
    pub command_line: Option<PathBuf>,
    /// The file runc hands CRIU after its RPC options.
    pub runc: RuncFile,
}

impl ConfigPaths {
    /// The standard places, with `$HOME` and `$CRIU_CONFIG_FILE` from the environment.
    pub fn from_env() -> Self {
        Self {
            global: Some("/etc/criu/default.conf".into()),
            user: std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".criu/default.conf")),
            env: std::env::var_os("CRIU_CONFIG_FILE").map(PathBuf::from),
            command_line: None,
            runc: RuncFile::Default,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--with: {0}")]
    With(String),
}

fn add_file(given: &mut Given, path: &Path) -> Result<(), ConfigError> {
    for l in config_file::read(path)?.unwrap_or_default() {
        let source = Source::File {
            path: path.display().to_string(),
            line: l.line,
        };
        given.push(&l.name, l.value, source);
    }
    Ok(())
}

/// The options in force for `engine`, each with its source. `command` is what a running dump's
/// command line gave: CRIU's own (read after its files) or runc's (sent over RPC, so read
/// before runc.conf).
pub fn options_in_force(
    engine: Engine,
    paths: &ConfigPaths,
    command: Option<&Given>,
    with: Option<&str>,
) -> Result<Given, OptionsError> {
    let mut given = Given::default();
    let files = [&paths.global, &paths.user, &paths.env, &paths.command_line];
    for path in files.into_iter().flatten() {
        add_file(&mut given, path)?;
    }
    let source = Source::Engine {
        engine: engine.as_str().into(),
    };
    if engine.through_runc() {
        for name in RPC_BOOLEANS {
            given.push(&format!("no-{name}"), None, source.clone());
        }
    }
    for option in engine.defaults() {
        given.merge(Given::unchecked(option, source.clone()));
    }
    if let Some(command) = command {
        given.merge(command.clone());
    }
    if let Some(runc) = paths.runc.path().filter(|_| engine.through_runc()) {
        add_file(&mut given, runc)?;
    }
    if let Some(text) = with {
        given.merge(Given::parse(text, Source::With).map_err(OptionsError::With)?);
    }
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Judgement, Verdict};

    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, ConfigPaths) {
        let tmp = tempfile::Builder::new()
            .prefix("ckpt-engine-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let paths = ConfigPaths {
            global: Some(dir.join("default.conf")),
            user: Some(dir.join("user.conf")),
            env: Some(dir.join("env.conf")),
            command_line: None,
            runc: RuncFile::Annotated(dir.join("runc.conf")),
        };
        (tmp, paths)
    }

    fn needs(option: &str) -> Judgement {
        Judgement {
            verdict: Verdict::Needs,
            kind: "k".into(),
            rule: "r".into(),
            reason: "why".into(),
            options: vec![option.into()],
        }
    }

    fn names(g: &Given) -> Vec<String> {
        g.options().iter().map(|o| o.to_string()).collect()
    }

    #[test]
    fn engines_turn_needs_into_ok() {
        let (_d, paths) = fixture(&[]);
        let crio = options_in_force(Engine::Crio, &paths, None, None).unwrap();
        assert_eq!(crio.apply(needs("--file-locks")).verdict, Verdict::Ok);
        assert_eq!(
            crio.apply(needs("--tcp-established")).verdict,
            Verdict::Needs
        );
        let lxc = options_in_force(Engine::Lxc, &paths, None, None).unwrap();
        for o in [
            "--tcp-established",
            "--file-locks",
            "--link-remap",
            "--skip-in-flight",
        ] {
            assert_eq!(lxc.apply(needs(o)).verdict, Verdict::Ok, "{o}");
        }
        let runc = options_in_force(Engine::Runc, &paths, None, None).unwrap();
        assert_eq!(runc.apply(needs("--file-locks")).verdict, Verdict::Needs);
        let docker = options_in_force(Engine::Docker, &paths, None, None).unwrap();
        assert_eq!(docker.apply(needs("--file-locks")).verdict, Verdict::Needs);
        assert!(
            options_in_force(Engine::Criu, &paths, None, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn files_in_crius_order_with_sources() {
        let (_d, paths) = fixture(&[
            ("default.conf", "tcp-established\n"),
            ("user.conf", "# mine\nghost-limit 10M\n"),
            ("env.conf", "no-tcp-established\nfile-locks\n"),
            ("runc.conf", "link-remap\n"),
        ]);
        let criu = options_in_force(Engine::Criu, &paths, None, Some("--shell-job")).unwrap();
        assert_eq!(
            names(&criu),
            ["--ghost-limit 10M", "--file-locks", "--shell-job"]
        );
        let sources: Vec<String> = criu
            .options()
            .iter()
            .map(|o| o.source.to_string())
            .collect();
        assert!(sources[0].ends_with("user.conf:2"), "{sources:?}");
        assert_eq!(sources[2], "--with");
        // runc.conf is read by runc's CRIU only, after the RPC options.
        let runc = options_in_force(Engine::Runc, &paths, None, None).unwrap();
        assert!(names(&runc).contains(&"--link-remap".to_string()));
        assert!(!names(&criu).contains(&"--link-remap".to_string()));
    }

    /// runc sends the four RPC booleans every time, so default.conf cannot turn them on for
    /// a runc-driven dump; runc.conf, read after the RPC options, can.
    #[test]
    fn rpc_booleans_beat_default_conf_but_not_runc_conf() {
        let (_d, paths) = fixture(&[("default.conf", "tcp-established\nlink-remap\n")]);
        let podman = options_in_force(Engine::Podman, &paths, None, None).unwrap();
        assert_eq!(
            podman.apply(needs("--tcp-established")).verdict,
            Verdict::Needs
        );
        assert_eq!(podman.apply(needs("--link-remap")).verdict, Verdict::Ok);
        let criu = options_in_force(Engine::Criu, &paths, None, None).unwrap();
        assert_eq!(criu.apply(needs("--tcp-established")).verdict, Verdict::Ok);
        let lxc = options_in_force(Engine::Lxc, &paths, None, None).unwrap();
        assert_eq!(lxc.apply(needs("--tcp-established")).verdict, Verdict::Ok);
        let (_d, paths) = fixture(&[("runc.conf", "tcp-established\n")]);
        let podman = options_in_force(Engine::Podman, &paths, None, None).unwrap();
        let ok = podman.apply(needs("--tcp-established"));
        assert_eq!(ok.verdict, Verdict::Ok);
        assert!(ok.reason.contains("runc.conf:1"), "{}", ok.reason);
    }

    /// The remedy names the engine's own flag where it has one, else the file and line.
    #[test]
    fn remedies_name_the_engines_flag_or_the_file_line() {
        let d = RuncFile::Default;
        assert_eq!(
            Engine::Podman.how_to_pass("--tcp-established", &d),
            "`podman container checkpoint --tcp-established`"
        );
        assert_eq!(
            Engine::Runc.how_to_pass("--ext-unix-sk", &d),
            "`runc checkpoint --ext-unix-sk`"
        );
        let docker = Engine::Docker.how_to_pass("--tcp-established", &d);
        assert!(
            docker.starts_with("the line `tcp-established` in /etc/criu/runc.conf"),
            "{docker}"
        );
        let ext = Engine::Podman.how_to_pass("--external unix[4242]", &d);
        assert!(
            ext.starts_with("the line `external unix[4242]` in /etc/criu/runc.conf"),
            "{ext}"
        );
        assert!(
            Engine::Lxc
                .how_to_pass("--shell-job", &d)
                .contains("/etc/criu/default.conf")
        );
        assert!(
            Engine::Criu
                .how_to_pass("--ghost-limit 2M", &d)
                .contains("ghost-limit 2M")
        );
    }

    /// `org.criu.config` moves runc's file, or removes it: then only options runc does not
    /// force over RPC can still come from default.conf.
    #[test]
    fn remedies_follow_the_containers_annotation() {
        let annotated = RuncFile::Annotated("/etc/special.conf".into());
        let line = Engine::Docker.how_to_pass("--ghost-limit 2M", &annotated);
        assert!(
            line.starts_with("the line `ghost-limit 2M` in /etc/special.conf"),
            "{line}"
        );
        let off = RuncFile::Disabled;
        let ghost = Engine::Podman.how_to_pass("--ghost-limit 2M", &off);
        assert!(ghost.contains("/etc/criu/default.conf"), "{ghost}");
        let forced = Engine::Docker.how_to_pass("--tcp-established", &off);
        assert!(forced.starts_with("no way"), "{forced}");
        assert!(Engine::Docker.rpc_forces("--ext-unix-sk"));
        assert!(!Engine::Docker.rpc_forces("--ghost-limit"));
        assert!(!Engine::Lxc.rpc_forces("--tcp-established"));
    }

    /// No file after the RPC options: a runc.conf line no longer reaches CRIU.
    #[test]
    fn disabled_runc_file_is_not_read() {
        let (_d, mut paths) = fixture(&[("runc.conf", "tcp-established\n")]);
        paths.runc = RuncFile::Disabled;
        let podman = options_in_force(Engine::Podman, &paths, None, None).unwrap();
        let needs = podman.apply(needs("--tcp-established"));
        assert_eq!(needs.verdict, Verdict::Needs);
    }

    #[test]
    fn runc_conf_overrides_rpc_options() {
        let (_d, paths) = fixture(&[("runc.conf", "no-file-locks\n")]);
        let crio = options_in_force(Engine::Crio, &paths, None, None).unwrap();
        assert_eq!(crio.apply(needs("--file-locks")).verdict, Verdict::Needs);
    }

    #[test]
    fn malformed_file_is_an_error_with_its_line() {
        let (_d, paths) = fixture(&[("env.conf", "file-locks\ntcp-establishd\n")]);
        let err = options_in_force(Engine::Criu, &paths, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("env.conf:2: unknown CRIU option `tcp-establishd`"),
            "{err}"
        );
    }

    #[test]
    fn runtimes_map_to_their_checkpointing_engine() {
        assert_eq!(Engine::for_runtime(Runtime::Docker), Engine::Docker);
        assert_eq!(Engine::for_runtime(Runtime::Cri), Engine::Containerd);
        assert_eq!(Engine::for_runtime(Runtime::Crio), Engine::Crio);
        assert_eq!(Engine::for_runtime(Runtime::Podman), Engine::Podman);
        assert_eq!(Engine::for_runtime(Runtime::Lxc), Engine::Lxc);
    }
}
