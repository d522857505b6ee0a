//! A minimal writer for the kernel's initramfs format (cpio "newc", uncompressed).
//!
//! Written here rather than by piping to `cpio`: the archive is assembled from files scattered
//! over the host (binaries, their libraries, decompressed modules) under paths that differ from
//! where they live, which `cpio` cannot rename.

use std::collections::BTreeSet;
use std::path::Path;

/// An archive being built in memory (tens of MiB at most).
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    /// Directories already written, so parents are created once and before their children.
    dirs: BTreeSet<String>,
    next_ino: u32,
}

impl Archive {
    /// Adds a regular file at `path` (absolute inside the guest).
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.parents(path);
        self.entry(path, 0o100000 | mode, data);
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str) {
        self.parents(path);
        let name = path.trim_start_matches('/');
        if !name.is_empty() && self.dirs.insert(name.to_string()) {
            self.entry(path, 0o040755, &[]);
        }
    }

    /// Ends the archive. The kernel accepts further archives appended after this one, which
    /// is why every entry (the trailer included) ends on a 4-byte boundary.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }

    fn parents(&mut self, path: &str) {
        if let Some(parent) = Path::new(path).parent().and_then(Path::to_str)
            && parent != "/"
            && !self.dirs.contains(parent.trim_start_matches('/'))
        {
            self.dir(parent);
        }
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) {
        let name = path.trim_start_matches('/');
        self.next_ino += 1;
        let fields = [
            self.next_ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_parents_come_first() {
        let mut a = Archive::default();
        a.file("/a/b/c", 0o644, b"xyz");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        let (a_dir, b_dir, c) = (text.find("a\0"), text.find("a/b\0"), text.find("a/b/c\0"));
        assert!(a_dir < b_dir && b_dir < c, "{text}");
        assert!(text.contains("TRAILER!!!"));
    }
}
