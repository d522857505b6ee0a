//! ckpt-watch: would this process survive a checkpoint right now?
//!
//! Stages follow the data: [`kernel`] facts and [`probe`] records → [`facts`] → [`resolve`]
//! → [`classify`] → [`scope`] → [`report`].

pub mod kernel;
pub mod probe;
