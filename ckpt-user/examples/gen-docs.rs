//! `gen-docs OUTDIR`: the man pages (`OUTDIR/man/ckpt-watch.1` and one `ckpt-watch-<sub>.1` per
//! subcommand) and the bash, zsh and fish completions (`OUTDIR/completions/`) of `ckpt-watch`,
//! made from the same clap definitions as its `--help`. `cargo xtask package` runs it; an
//! example rather than a subcommand, so that the binary's `--help` stays about checkpoints.

use std::path::PathBuf;

use ckpt_user::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUTDIR");
        std::process::exit(2);
    };
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command();
    let version = cmd.get_version().unwrap_or_default().to_string();
    // Every subcommand that --help lists gets its own page, named `ckpt-watch-<sub>`.
    fn pages(cmd: clap::Command, dir: &std::path::Path, source: &str) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            pages(sub, dir, source)?;
        }
        clap_mangen::Man::new(cmd)
            .source(source.to_string())
            .manual("ckpt-watch manual")
            .generate_to(dir)?;
        Ok(())
    }
    let mut built = cmd.clone().disable_help_subcommand(true);
    built.build();
    pages(built, &man, &format!("ckpt-watch {version}"))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "ckpt-watch", &completions)?;
    }
    Ok(())
}
