//! `/proc/kallsyms`: names for the addresses the BPF side reports (ops tables and their member
//! functions). Only wanted addresses are kept, so a lookup costs one pass and no table of 100k+
//! names.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("cannot read /proc/kallsyms: {0}")]
    Io(#[from] std::io::Error),
    /// `hint` says why for this process and what grants it (see
    /// [`crate::kernel::privileges::kallsyms_hidden_hint`]).
    #[error("/proc/kallsyms shows every address as 0 (kernel.kptr_restrict={restrict}): {hint}")]
    AddressesHidden { restrict: String, hint: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymKind {
    Text,
    Data,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Symbol {
    pub name: String,
    pub kind: SymKind,
    /// The module that defines it, `None` for vmlinux.
    pub module: Option<String>,
}

/// Symbols found at the wanted addresses.
#[derive(Debug, Default)]
pub struct Symbols {
    by_addr: HashMap<u64, Vec<Symbol>>,
    /// How many data symbols the kernel exports at all: a handful without CONFIG_KALLSYMS_ALL.
    pub data_symbols: usize,
}

/// Fewer exported data symbols than this means the kernel was built without
/// CONFIG_KALLSYMS_ALL (only linker-section markers like `__start_rodata` remain).
const KALLSYMS_ALL_THRESHOLD: usize = 1000;

impl Symbols {
    /// Reads kallsyms text from `reader`, keeping the symbols at `wanted` addresses.
    pub fn lookup<R: BufRead>(mut reader: R, wanted: &HashSet<u64>) -> Result<Self, KallsymsError> {
        let mut out = Symbols::default();
        let mut nonzero = false;
        let mut lines = 0usize;
        let mut line = String::new();
        while {
            line.clear();
            reader.read_line(&mut line)? > 0
        } {
            lines += 1;
            let mut parts = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            nonzero |= addr != 0;
            let kind = match kind.as_bytes().first() {
                Some(b'T' | b't' | b'W' | b'w') => SymKind::Text,
                Some(b'D' | b'd' | b'R' | b'r' | b'B' | b'b') => {
                    out.data_symbols += 1;
                    SymKind::Data
                }
                _ => continue,
            };
            if !wanted.contains(&addr) {
                continue;
            }
            let module = parts
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
            out.by_addr.entry(addr).or_default().push(Symbol {
                name: name.to_string(),
                kind,
                module,
            });
        }
        if lines > 0 && !nonzero {
            let restrict = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            let hint = crate::kernel::privileges::kallsyms_hidden_hint(&restrict);
            return Err(KallsymsError::AddressesHidden { restrict, hint });
        }
        Ok(out)
    }

    /// Reads kallsyms text from `reader`, keeping the text symbols named in `names`.
    pub fn lookup_functions<R: BufRead>(
        mut reader: R,
        names: &HashSet<&str>,
    ) -> Result<Self, KallsymsError> {
        let mut out = Symbols::default();
        let mut line = String::new();
        while {
            line.clear();
            reader.read_line(&mut line)? > 0
        } {
            let mut parts = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !matches!(kind, "T" | "t" | "W" | "w") || !names.contains(name) {
                continue;
            }
            if let Ok(addr) = u64::from_str_radix(addr, 16) {
                let module = parts.next().map(|m| m.trim_matches(['[', ']']).to_string());
                out.by_addr.entry(addr).or_default().push(Symbol {
                    name: name.to_string(),
                    kind: SymKind::Text,
                    module,
                });
            }
        }
        Ok(out)
    }

    /// Reads the running kernel's table.
    pub fn from_proc(wanted: &HashSet<u64>) -> Result<Self, KallsymsError> {
        let file = std::fs::File::open("/proc/kallsyms")?;
        Self::lookup(std::io::BufReader::with_capacity(1 << 16, file), wanted)
    }

    fn first(&self, addr: u64, kind: SymKind) -> Option<&Symbol> {
        self.by_addr.get(&addr)?.iter().find(|s| s.kind == kind)
    }

    /// The data symbol exactly at `addr`: an ops table's own name.
    pub fn data_at(&self, addr: u64) -> Option<&Symbol> {
        self.first(addr, SymKind::Data)
    }

    /// The function starting exactly at `addr`.
    pub fn function_at(&self, addr: u64) -> Option<&Symbol> {
        self.first(addr, SymKind::Text)
    }

    /// Every (address, symbol) kept, for saving a snapshot.
    pub fn entries(&self) -> Vec<(u64, Symbol)> {
        let mut v: Vec<(u64, Symbol)> = self
            .by_addr
            .iter()
            .flat_map(|(a, syms)| syms.iter().map(|s| (*a, s.clone())))
            .collect();
        v.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        v
    }

    /// Rebuilds a lookup from saved entries.
    pub fn from_entries(entries: Vec<(u64, Symbol)>, data_symbols: usize) -> Self {
        let mut s = Symbols {
            data_symbols,
            ..Default::default()
        };
        for (addr, sym) in entries {
            s.by_addr.entry(addr).or_default().push(sym);
        }
        s
    }

    /// Whether the kernel exports data symbols (CONFIG_KALLSYMS_ALL).
    pub fn exports_data(&self) -> bool {
        self.data_symbols >= KALLSYMS_ALL_THRESHOLD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
ffffffff81000000 T _text
ffffffff81234560 t pipe_release
ffffffff81234560 t pipe_release_alias
ffffffff81300000 T ext4_file_open
ffffffff82400000 D pipefifo_fops
ffffffff82400100 r eventfd_fops
ffffffffc0a01000 t kvm_vm_release\t[kvm]
ffffffffc0a02000 r kvm_vm_fops\t[kvm]
ffffffffc0a03000 b some_bss\t[kvm]
ffffffff81400000 A absolute_ignored
";

    fn wanted(addrs: &[u64]) -> HashSet<u64> {
        addrs.iter().copied().collect()
    }

    #[test]
    fn finds_text_and_data_with_modules() {
        let s = Symbols::lookup(
            FIXTURE.as_bytes(),
            &wanted(&[
                0xffffffff81234560,
                0xffffffff82400000,
                0xffffffffc0a01000,
                0xffffffffc0a02000,
            ]),
        )
        .unwrap();
        assert_eq!(
            s.function_at(0xffffffff81234560).unwrap().name,
            "pipe_release"
        );
        assert_eq!(s.data_at(0xffffffff82400000).unwrap().name, "pipefifo_fops");
        let kvm = s.function_at(0xffffffffc0a01000).unwrap();
        assert_eq!(
            (kvm.name.as_str(), kvm.module.as_deref()),
            ("kvm_vm_release", Some("kvm"))
        );
        assert_eq!(
            s.data_at(0xffffffffc0a02000).unwrap().module.as_deref(),
            Some("kvm")
        );
        assert_eq!(s.data_symbols, 4);
        assert!(!s.exports_data());
    }

    #[test]
    fn unwanted_and_wrong_kind_are_not_found() {
        let s = Symbols::lookup(FIXTURE.as_bytes(), &wanted(&[0xffffffff81300000])).unwrap();
        assert!(
            s.data_at(0xffffffff81300000).is_none(),
            "a function is not a data symbol"
        );
        assert!(s.function_at(0xffffffff82400000).is_none(), "not wanted");
        assert!(
            s.function_at(0xffffffff81400000).is_none(),
            "absolute symbols are ignored"
        );
    }

    #[test]
    fn functions_are_found_by_name() {
        let names = HashSet::from(["pipe_release", "kvm_vm_release", "pipefifo_fops"]);
        let s = Symbols::lookup_functions(FIXTURE.as_bytes(), &names).unwrap();
        assert_eq!(
            s.function_at(0xffffffff81234560).unwrap().name,
            "pipe_release"
        );
        assert_eq!(
            s.function_at(0xffffffffc0a01000).unwrap().module.as_deref(),
            Some("kvm")
        );
        assert!(
            s.data_at(0xffffffff82400000).is_none(),
            "data symbols are not functions"
        );
    }

    #[test]
    fn zeroed_addresses_mean_kptr_restrict() {
        let hidden = "0000000000000000 T _text\n0000000000000000 t pipe_release\n";
        let err = Symbols::lookup(hidden.as_bytes(), &wanted(&[0])).unwrap_err();
        assert!(matches!(err, KallsymsError::AddressesHidden { .. }));
        assert!(err.to_string().contains("kptr_restrict"));
        assert!(err.to_string().contains("CAP_SYSLOG"), "{err}");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\nzzzz T x\nffffffff81000000\nffffffff81000010 T ok_fn\n";
        let s = Symbols::lookup(text.as_bytes(), &wanted(&[0xffffffff81000010])).unwrap();
        assert_eq!(s.function_at(0xffffffff81000010).unwrap().name, "ok_fn");
    }

    #[test]
    fn host_kallsyms_resolves_a_known_function() {
        let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
            eprintln!("skipped: /proc/kallsyms unreadable");
            return;
        };
        let line = text
            .lines()
            .find(|l| l.ends_with(" pipe_release"))
            .expect("pipe_release");
        let addr = u64::from_str_radix(&line[..16], 16).unwrap();
        if addr == 0 {
            eprintln!("skipped: addresses hidden (not root?)");
            return;
        }
        let s = Symbols::from_proc(&wanted(&[addr])).unwrap();
        assert_eq!(s.function_at(addr).unwrap().name, "pipe_release");
    }
}
