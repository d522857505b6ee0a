//! `f_op` address → identity: the ops table's own data symbol where the kernel exports one,
//! else the names of the functions it points to, matched against a catalogue of known tables.

use std::collections::{BTreeMap, HashMap, HashSet};

use ckpt_common::{N_OPS_MEMBERS, OPS_MEMBERS};
use serde::{Deserialize, Serialize};

use crate::kernel::kallsyms::Symbols;

static CATALOGUE: &str = include_str!("catalogue.toml");

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("ops catalogue {source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error(
        "ops catalogue {source_name}: entry {name} names unknown member `{member}` (known: {known})"
    )]
    UnknownMember {
        source_name: String,
        name: String,
        member: String,
        known: String,
    },
}

/// One known ops table and the member functions that identify it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KnownOps {
    pub name: String,
    pub members: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    ops: Vec<KnownOps>,
}

#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    entries: Vec<KnownOps>,
}

impl Catalogue {
    /// The catalogue shipped in the binary.
    pub fn builtin() -> Self {
        let mut c = Self::default();
        c.extend_from_toml(CATALOGUE, "built-in")
            .expect("the built-in catalogue is valid (tested)");
        c
    }

    /// Adds entries from TOML text (a profile may carry its own `[[ops]]`).
    pub fn extend_from_toml(
        &mut self,
        text: &str,
        source_name: &str,
    ) -> Result<(), CatalogueError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| CatalogueError::Parse {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        self.extend(file.ops, source_name)
    }

    pub fn extend(&mut self, ops: Vec<KnownOps>, source_name: &str) -> Result<(), CatalogueError> {
        for entry in &ops {
            if let Some(m) = entry
                .members
                .keys()
                .find(|m| !OPS_MEMBERS.contains(&m.as_str()))
            {
                return Err(CatalogueError::UnknownMember {
                    source_name: source_name.into(),
                    name: crate::report::printable(&entry.name),
                    member: crate::report::printable(m),
                    known: OPS_MEMBERS.join(", "),
                });
            }
        }
        self.entries.extend(ops);
        Ok(())
    }

    /// Every function some known table is identified by.
    pub fn functions(&self) -> std::collections::HashSet<&str> {
        self.entries
            .iter()
            .flat_map(|k| k.members.values().map(String::as_str))
            .collect()
    }

    fn identify(&self, members: &BTreeMap<String, String>) -> Option<&str> {
        self.entries
            .iter()
            .find(|k| {
                !k.members.is_empty()
                    && k.members
                        .iter()
                        .all(|(m, f)| members.get(m).is_some_and(|g| g == f))
            })
            .map(|k| k.name.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The table's own data symbol.
    DataSymbol,
    /// Its member functions, matched in the catalogue.
    Members,
    /// Member functions resolved but no known table matched.
    Unnamed,
    /// Nothing resolved (no ops record, or no symbols at those addresses).
    Unresolved,
}

/// What an `f_op` address is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsIdentity {
    pub addr: u64,
    /// The table's name: its data symbol, or the catalogue's name for its members.
    pub name: Option<String>,
    /// The module defining it, `None` for vmlinux.
    pub module: Option<String>,
    /// Member → function symbol, for the members that are set.
    pub members: BTreeMap<String, String>,
    pub via: Via,
}

impl OpsIdentity {
    /// A name for reports: the table's name, else `~` + its most telling member function.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        [
            "release",
            "open",
            "read_iter",
            "mmap",
            "unlocked_ioctl",
            "read",
            "poll",
        ]
        .iter()
        .find_map(|m| self.members.get(*m))
        .map(|f| format!("~{f}"))
        .unwrap_or_else(|| format!("{:#x}", self.addr))
    }

    pub fn has_function(&self, function: &str) -> bool {
        self.members.values().any(|f| f == function)
    }
}

/// Every address that must be looked up in kallsyms: the tables and their members.
pub fn wanted_addresses(ops: &HashMap<u64, [u64; N_OPS_MEMBERS]>) -> HashSet<u64> {
    ops.iter()
        .flat_map(|(addr, members)| std::iter::once(*addr).chain(members.iter().copied()))
        .filter(|&a| a != 0)
        .collect()
}

/// A symbol without the suffixes compilers add to local or split copies (`empty_fops.54`,
/// `ext4_file_open.cold`, `x.isra.0`): kernel identifiers contain no dot.
fn plain(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Each ops table's identity by its address. foldhash: judging looks a table up twice for each
/// of a host's ~200,000 files; the addresses are the kernel's.
pub type OpsTables = HashMap<u64, OpsIdentity, foldhash::fast::RandomState>;

/// Names each ops table.
pub fn resolve(
    ops: &HashMap<u64, [u64; N_OPS_MEMBERS]>,
    symbols: &Symbols,
    catalogue: &Catalogue,
) -> OpsTables {
    ops.iter()
        .map(|(&addr, member_addrs)| {
            let mut members = BTreeMap::new();
            let mut module = None;
            for (name, &fa) in OPS_MEMBERS.iter().zip(member_addrs) {
                if let Some(sym) = symbols.function_at(fa) {
                    members.insert(name.to_string(), plain(&sym.name).to_string());
                    module = module.or(sym.module.clone());
                }
            }
            let (name, via) = if let Some(data) = symbols.data_at(addr) {
                module = data.module.clone();
                (Some(plain(&data.name).to_string()), Via::DataSymbol)
            } else if let Some(known) = catalogue.identify(&members) {
                (Some(known.to_string()), Via::Members)
            } else if !members.is_empty() {
                (None, Via::Unnamed)
            } else {
                (None, Via::Unresolved)
            };
            (
                addr,
                OpsIdentity {
                    addr,
                    name,
                    module,
                    members,
                    via,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000100 t io_uring_release
ffffffff81000200 t pipe_release
ffffffff81000300 t pipe_read
ffffffff81000400 t mystery_release
ffffffff82000000 d pipefifo_fops
ffffffffc0001000 t kvm_vm_release\t[kvm]
";

    fn members(release: u64, read: u64) -> [u64; N_OPS_MEMBERS] {
        let mut m = [0; N_OPS_MEMBERS];
        m[OPS_MEMBERS.iter().position(|&n| n == "release").unwrap()] = release;
        m[OPS_MEMBERS.iter().position(|&n| n == "read").unwrap()] = read;
        m
    }

    fn resolved() -> OpsTables {
        let ops = HashMap::from([
            (0xffff_0001, members(0xffffffff81000100, 0)),
            (
                0xffffffff82000000,
                members(0xffffffff81000200, 0xffffffff81000300),
            ),
            (0xffff_0003, members(0xffffffff81000400, 0)),
            (0xffff_0004, members(0xdead, 0)),
            (0xffff_0005, members(0xffffffffc0001000, 0)),
        ]);
        let symbols = Symbols::lookup(KALLSYMS.as_bytes(), &wanted_addresses(&ops)).unwrap();
        resolve(&ops, &symbols, &Catalogue::builtin())
    }

    #[test]
    fn builtin_catalogue_parses_and_names_only_real_members() {
        assert!(Catalogue::builtin().entries.len() > 30);
    }

    #[test]
    fn data_symbol_wins() {
        let id = &resolved()[&0xffffffff82000000];
        assert_eq!(id.name.as_deref(), Some("pipefifo_fops"));
        assert_eq!(id.via, Via::DataSymbol);
        assert_eq!(id.members["read"], "pipe_read");
    }

    #[test]
    fn members_identify_a_table_without_data_symbols() {
        let r = resolved();
        let id = &r[&0xffff_0001];
        assert_eq!(
            (id.name.as_deref(), id.via),
            (Some("io_uring_fops"), Via::Members)
        );
        let kvm = &r[&0xffff_0005];
        assert_eq!(kvm.name.as_deref(), Some("kvm_vm_fops"));
        assert_eq!(kvm.module.as_deref(), Some("kvm"));
    }

    #[test]
    fn unknown_tables_are_labelled_by_member_or_address() {
        let r = resolved();
        let id = &r[&0xffff_0003];
        assert_eq!(
            (id.via, id.label()),
            (Via::Unnamed, "~mystery_release".to_string())
        );
        let none = &r[&0xffff_0004];
        assert_eq!(
            (none.via, none.label()),
            (Via::Unresolved, "0xffff0004".to_string())
        );
    }

    #[test]
    fn compiler_suffixes_are_dropped() {
        assert_eq!(plain("empty_fops.54"), "empty_fops");
        assert_eq!(plain("ext4_file_open.cold"), "ext4_file_open");
        assert_eq!(plain("pipe_release"), "pipe_release");
    }

    #[test]
    fn catalogue_rejects_unknown_members() {
        let mut c = Catalogue::default();
        let err = c
            .extend_from_toml(
                "[[ops]]\nname = \"x\"\nmembers = { checkpoint = \"f\" }\n",
                "test",
            )
            .unwrap_err();
        assert!(err.to_string().contains("checkpoint"), "{err}");
        let err = c
            .extend_from_toml("[[ops]]\nnam = 1\n", "test")
            .unwrap_err();
        assert!(matches!(err, CatalogueError::Parse { .. }));
    }
}
