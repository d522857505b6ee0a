//! The commands, each starting from a [`crate::judge::Judge`]: the host and `--pid` scan,
//! `preflight`, and the daemon.

pub mod daemon;
pub mod preflight;
pub mod scan;
