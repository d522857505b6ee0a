//! Facts kept between runs: one file per fact in a directory only its owner may enter, each
//! valid for a key that names everything the fact depends on (kallsyms's index: the boot and
//! the modules; what a CRIU binary says: the binary, and for `criu check` the kernel and
//! CRIU's config files too). Nothing here is needed: a missing, foreign or damaged file is a
//! miss that costs the work it would have saved, and removing the directory is always safe.

use std::ffi::CString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::kernel::bytes::Bytes;

/// Where a root run keeps its facts (FHS: data an application can regenerate).
pub const DIR: &str = "/var/cache/ckpt-watch";

/// A directory of facts.
pub struct Cache {
    dir: PathBuf,
}

/// A fact as loaded: the file's bytes, mapped, and where its payload starts in them.
pub struct Entry {
    pub bytes: Bytes,
    pub at: usize,
}

impl Entry {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.at..]
    }
}

impl Cache {
    pub fn system() -> Self {
        Self::at(Path::new(DIR))
    }

    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The fact `name`, when it was stored with `magic` and `key`: mapped, not read. Only
    /// this user can write the file (checked), and [`Cache::store`] replaces it by a rename,
    /// never in place, so the mapping never changes under its reader.
    pub fn load(&self, name: &str, magic: &[u8], key: &[u8]) -> Option<Entry> {
        if !private_dir(&self.dir) {
            return None;
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join(name))
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
            return None;
        }
        // SAFETY: a private, regular file that is only ever replaced whole (above).
        let bytes = Bytes::mapped(unsafe { memmap2::Mmap::map(&file) }.ok()?);
        let rest = bytes.strip_prefix(magic)?;
        // The key's and the payload's lengths: a copy cut short (a crash before the data
        // reached the disk) or grown is a miss, not a fact with a piece missing.
        let newline = memchr::memchr(b'\n', rest)?;
        let (key_len, payload_len) = std::str::from_utf8(&rest[..newline])
            .ok()?
            .split_once(' ')?;
        let (key_len, payload_len): (usize, usize) =
            (key_len.parse().ok()?, payload_len.parse().ok()?);
        let key_at = magic.len() + newline + 1;
        let at = key_at.checked_add(key_len)?;
        if at.checked_add(payload_len)? != bytes.len() || bytes[key_at..at] != *key {
            return None;
        }
        Some(Entry { bytes, at })
    }

    /// Replaces the fact `name` with `payload` for `key`, whole or not at all (a rename),
    /// creating the directory private.
    pub fn store(
        &self,
        name: &str,
        magic: &[u8],
        key: &[u8],
        payload: &[u8],
    ) -> std::io::Result<()> {
        let dir = &self.dir;
        match DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if !private_dir(dir) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} may be written by others", dir.display()),
            ));
        }
        // Written unnamed (O_TMPFILE) and linked in only once whole: a run that ends while
        // it writes (an early error, an empty preflight) leaves nothing behind.
        let mut file = OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)?;
        file.write_all(magic)?;
        file.write_all(format!("{} {}\n", key.len(), payload.len()).as_bytes())?;
        file.write_all(key)?;
        file.write_all(payload)?;
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let to = CString::new(tmp.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths.
        let linked = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if linked != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::fs::rename(&tmp, dir.join(name)).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// A file's identity in a key: device, inode, size, and modification and change times. Any
/// rewrite, replacement or rename over the file changes one of them, and only root could set
/// the change time back.
pub fn file_key(m: &std::fs::Metadata) -> String {
    format!(
        "{} {} {} {}.{} {}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// `dir`, when only this process's user may write it and enter it.
fn private_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == euid() && m.mode() & 0o077 == 0)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MAGIC: &[u8] = b"test fact 1\n";
    const NAME: &str = "fact";

    fn loaded(cache: &Cache, key: &[u8]) -> Option<Vec<u8>> {
        cache.load(NAME, MAGIC, key).map(|e| e.payload().to_vec())
    }

    #[test]
    fn a_fact_loads_for_its_magic_and_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(&dir.path().join("c"));
        cache.store(NAME, MAGIC, b"key", b"payload").unwrap();
        assert_eq!(loaded(&cache, b"key").as_deref(), Some(&b"payload"[..]));
        assert_eq!(loaded(&cache, b"ke"), None);
        assert_eq!(loaded(&cache, b"key2"), None);
        assert!(cache.load(NAME, b"test fact 2\n", b"key").is_none());
        assert!(cache.load("other", MAGIC, b"key").is_none());
        cache.store(NAME, MAGIC, b"key", b"").unwrap();
        assert_eq!(
            loaded(&cache, b"key").as_deref(),
            Some(&b""[..]),
            "replaced"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("c")).unwrap().mode() & 0o777,
            0o700,
            "only the owner enters"
        );
        let file = std::fs::metadata(dir.path().join("c").join(NAME)).unwrap();
        assert_eq!(file.mode() & 0o777, 0o600, "only the owner reads it");
    }

    #[test]
    fn a_store_leaves_the_fact_alone_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        for _ in 0..2 {
            cache.store(NAME, MAGIC, b"k", b"v").unwrap();
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [NAME]);
    }

    #[test]
    fn a_fact_others_could_write_is_neither_read_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let cache = Cache::at(&path);
        cache.store(NAME, MAGIC, b"k", b"v").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(loaded(&cache, b"k"), None, "an open directory");
        assert!(cache.store(NAME, MAGIC, b"k", b"v").is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = path.join(NAME);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(loaded(&cache, b"k"), None, "a file others may write");
    }

    #[test]
    fn a_symlinked_directory_or_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        Cache::at(&real).store(NAME, MAGIC, b"k", b"v").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(loaded(&Cache::at(&link), b"k"), None);
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(real.join(NAME), other.join(NAME)).unwrap();
        assert_eq!(loaded(&Cache::at(&other), b"k"), None);
    }

    #[test]
    fn a_fact_cut_short_or_grown_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(&dir.path().join("c"));
        cache.store(NAME, MAGIC, b"key", b"4.2.1").unwrap();
        let path = dir.path().join("c").join(NAME);
        let whole = std::fs::read(&path).unwrap();
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(loaded(&cache, b"key"), None, "cut at {cut}");
        }
        std::fs::write(&path, [&whole[..], b"x"].concat()).unwrap();
        assert_eq!(loaded(&cache, b"key"), None, "grown");
        std::fs::write(&path, &whole).unwrap();
        assert_eq!(loaded(&cache, b"key").as_deref(), Some(&b"4.2.1"[..]));
    }
}
