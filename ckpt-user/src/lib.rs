//! ckpt-watch: would this process survive a checkpoint right now?
//!
//! Stages follow the data: [`kernel`] facts and [`probe`] records → [`facts`] → [`resolve`]
//! → [`classify`] (with [`scope`]'s relations) → [`aggregate`] → [`report`]. A [`snapshot`]
//! holds everything a scan learned, so a saved one replays through the same stages.

pub mod aggregate;
pub mod cache;
pub mod checkpointer;
pub mod classify;
pub mod cli;
pub mod cmd;
pub mod facts;
pub mod input;
pub mod judge;
pub mod kernel;
pub mod probe;
pub mod report;
pub mod resolve;
pub mod scope;
pub mod snapshot;
