//! What the checkpointer will do and can do: the options in force and where each comes from
//! (CRIU's config files, the engine, `--with`), and its environment (rights, kernel, `criu check`).

pub mod config_file;
pub mod criu;
pub mod engine;
pub mod env;
pub mod given;
pub mod runc_state;
pub mod running;
