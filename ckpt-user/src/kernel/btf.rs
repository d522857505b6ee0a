//! Struct member offsets from the running kernel's BTF, for the BPF programs' `.rodata`.

use std::path::{Path, PathBuf};

use btf_rs::{Btf, Type};
use ckpt_common::{ABSENT, KernelOffsets, OPS_MEMBERS};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "kernel BTF not found at {0}: this kernel lacks CONFIG_DEBUG_INFO_BTF; run on a kernel built with BTF (every current distro kernel is)"
    )]
    Missing(PathBuf),
    #[error("cannot parse kernel BTF at {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "kernel BTF has no `{0}`: this kernel is too different from what ckpt-watch knows (please report it)"
    )]
    Required(&'static str),
}

/// A member's byte offset and size inside its outermost struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        if !path.exists() {
            return Err(BtfError::Missing(path.to_path_buf()));
        }
        let btf = Btf::from_file(path).map_err(|e| BtfError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self { btf })
    }

    fn struct_named(&self, name: &str) -> Option<btf_rs::Struct> {
        self.btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) | Type::Union(s) => Some(s),
                _ => None,
            })
    }

    /// Strips typedefs and qualifiers.
    fn concrete(&self, mut t: Type) -> Option<Type> {
        loop {
            match t {
                Type::Typedef(_)
                | Type::Const(_)
                | Type::Volatile(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    let next = self.btf.resolve_chained_type(t.as_btf_type()?).ok()?;
                    t = next;
                }
                other => return Some(other),
            }
        }
    }

    fn size_of(&self, t: &Type) -> Option<u32> {
        match t {
            Type::Int(i) => Some(i.size() as u32),
            Type::Ptr(_) => Some(8),
            Type::Enum(e) => Some(e.size() as u32),
            Type::Enum64(e) => Some(e.size() as u32),
            Type::Struct(s) | Type::Union(s) => Some(s.size() as u32),
            Type::Array(_) => Some(0),
            _ => None,
        }
    }

    /// Finds `name` among `s`'s members, descending into anonymous structs and unions.
    /// Returns the member's bit offset relative to `s`, bitfield size, and type.
    fn find_member(&self, s: &btf_rs::Struct, name: &str) -> Option<(u32, Option<u32>, Type)> {
        for m in &s.members {
            let mname = self.btf.resolve_name(m).unwrap_or_default();
            let mtype = self.btf.resolve_chained_type(m).ok()?;
            if mname == name {
                let bits = m.bitfield_size().filter(|&b| b != 0);
                return Some((m.bit_offset(), bits, mtype));
            }
            if mname.is_empty()
                && let Some(Type::Struct(inner) | Type::Union(inner)) = self.concrete(mtype)
                && let Some((off, bits, t)) = self.find_member(&inner, name)
            {
                return Some((m.bit_offset() + off, bits, t));
            }
        }
        None
    }

    /// Resolves a dotted member path (`f_path.dentry`) in struct `strukt`. Bitfields and
    /// members not on a byte boundary are reported as absent: the BPF side reads whole bytes.
    pub fn field(&self, strukt: &str, path: &str) -> Option<Field> {
        let mut current = self.struct_named(strukt)?;
        let mut bit_offset = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let (off, bits, t) = self.find_member(&current, part)?;
            bit_offset += off;
            let t = self.concrete(t)?;
            if parts.peek().is_none() {
                if bits.is_some() || bit_offset % 8 != 0 {
                    return None;
                }
                return Some(Field {
                    offset: bit_offset / 8,
                    size: self.size_of(&t)?,
                });
            }
            match t {
                Type::Struct(s) | Type::Union(s) => current = s,
                _ => return None,
            }
        }
        None
    }

    /// Offset of the first of `candidates` (struct, path) that exists with the expected size
    /// (0: any size); [`ABSENT`] when none does.
    fn offset(&self, size: u32, candidates: &[(&str, &str)]) -> u32 {
        candidates
            .iter()
            .find_map(|(s, p)| self.field(s, p).filter(|f| size == 0 || f.size == size))
            .map_or(ABSENT, |f| f.offset)
    }

    /// Every offset the BPF programs use. Fails only when the core of a file record is missing.
    pub fn offsets(&self) -> Result<KernelOffsets, BtfError> {
        let o = |size, s, p| self.offset(size, &[(s, p)]);
        let mut k = KernelOffsets::absent();
        k.file_f_op = o(8, "file", "f_op");
        k.file_f_inode = o(8, "file", "f_inode");
        k.file_f_flags = o(4, "file", "f_flags");
        k.file_f_path_mnt = o(8, "file", "f_path.mnt");
        k.file_f_path_dentry = o(8, "file", "f_path.dentry");
        k.file_private_data = o(8, "file", "private_data");
        k.inode_i_mode = o(2, "inode", "i_mode");
        k.inode_i_rdev = o(4, "inode", "i_rdev");
        k.inode_i_sb = o(8, "inode", "i_sb");
        k.inode_i_ino = o(8, "inode", "i_ino");
        k.inode_i_nlink = self.offset(4, &[("inode", "__i_nlink"), ("inode", "i_nlink")]);
        k.inode_i_size = o(8, "inode", "i_size");
        k.inode_i_blocks = o(8, "inode", "i_blocks");
        k.inode_i_flctx = o(8, "inode", "i_flctx");
        k.inode_i_private = o(8, "inode", "i_private");
        k.sb_s_magic = o(8, "super_block", "s_magic");
        k.sb_s_dev = o(4, "super_block", "s_dev");
        k.sb_s_type = o(8, "super_block", "s_type");
        k.fstype_name = o(8, "file_system_type", "name");
        k.dentry_d_name_name = o(8, "dentry", "d_name.name");
        k.dentry_d_hash_pprev = o(8, "dentry", "d_hash.pprev");
        k.mount_mnt = o(0, "mount", "mnt");
        k.mount_mnt_ns = o(8, "mount", "mnt_ns");
        k.mount_mnt_id = o(4, "mount", "mnt_id");
        k.task_tgid = o(4, "task_struct", "tgid");
        k.task_pid = o(4, "task_struct", "pid");
        k.task_nsproxy = o(8, "task_struct", "nsproxy");
        k.task_files = o(8, "task_struct", "files");
        k.nsproxy_mnt_ns = o(8, "nsproxy", "mnt_ns");
        k.socket_sk = o(8, "socket", "sk");
        k.socket_alloc_inode = o(0, "socket_alloc", "vfs_inode");
        k.sock_family = o(2, "sock", "__sk_common.skc_family");
        k.sock_state = o(1, "sock", "__sk_common.skc_state");
        k.sock_type = o(2, "sock", "sk_type");
        k.sock_protocol = o(2, "sock", "sk_protocol");
        k.sock_ack_backlog = o(4, "sock", "sk_ack_backlog");
        k.sock_socket = o(8, "sock", "sk_socket");
        k.unix_peer = o(8, "unix_sock", "peer");
        k.unix_addr = o(8, "unix_sock", "addr");
        k.flctx_flock = o(0, "file_lock_context", "flc_flock");
        k.flctx_posix = o(0, "file_lock_context", "flc_posix");
        // Since 6.9 the list, owner and file live in `struct file_lock_core`, first in the lock.
        k.lock_list = self.offset(
            0,
            &[("file_lock_core", "flc_list"), ("file_lock", "fl_list")],
        );
        k.lock_owner = self.offset(
            8,
            &[("file_lock_core", "flc_owner"), ("file_lock", "fl_owner")],
        );
        k.lock_file = self.offset(
            8,
            &[("file_lock_core", "flc_file"), ("file_lock", "fl_file")],
        );
        k.pid_numbers = o(0, "pid", "numbers");
        k.upid_nr = o(4, "upid", "nr");
        k.tty_private_tty = o(8, "tty_file_private", "tty");
        k.tty_index = o(4, "tty_struct", "index");
        k.vma_vm_start = o(8, "vm_area_struct", "vm_start");
        k.vma_vm_end = o(8, "vm_area_struct", "vm_end");
        k.vma_vm_flags = o(8, "vm_area_struct", "vm_flags");
        k.vma_vm_pgoff = o(8, "vm_area_struct", "vm_pgoff");
        k.vma_vm_file = o(8, "vm_area_struct", "vm_file");
        k.files_fdt = o(8, "files_struct", "fdt");
        k.fdtable_fd = o(8, "fdtable", "fd");
        k.fdtable_max_fds = o(4, "fdtable", "max_fds");
        k.regs_orig_ax = o(8, "pt_regs", "orig_ax");
        k.regs_di = o(8, "pt_regs", "di");
        k.regs_si = o(8, "pt_regs", "si");
        k.regs_r10 = o(8, "pt_regs", "r10");
        k.task_cgroups = o(8, "task_struct", "cgroups");
        k.css_set_dfl_cgrp = o(8, "css_set", "dfl_cgrp");
        k.cgroup_level = o(4, "cgroup", "level");
        k.cgroup_ancestors = o(0, "cgroup", "ancestors");
        k.cgroup_kn = o(8, "cgroup", "kn");
        k.kernfs_node_id = o(8, "kernfs_node", "id");
        for (slot, member) in k.fop_members.iter_mut().zip(OPS_MEMBERS) {
            *slot = o(8, "file_operations", member);
        }
        let required = [
            (k.file_f_op, "file.f_op"),
            (k.file_f_inode, "file.f_inode"),
            (k.inode_i_mode, "inode.i_mode"),
            (k.task_tgid, "task_struct.tgid"),
        ];
        if let Some((_, name)) = required.iter().find(|(v, _)| *v == ABSENT) {
            return Err(BtfError::Required(name));
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Option<KernelBtf> {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("skipped: {VMLINUX_BTF} absent (kernel without CONFIG_DEBUG_INFO_BTF)");
            return None;
        }
        Some(KernelBtf::from_file(path).expect("host BTF parses"))
    }

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = KernelBtf::from_file(Path::new("/nonexistent/vmlinux"))
            .err()
            .expect("missing file is an error");
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn garbage_btf_is_a_parse_error() {
        let dir = std::env::temp_dir().join(format!("ckpt-btf-{}", std::process::id()));
        std::fs::write(&dir, b"not btf at all").unwrap();
        let err = KernelBtf::from_file(&dir).err().expect("garbage fails");
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(err, BtfError::Parse { .. }), "{err}");
    }

    #[test]
    fn host_offsets_are_found_and_consistent() {
        let Some(btf) = host() else { return };
        let k = btf.offsets().expect("offsets");
        // f_path is a struct path {mnt, dentry}: dentry follows mnt by one pointer.
        assert_eq!(k.file_f_path_dentry, k.file_f_path_mnt + 8);
        // d_name is a qstr {hash_len, name}: name follows the 8-byte hash_len.
        let d_name = btf.field("dentry", "d_name").unwrap();
        assert_eq!(k.dentry_d_name_name, d_name.offset + 8);
        // skc_family and skc_state live in the sock_common at the start of struct sock.
        let common = btf.field("sock", "__sk_common").unwrap();
        assert_eq!(common.offset, 0);
        assert!(k.sock_family < common.size && k.sock_state < common.size);
        // The file_operations members we read are all present on a 6.x kernel.
        for (member, off) in OPS_MEMBERS.iter().zip(k.fop_members) {
            assert_ne!(off, ABSENT, "file_operations.{member}");
            assert_eq!(off % 8, 0, "file_operations.{member} is a pointer");
        }
        for (name, off) in [
            ("i_flctx", k.inode_i_flctx),
            ("unix_sock.peer", k.unix_peer),
            ("mount.mnt", k.mount_mnt),
            ("vm_area_struct.vm_file", k.vma_vm_file),
            ("file_lock list", k.lock_list),
            ("tty_struct.index", k.tty_index),
        ] {
            assert_ne!(off, ABSENT, "{name}");
        }
    }

    #[test]
    fn bitfields_and_unknown_members_are_absent() {
        let Some(btf) = host() else { return };
        assert_eq!(btf.field("file", "no_such_member"), None);
        assert_eq!(btf.field("no_such_struct", "x"), None);
        // Whatever bitfields this kernel's task_struct has, none is offered as a byte field.
        let task = btf.struct_named("task_struct").unwrap();
        let bitfield = task
            .members
            .iter()
            .find(|m| m.bitfield_size().is_some_and(|b| b != 0 && b % 8 != 0))
            .map(|m| btf.btf.resolve_name(m).unwrap())
            .expect("task_struct has sub-byte bitfields");
        assert_eq!(btf.field("task_struct", &bitfield), None, "{bitfield}");
    }
}
