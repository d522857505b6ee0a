//! `/proc/kallsyms`'s text and its index, kept between runs. The kernel formats its 100,000+
//! lines afresh for every reader: ~40 ms of CPU per scan, a quarter of a preflight's, on cores
//! the scan itself needs. Within one boot the text changes only when a module comes or goes
//! (the BPF programs and trampolines it also lists are no ops table's target), so a copy keyed
//! by the boot, the kernel's base address and the module list stands for it. The copy is the
//! index's image ([`KallsymsIndex::image`]), mapped by the next run: reading and indexing the
//! text again cost ~9 ms of CPU per scan.
//!
//! The copy shows kernel addresses: it is only written and read by a process that sees them
//! in `/proc/kallsyms` itself, and lives in the [`Cache`], which only its owner may enter.

use std::fs::File;
use std::io::{BufRead, BufReader};

use crate::cache::Cache;
use crate::kernel::kallsyms::KallsymsIndex;

const FILE: &str = "kallsyms";
/// Starts every copy; a different layout gets a different line.
const MAGIC: &[u8] = b"ckpt-watch kallsyms cache 2\n";

/// What the text depends on (and the running kernel's identity for any fact kept for a boot),
/// read cheaply: the boot, `/proc/kallsyms`'s first line (the
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

    /// The boot, base address and modules, as text.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Whether every module is `Live`.
    pub fn settled(&self) -> bool {
        self.settled
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

/// The copy in `cache`, when its identity is `id`.
pub fn load(cache: &Cache, id: &Identity) -> Option<KallsymsIndex> {
    let entry = cache.load(FILE, MAGIC, &id.key)?;
    KallsymsIndex::from_image(entry.bytes, entry.at)
}

/// Replaces the copy in `cache` with `index`, unless a module was still loading.
pub fn store(cache: &Cache, id: &Identity, index: &KallsymsIndex) -> std::io::Result<()> {
    if !id.settled {
        return Ok(());
    }
    cache.store(FILE, MAGIC, &id.key, index.image())
}

/// `/proc/kallsyms` indexed: `cache`'s copy when it is the running kernel's, else read
/// afresh and copied there for the next run. A missing or unusable copy only costs the fresh
/// read.
pub fn read(cache: &Cache) -> std::io::Result<KallsymsIndex> {
    let id = Identity::of_running_kernel().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "kallsyms: no cache identity");
        None
    });
    if let Some(index) = id.as_ref().and_then(|id| load(cache, id)) {
        return Ok(index);
    }
    let index = KallsymsIndex::new(std::fs::read("/proc/kallsyms")?)?;
    if let Some(id) = &id
        && let Err(e) = store(cache, id, &index)
    {
        tracing::debug!(error = %e, "kallsyms: not cached");
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kallsyms::Symbols;

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

    /// The image of `cache`'s copy for `id`, if it loads.
    fn loaded(cache: &Cache, id: &Identity) -> Option<Vec<u8>> {
        load(cache, id).map(|index| index.image().to_vec())
    }

    #[test]
    fn a_stored_copy_loads_for_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(&dir.path().join("c"));
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
        let cache = Cache::at(dir.path());
        let loading = id("ext4 1015808 0 - Loading 0xffffffffc0a00000\n");
        store(&cache, &loading, &index()).unwrap();
        assert_eq!(loaded(&cache, &loading), None);
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
        let cache = Cache::at(&dir.path().join("c"));
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
