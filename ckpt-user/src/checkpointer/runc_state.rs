//! The CRIU config file runc hands CRIU when it checkpoints one container. runc's
//! `handleCriuConfigurationFile` (runc `docs/checkpoint-restore.md`): without the OCI
//! annotation `org.criu.config`, `/etc/criu/runc.conf`; with it empty, no file at all; with a
//! path, that file. runc keeps the container's annotations as `key=value` labels in its state
//! file, `<runc root>/<id>/state.json`, whichever engine created the container.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::input;

/// runc's own file, used when a container carries no annotation.
pub const DEFAULT: &str = "/etc/criu/runc.conf";

const ANNOTATION: &str = "org.criu.config=";

/// State files are a few KiB; a bigger one is not runc's.
const STATE_MAX: u64 = 4 << 20;

/// The file runc gives CRIU after its RPC options, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuncFile {
    /// No annotation (or no runc state found): `/etc/criu/runc.conf`.
    Default,
    /// `org.criu.config` names this file.
    Annotated(PathBuf),
    /// `org.criu.config` is empty: runc gives CRIU no file of its own.
    Disabled,
}

impl RuncFile {
    /// The path CRIU reads, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Default => Some(Path::new(DEFAULT)),
            Self::Annotated(p) => Some(p),
            Self::Disabled => None,
        }
    }
}

#[derive(Deserialize)]
struct State {
    config: StateConfig,
}

#[derive(Deserialize)]
struct StateConfig {
    #[serde(default)]
    labels: Vec<String>,
}

/// Where runc keeps state for each engine: its default root (runc, Podman, CRI-O), Docker's
/// (`/run/docker/runtime-runc/<namespace>`) and containerd's shim (`/run/containerd/runc/<namespace>`).
fn state_files(run: &Path, id: &str) -> Vec<PathBuf> {
    let mut files = vec![run.join("runc").join(id).join("state.json")];
    for parent in ["docker/runtime-runc", "containerd/runc"] {
        let Ok(namespaces) = std::fs::read_dir(run.join(parent)) else {
            continue;
        };
        files.extend(
            namespaces
                .flatten()
                .map(|ns| ns.path().join(id).join("state.json")),
        );
    }
    files
}

/// The file runc will hand CRIU for container `id`, from its state under `run` (`/run`). A
/// container whose state cannot be found or read is taken to use the default file.
pub fn criu_config(run: &Path, id: &str) -> RuncFile {
    if !is_id(id) {
        return RuncFile::Default;
    }
    state_files(run, id)
        .iter()
        .find_map(|f| from_state_file(f))
        .unwrap_or(RuncFile::Default)
}

/// The file a running `runc [--root DIR] checkpoint [flags] ID` hands CRIU.
pub fn for_runc_command(argv: &[String]) -> RuncFile {
    let root = argv
        .iter()
        .position(|w| w == "--root")
        .and_then(|i| argv.get(i + 1))
        .map(PathBuf::from)
        .or_else(|| {
            argv.iter()
                .find_map(|w| w.strip_prefix("--root="))
                .map(PathBuf::from)
        });
    let Some(id) = argv.last().filter(|id| is_id(id)) else {
        return RuncFile::Default;
    };
    match root {
        Some(root) => from_state_file(&root.join(id).join("state.json")),
        None => return criu_config(Path::new("/run"), id),
    }
    .unwrap_or(RuncFile::Default)
}

/// Ids come from cgroup paths and command lines: nothing that could leave the state directory.
fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn from_state_file(file: &Path) -> Option<RuncFile> {
    let bytes = input::read_capped(file, STATE_MAX).ok()?;
    match serde_json::from_slice::<State>(&bytes) {
        Ok(state) => Some(from_labels(&state.config.labels)),
        Err(e) => {
            tracing::warn!(file = %file.display(), "runc state unreadable: {e}");
            None
        }
    }
}

fn from_labels(labels: &[String]) -> RuncFile {
    match labels.iter().find_map(|l| l.strip_prefix(ANNOTATION)) {
        None => RuncFile::Default,
        Some("") => RuncFile::Disabled,
        Some(path) => RuncFile::Annotated(path.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn annotation_decides_the_file() {
        assert_eq!(from_labels(&labels(&["bundle=/b"])), RuncFile::Default);
        assert_eq!(
            from_labels(&labels(&["bundle=/b", "org.criu.config="])),
            RuncFile::Disabled
        );
        assert_eq!(
            from_labels(&labels(&["org.criu.config=/etc/x.conf"])),
            RuncFile::Annotated("/etc/x.conf".into())
        );
        // A label that merely starts alike is another annotation.
        assert_eq!(
            from_labels(&labels(&["org.criu.configs=/x"])),
            RuncFile::Default
        );
    }

    #[test]
    fn state_is_found_under_each_engines_root() {
        let tmp = tempfile::Builder::new()
            .prefix("ckpt-runc-state-")
            .tempdir()
            .unwrap();
        let run = tmp.path();
        let id = "a".repeat(64);
        let write = |dir: PathBuf, label: &str| {
            std::fs::create_dir_all(&dir).unwrap();
            let state = format!(r#"{{"id":"x","config":{{"labels":["{label}"]}}}}"#);
            std::fs::write(dir.join("state.json"), state).unwrap();
        };
        write(
            run.join("containerd/runc/k8s.io").join(&id),
            "org.criu.config=",
        );
        assert_eq!(criu_config(run, &id), RuncFile::Disabled);
        write(run.join("runc").join(&id), "org.criu.config=/c.conf");
        assert_eq!(criu_config(run, &id), RuncFile::Annotated("/c.conf".into()));
        assert_eq!(criu_config(run, &"b".repeat(64)), RuncFile::Default);
        assert_eq!(criu_config(run, "../runc"), RuncFile::Default);
        let argv = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let root = run.join("runc").display().to_string();
        assert_eq!(
            for_runc_command(&argv(&[
                "runc",
                "--root",
                &root,
                "checkpoint",
                "--tcp-established",
                &id
            ])),
            RuncFile::Annotated("/c.conf".into())
        );
        std::fs::write(run.join("runc").join(&id).join("state.json"), "{").unwrap();
        assert_eq!(criu_config(run, &id), RuncFile::Disabled);
    }
}
