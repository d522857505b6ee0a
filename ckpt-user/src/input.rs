//! Reading files whose path or contents someone else chooses (profiles, CRIU's config files,
//! snapshots): with a size cap, so `--profile /dev/zero` or a runaway file ends in a one-line
//! error instead of eating memory.

use std::io::Read;
use std::path::Path;

/// Profiles and CRIU config files: a real one is a few KiB.
pub const CONFIG_MAX: u64 = 16 << 20;
/// Snapshots: about 600 bytes of JSON per open file or mapping, so well over a million of them.
pub const SNAPSHOT_MAX: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("larger than {} MiB: refused", .0 >> 20)]
    TooBig(u64),
}

impl ReadError {
    pub fn not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The bytes of `path`, or `TooBig` past `max` (read at most `max + 1` bytes to know).
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooBig(max));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_cut_at_the_cap() {
        let err = read_capped(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), "larger than 1 MiB: refused");
        assert_eq!(read_capped(Path::new("/dev/null"), 1).unwrap(), b"");
        assert!(
            read_capped(Path::new("/nonexistent/x"), 1)
                .unwrap_err()
                .not_found()
        );
    }
}
