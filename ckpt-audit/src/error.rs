//! What can go wrong with the input: each is reported and the audit goes on with the rest.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: no such file or directory", path.display())]
    NoSuchPath { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a C source or header (only .c and .h files are audited); skipped", path.display())]
    NotC { path: PathBuf },
    #[error("{}: binary data, not C; skipped", path.display())]
    Binary { path: PathBuf },
    #[error("{}: walking the directory failed: {message}", path.display())]
    Walk { path: PathBuf, message: String },
    #[error("{}: the C parser gave up on this file; skipped", path.display())]
    Unparsable { path: PathBuf },
    #[error("{}:{line}: {name}: part of its initialiser, or of the code filling it, could not be read ({what})", path.display())]
    PartialRead {
        path: PathBuf,
        line: u32,
        name: String,
        what: String,
    },
    #[error("{}: brackets nest deeper than {limit} levels, as no C source does; skipped", path.display())]
    TooDeep { path: PathBuf, limit: usize },
    #[error("{}:{line}: byte {byte:#04x} outside comments and literals is not C; definitions around it may be misread", path.display())]
    StrayByte { path: PathBuf, line: u32, byte: u8 },
    #[error("{}: cannot write the profile: {source}", path.display())]
    ProfileWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AuditError {
    /// Whether an input (a path, a file) went unaudited: the run is then a partial failure,
    /// not a clean result. The others are warnings about definitions that are reported.
    pub fn skips_input(&self) -> bool {
        !matches!(self, Self::PartialRead { .. } | Self::StrayByte { .. })
    }
}
