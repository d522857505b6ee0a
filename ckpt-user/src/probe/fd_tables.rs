//! Which processes use which fd table, from the daemon's table walk.

use std::collections::HashMap;

/// The fd tables (kernel addresses) a walk told, each under every process that uses it.
/// Processes on one table (`clone(CLONE_FILES)` without `CLONE_THREAD`) each hold every fd of
/// it: a table told under a second process is shared, one told under one only is not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FdTables {
    /// Per table, the first process told on it, and whether another was told on it too.
    told: HashMap<u64, (u32, bool)>,
}

impl FdTables {
    /// Process `tgid` uses table `files` (told once per process, or per thread of one whose
    /// leader has exited).
    pub(super) fn note(&mut self, tgid: u32, files: u64) {
        let (first, shared) = self.told.entry(files).or_insert((tgid, false));
        *shared |= *first != tgid;
    }

    /// The tables more than one process uses.
    pub fn shared(&self) -> impl Iterator<Item = u64> + '_ {
        self.told
            .iter()
            .filter(|(_, (_, shared))| *shared)
            .map(|(files, _)| *files)
    }

    /// Whether more than one process uses `files`.
    pub fn is_shared(&self, files: u64) -> bool {
        self.told.get(&files).is_some_and(|(_, shared)| *shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table is shared once a second process is told on it; a process told twice (its
    /// threads, its leader gone) shares nothing.
    #[test]
    fn a_table_told_under_two_processes_is_shared() {
        let mut tables = FdTables::default();
        tables.note(10, 0xa000);
        tables.note(10, 0xa000);
        tables.note(11, 0xb000);
        assert_eq!(tables.shared().count(), 0);
        assert!(!tables.is_shared(0xa000));
        tables.note(12, 0xa000);
        tables.note(13, 0xa000);
        assert_eq!(tables.shared().collect::<Vec<_>>(), [0xa000]);
        assert!(tables.is_shared(0xa000) && !tables.is_shared(0xb000));
        assert!(!tables.is_shared(0xc000));
    }
}
