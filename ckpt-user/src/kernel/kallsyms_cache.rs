//! `/proc/kallsyms`'s text and its index, kept between runs. The kernel formats its 100,000+ lines afresh for
//! every reader: ~40 ms of CPU per scan, a quarter of a preflight's, on cores the scan itself
//! needs. Within one boot the text changes only when a module comes or goes (the BPF programs
//! and trampolines it also lists are no ops table's target), so a copy keyed by the boot, the
//! kernel's base address and the module list stands for it. The copy is the index's image
//! ([`KallsymsIndex::image`]), mapped by the next run: reading and indexing the text again
//! cost ~9 ms of CPU per scan.
//!
//! The copy shows kernel addresses: it is only written and read by a process that sees them
//! in `/proc/kallsyms` itself, and lives in a directory only its owner may enter.

use std::ffi::CString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::kernel::bytes::Bytes;
use crate::kernel::kallsyms::KallsymsIndex;

/// Where a root scan keeps the copy (FHS: data an application can regenerate).
pub const CACHE_DIR: &str = "/var/cache/ckpt-watch";
const FILE: &str = "kallsyms";
/// Starts every copy; a different layout gets a different line.
const MAGIC: &[u8] = b"ckpt-watch kallsyms cache 2\n";

/// What the text depends on, read cheaply: the boot, `/proc/kallsyms`'s first line (the
/// kernel's base address, which also shows this process sees addresses), and each module's
/// name, size, state and address.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    key: Vec<u8>,
    /// Every module is `Live`: one still loading may not have all of its symbols listed yet.
    settled: bool,
}

impl Identity {
    /// `None` when this process sees no kernel addresses: it must neither learn them from a
    /// copy nor write one of zeros.
    pub fn of_running_kernel() -> std::io::Result<Option<Self>> {
        let mut first = String::new();
        BufReader::new(File::open("/proc/kallsyms")?).read_line(&mut first)?;
        let base = first.split_whitespace().next().unwrap_or("0");
        if u64::from_str_radix(base, 16).unwrap_or(0) == 0 {
            return Ok(None);
        }
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
        // No module support: no /proc/modules, and the text is fixed for the boot.
        let modules = match std::fs::read_to_string("/proc/modules") {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Some(Self::new(&boot, &first, &modules)))
    }

    fn new(boot_id: &str, first_line: &str, modules: &str) -> Self {
        let mut key = format!("boot {}\nbase {}\n", boot_id.trim(), first_line.trim());
        let mut settled = true;
        // `NAME SIZE REFS USERS STATE ADDRESS`: references and users change while the
        // symbols do not.
        for line in modules.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [name, size, _, _, state, addr, ..] = f[..] {
                key.push_str(&format!("module {name} {size} {state} {addr}\n"));
                settled &= state == "Live";
            }
        }
        Self {
            key: key.into_bytes(),
            settled,
        }
    }
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

/// `dir`'s copy, when its identity is `id`: mapped, not read. Only this user can write the
/// file (checked), and a store replaces it by a rename, never in place, so the mapping never
/// changes under the scan.
pub fn load(dir: &Path, id: &Identity) -> Option<KallsymsIndex> {
    if !private_dir(dir) {
        return None;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(FILE))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return None;
    }
    // SAFETY: a private, regular file that is only ever replaced whole (above).
    let bytes = Bytes::mapped(unsafe { memmap2::Mmap::map(&file) }.ok()?);
    let rest = bytes.strip_prefix(MAGIC)?;
    // The key's length, then the key: a copy cut short (a crash before the data reached the
    // disk) or grown fails the image's own length check, and is a miss.
    let newline = memchr::memchr(b'\n', rest)?;
    let key_len: usize = std::str::from_utf8(&rest[..newline]).ok()?.parse().ok()?;
    let key_at = MAGIC.len() + newline + 1;
    if bytes.get(key_at..key_at.checked_add(key_len)?)? != id.key.as_slice() {
        return None;
    }
    KallsymsIndex::from_image(bytes.clone(), key_at + key_len)
}

/// Replaces `dir`'s copy with `index`, whole or not at all (a rename), creating `dir` private.
pub fn store(dir: &Path, id: &Identity, index: &KallsymsIndex) -> std::io::Result<()> {
    if !id.settled {
        return Ok(());
    }
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
    // Written unnamed (O_TMPFILE) and linked in only once whole: a scan that ends while its
    // copy is being written (an early error, an empty preflight) leaves nothing behind.
    let mut file = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)?;
    file.write_all(MAGIC)?;
    file.write_all(format!("{}\n", id.key.len()).as_bytes())?;
    file.write_all(&id.key)?;
    file.write_all(index.image())?;
    let tmp = dir.join(format!("{FILE}.{}", std::process::id()));
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
    std::fs::rename(&tmp, dir.join(FILE)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `/proc/kallsyms` indexed: `dir`'s copy when it is the running kernel's, else read afresh
/// and copied there for the next run. A missing or unusable copy only costs the fresh read.
pub fn read(dir: &Path) -> std::io::Result<KallsymsIndex> {
    let id = Identity::of_running_kernel().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "kallsyms: no cache identity");
        None
    });
    if let Some(index) = id.as_ref().and_then(|id| load(dir, id)) {
        return Ok(index);
    }
    let index = KallsymsIndex::new(std::fs::read("/proc/kallsyms")?)?;
    if let Some(id) = &id
        && let Err(e) = store(dir, id, &index)
    {
        tracing::debug!(dir = %dir.display(), error = %e, "kallsyms: not cached");
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kallsyms::Symbols;
    use std::os::unix::fs::PermissionsExt;

    fn id(modules: &str) -> Identity {
        Identity::new(
            "0f9c3a1e-2b4d-4e5f-8a6b-7c8d9e0f1a2b\n",
            "ffffffff81000000 T _stext\n",
            modules,
        )
    }

    const TEXT: &[u8] = b"ffffffff81000000 T _stext\nffffffff81234560 t pipe_read\n";

    fn index() -> KallsymsIndex {
        KallsymsIndex::new(TEXT.to_vec()).unwrap()
    }

    /// The image of `dir`'s copy for `id`, if it loads.
    fn loaded(dir: &Path, id: &Identity) -> Option<Vec<u8>> {
        load(dir, id).map(|index| index.image().to_vec())
    }

    #[test]
    fn a_stored_copy_loads_for_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("c");
        store(&cache, &id(""), &index()).unwrap();
        assert_eq!(loaded(&cache, &id("")).as_deref(), Some(index().image()));
        let module = "ext4 1015808 3 - Live 0xffffffffc0a00000\n";
        assert_eq!(loaded(&cache, &id(module)), None, "a module came");
        let other_boot = Identity::new("1", "ffffffff81000000 T _stext", "");
        assert_eq!(loaded(&cache, &other_boot), None);
        let moved = Identity::new(
            "0f9c3a1e-2b4d-4e5f-8a6b-7c8d9e0f1a2b",
            "ffffffff9a000000 T _stext",
            "",
        );
        assert_eq!(loaded(&cache, &moved), None, "another base address");
        assert_eq!(
            std::fs::metadata(&cache).unwrap().mode() & 0o777,
            0o700,
            "only the owner enters"
        );
        let file = std::fs::metadata(cache.join(FILE)).unwrap();
        assert_eq!(file.mode() & 0o777, 0o600, "only the owner reads addresses");
    }

    #[test]
    fn a_store_leaves_the_copy_alone_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("c");
        for _ in 0..2 {
            store(&cache, &id(""), &index()).unwrap();
        }
        let names: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
    }

    #[test]
    fn module_references_do_not_change_the_identity_but_state_and_address_do() {
        let live = "ext4 1015808 3 - Live 0xffffffffc0a00000\n";
        let used = "ext4 1015808 5 jbd2, Live 0xffffffffc0a00000\n";
        assert_eq!(id(live), id(used));
        assert_ne!(id(live), id("ext4 1015808 3 - Live 0xffffffffc0b00000\n"));
        let loading = id("ext4 1015808 0 - Loading 0xffffffffc0a00000\n");
        assert_ne!(id(live), loading);
        assert!(id(live).settled);
        assert!(!loading.settled);
    }

    #[test]
    fn nothing_is_stored_while_a_module_is_half_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let loading = id("ext4 1015808 0 - Loading 0xffffffffc0a00000\n");
        store(dir.path(), &loading, &index()).unwrap();
        assert_eq!(loaded(dir.path(), &loading), None);
    }

    #[test]
    fn a_copy_others_could_write_is_neither_read_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("c");
        store(&cache, &id(""), &index()).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(loaded(&cache, &id("")), None, "an open directory");
        assert!(store(&cache, &id(""), &index()).is_err());
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = cache.join(FILE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(loaded(&cache, &id("")), None, "a file others may write");
    }

    #[test]
    fn a_symlinked_directory_or_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        store(&real, &id(""), &index()).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(loaded(&link, &id("")), None);
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(real.join(FILE), other.join(FILE)).unwrap();
        assert_eq!(loaded(&other, &id("")), None);
    }

    #[test]
    fn a_truncated_or_foreign_copy_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("c");
        store(&cache, &id(""), &index()).unwrap();
        let path = cache.join(FILE);
        let whole = std::fs::read(&path).unwrap();
        for cut in [0, MAGIC.len() - 1, MAGIC.len() + 2, MAGIC.len() + 10] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(loaded(&cache, &id("")), None, "cut at {cut}");
        }
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        assert_eq!(loaded(&cache, &id("")), None, "the text cut short");
        std::fs::write(&path, [&whole[..], b"x"].concat()).unwrap();
        assert_eq!(loaded(&cache, &id("")), None, "the text grown");
        std::fs::write(&path, b"ffffffff81000000 T _stext\n").unwrap();
        assert_eq!(loaded(&cache, &id("")), None);
    }

    /// The running kernel's index comes back the same through a copy as built afresh, and
    /// finds the same symbols.
    #[test]
    fn host_index_round_trips() {
        let Ok(Some(id)) = Identity::of_running_kernel() else {
            eprintln!("skipped: this process sees no kernel addresses");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("c");
        let fresh = read(&cache).unwrap();
        assert!(
            fresh.image().len() > 100_000,
            "{} bytes",
            fresh.image().len()
        );
        let cached = load(&cache, &id).expect("the read left a copy");
        assert_eq!(cached.image(), fresh.image());
        assert_eq!(read(&cache).unwrap().image(), cached.image());
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let want = text
            .lines()
            .find(|l| l.ends_with(" pipe_release"))
            .and_then(|l| u64::from_str_radix(l.get(..16)?, 16).ok())
            .expect("pipe_release in kallsyms");
        let found = Symbols::lookup_indexed(&cached, &[want].into()).unwrap();
        assert_eq!(found.function_at(want).unwrap().name, "pipe_release");
    }
}
