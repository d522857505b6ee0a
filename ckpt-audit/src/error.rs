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
    #[error("{}:{line}: {name}: part of the initialiser could not be read ({what})", path.display())]
    PartialRead {
        path: PathBuf,
        line: u32,
        name: String,
        what: String,
    },
    #[error("{}: cannot write the profile: {source}", path.display())]
    ProfileWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
