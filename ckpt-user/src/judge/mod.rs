//! One judging context for every command. The flags' second stage: which profile and why, the
//! CRIU that will dump, and the options in force for an engine with where each came from. The
//! scan, `preflight` and the daemon all start from a [`Judge`], so they cannot disagree about
//! the same processes.

use std::collections::HashMap;
use std::path::Path;

use ckpt_common::N_OPS_MEMBERS;

use crate::checkpointer::criu::Criu;
use crate::checkpointer::engine::{self, ConfigPaths, Engine, OptionsError};
use crate::checkpointer::given::Given;
use crate::checkpointer::runc_state::{self, RuncFile};
use crate::checkpointer::running::RunningDump;
use crate::classify::{self, Assume, Profile};
use crate::cli::JudgingArgs;
use crate::facts::FileFact;
use crate::kernel::kallsyms::Symbols;
use crate::resolve::{self, Catalogue};
use crate::scope::container_id::{ContainerName, Runtime};
use crate::snapshot::{self, OkKind, Snapshot};

/// The options one dump runs with, and how to add one.
pub struct InForce {
    pub engine: Engine,
    /// The file runc hands CRIU last for this container.
    pub runc: RuncFile,
    pub given: Given,
}

impl InForce {
    /// How to give `option` to this dump's CRIU.
    pub fn how_to_pass(&self, option: &str) -> String {
        self.engine.how_to_pass(option, &self.runc)
    }
}

pub struct Judge {
    pub profile: Profile,
    /// Why this profile: `--profile`, or the CRIU found.
    pub profile_source: String,
    /// The CRIU that will dump, when one is installed (or named with `--criu`).
    pub criu: Option<Criu>,
    /// `--engine`, which overrides the engine a container's layout implies.
    pub engine: Option<Engine>,
    with: Option<String>,
    paths: ConfigPaths,
    /// The options on the command line of a dump already running (the criu-hook).
    command: Option<Given>,
}

impl Judge {
    /// Validates everything a judgement depends on before anything is scanned: the profile
    /// parses, and CRIU's config files and `--with` parse for the default engine.
    pub fn new(args: &JudgingArgs) -> anyhow::Result<Self> {
        Self::with_criu(args, Criu::find(args.criu.as_deref()), "")
    }

    /// For a dump CRIU is running now: that CRIU (unless `--criu` names one), its config files
    /// and command line, its engine.
    pub fn for_running(
        args: &JudgingArgs,
        criu: Option<Criu>,
        dump: RunningDump,
    ) -> anyhow::Result<Self> {
        let criu = match &args.criu {
            Some(path) => Criu::find(Some(path)),
            None => criu.or_else(|| Criu::find(None)),
        };
        let mut judge = Self::with_criu(args, criu, "")?;
        judge.engine = Some(dump.engine);
        judge.paths = dump.paths;
        judge.command = Some(dump.given);
        judge.options(dump.engine)?;
        Ok(judge)
    }

    /// For a replay: the CRIU recorded in the snapshot stands for the one that will dump
    /// (unless `--criu` names one), never the CRIU of the host replaying it.
    pub fn for_replay(args: &JudgingArgs, recorded: Option<Criu>) -> anyhow::Result<Self> {
        match &args.criu {
            Some(_) => Self::new(args),
            None => Self::with_criu(args, recorded, " (as recorded in the snapshot)"),
        }
    }

    fn with_criu(args: &JudgingArgs, criu: Option<Criu>, note: &str) -> anyhow::Result<Self> {
        let (profile, why) = load_profile(args.profile.as_deref(), criu.as_ref())?;
        let note = if args.profile.is_some() { "" } else { note };
        let profile_source = format!("{why}{note}");
        let judge = Self {
            profile,
            profile_source,
            criu,
            engine: args.engine,
            with: args.with.clone(),
            paths: ConfigPaths::from_env(),
            command: None,
        };
        judge.options(judge.engine_for(None))?;
        Ok(judge)
    }

    /// `--engine`, else the engine of the runtime that made the container, else plain criu.
    pub fn engine_for(&self, runtime: Option<Runtime>) -> Engine {
        self.engine
            .or_else(|| runtime.map(Engine::for_runtime))
            .unwrap_or(Engine::Criu)
    }

    /// The options in force when `engine` runs CRIU, each with its source.
    pub fn options(&self, engine: Engine) -> Result<Given, OptionsError> {
        self.options_with(engine, &self.paths)
    }

    /// The dump of one workload: its container's engine, the CRIU config file runc hands CRIU
    /// for that container (the `org.criu.config` annotation), and the options then in force.
    pub fn in_force(&self, container: Option<&ContainerName>) -> Result<InForce, OptionsError> {
        let engine = self.engine_for(container.map(|c| c.runtime));
        let paths = self.paths_for(engine, container);
        let given = self.options_with(engine, &paths)?;
        Ok(InForce {
            engine,
            runc: paths.runc,
            given,
        })
    }

    /// The options of a container whose runc hands CRIU another file than runc.conf, or none
    /// (the `org.criu.config` annotation); None when the engine's options for any container
    /// apply to it.
    pub fn annotated(&self, container: &ContainerName) -> Option<Result<Given, OptionsError>> {
        let engine = self.engine_for(Some(container.runtime));
        let paths = self.paths_for(engine, Some(container));
        (paths.runc != self.paths.runc).then(|| self.options_with(engine, &paths))
    }

    fn paths_for(&self, engine: Engine, container: Option<&ContainerName>) -> ConfigPaths {
        let mut paths = self.paths.clone();
        // A running dump's runc file was read from its own runc (`Judge::for_running`).
        if let Some(c) = container.filter(|_| engine.through_runc() && self.command.is_none()) {
            paths.runc = runc_state::criu_config(Path::new("/run"), &c.id);
        }
        paths
    }

    fn options_with(&self, engine: Engine, paths: &ConfigPaths) -> Result<Given, OptionsError> {
        let mut given =
            engine::options_in_force(engine, paths, self.command.as_ref(), self.with.as_deref())?;
        let meta = &self.profile.profile;
        for option in &meta.rpc_config_broken {
            if engine.needs_config_file(option) {
                given.cannot_pass(
                    option,
                    format!(
                        "{} cannot reach CRIU {} through {}: runc has no flag for it and that CRIU does not take it from a config file over RPC",
                        option, meta.version, engine.as_str()
                    ),
                );
            }
        }
        if paths.runc == RuncFile::Disabled {
            for option in engine::RPC_BOOLEANS {
                if engine.needs_config_file(option) {
                    given.cannot_pass(
                        &format!("--{option}"),
                        format!(
                            "--{option} cannot reach CRIU through {}: it has no flag for it, runc turns it off over RPC, and the container's empty org.criu.config annotation gives CRIU no file to read after that",
                            engine.as_str()
                        ),
                    );
                }
            }
        }
        Ok(given)
    }

    /// Names every ops table of the snapshot, with the profile's own catalogue entries.
    pub fn resolve_ops(&self, snapshot: &Snapshot) -> anyhow::Result<resolve::OpsTables> {
        Ok(resolve::resolve(
            &snapshot.ops_members(),
            &snapshot.symbols(),
            &self.catalogue()?,
        ))
    }

    /// The ops tables known by their members: the built-in ones and the profile's own.
    fn catalogue(&self) -> Result<Catalogue, resolve::CatalogueError> {
        let mut catalogue = Catalogue::builtin();
        catalogue.extend(self.profile.ops.clone(), &self.profile.profile.name)?;
        Ok(catalogue)
    }

    /// Judges kinds of file while a host scan's kernel walks ([`snapshot::OkByKind`]).
    pub fn by_kind(&self) -> anyhow::Result<ByKind<'_>> {
        Ok(ByKind {
            profile: &self.profile,
            catalogue: self.catalogue()?,
        })
    }
}

/// The profile and its catalogue, judging a file by its kind alone.
pub struct ByKind<'a> {
    profile: &'a Profile,
    catalogue: Catalogue,
}

impl snapshot::OkByKind for ByKind<'_> {
    fn always_ok(
        &self,
        f: &FileFact,
        table: &HashMap<u64, [u64; N_OPS_MEMBERS]>,
        symbols: &Symbols,
    ) -> Option<OkKind> {
        let tables = resolve::resolve(table, symbols, &self.catalogue);
        let ops = tables.get(&f.f_op);
        // Whatever its state, else whatever it is when plain (the walk checks each file).
        [Assume::Nothing, Assume::Plain]
            .into_iter()
            .find_map(|assume| {
                let rdev_bound = classify::always_ok(self.profile, f, ops, assume)?;
                Some(OkKind {
                    rdev_bound,
                    only_plain: assume == Assume::Plain,
                })
            })
    }
}

/// The profile for this CRIU (`criu --version` → `Version: 3.17.1`), else the newest.
fn default_profile(criu: Option<&Criu>) -> (&'static str, String) {
    let newest = classify::BUILTIN_PROFILES[0].0;
    let Some(criu) = criu else {
        return (newest, "no criu on PATH: newest profile".into());
    };
    let path = criu.path.display();
    match criu.version.as_deref() {
        Some(v) if v.starts_with("3.") => ("criu-3.17", format!("{path} is CRIU {v}")),
        Some(v) => (newest, format!("{path} is CRIU {v}")),
        None => (newest, format!("{path} printed no version: newest profile")),
    }
}

/// The profile to judge by, and why it was chosen (reports say so): `--profile`, else the one
/// for `criu` (the CRIU that will dump, if one is installed).
fn load_profile(chosen: Option<&str>, criu: Option<&Criu>) -> anyhow::Result<(Profile, String)> {
    let (name, why) = match chosen {
        Some(p) => (p, format!("{p} chosen with --profile")),
        None => default_profile(criu),
    };
    tracing::info!(profile = name, "{why}");
    Ok((classify::load_profile(name)?, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn criu(version: Option<&str>) -> Criu {
        Criu {
            path: PathBuf::from("/usr/sbin/criu"),
            version: version.map(String::from),
        }
    }

    #[test]
    fn profile_follows_the_installed_criu() {
        assert_eq!(default_profile(Some(&criu(Some("3.17.1")))).0, "criu-3.17");
        assert_eq!(default_profile(Some(&criu(Some("4.2")))).0, "criu-4");
        let (name, why) = default_profile(None);
        assert_eq!(name, "criu-4");
        assert!(why.contains("no criu on PATH"));
        assert!(default_profile(Some(&criu(None))).1.contains("no version"));
    }

    #[test]
    fn judge_validates_and_picks_engines() {
        let args = JudgingArgs {
            profile: Some("criu-4".into()),
            with: Some("--tcp-established".into()),
            ..Default::default()
        };
        let judge = Judge::new(&args).unwrap();
        assert_eq!(judge.engine_for(None), Engine::Criu);
        assert_eq!(judge.engine_for(Some(Runtime::Podman)), Engine::Podman);
        let bad = JudgingArgs {
            with: Some("tcp-established".into()),
            ..args.clone()
        };
        assert!(Judge::new(&bad).is_err());
        let forced = JudgingArgs {
            engine: Some(Engine::Crio),
            ..args
        };
        let judge = Judge::new(&forced).unwrap();
        assert_eq!(judge.engine_for(Some(Runtime::Podman)), Engine::Crio);
    }
}
