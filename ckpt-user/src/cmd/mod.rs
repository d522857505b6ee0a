//! The commands, each starting from a [`crate::judge::Judge`]: the host and `--pid` scan,
//! `preflight`, the daemon, and the hook CRIU runs before it dumps.

pub mod criu_hook;
pub mod daemon;
pub mod preflight;
pub mod scan;
