//! Struct member offsets from the running kernel's BTF, for the BPF programs' `.rodata`.

mod reader;

use std::path::{Path, PathBuf};

use ckpt_common::{ABSENT, KernelOffsets, OPS_MEMBERS};
use reader::{Btf, Kind, Type};

use crate::cache::{Cache, file_key};
use crate::kernel::bytes::Bytes;

/// Hops through typedefs and qualifiers before giving up: corrupt BTF can chain them in a cycle.
const MAX_CHAIN: usize = 32;
/// Depth of anonymous structs and unions searched for a member, for the same reason.
const MAX_NESTING: usize = 32;

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

/// What a scan needs of the running kernel's BTF: member offsets, and the ids of the functions
/// its programs attach to (an iterator attaches to `bpf_iter_<type>`).
pub struct LoadedBtf {
    pub offsets: KernelOffsets,
    /// The id of each function asked for, in order; `None` for one this kernel lacks.
    pub func_ids: Vec<Option<u32>>,
}

impl LoadedBtf {
    pub fn from_file(path: &Path, funcs: &[&str]) -> Result<Self, BtfError> {
        Self::from_bytes(read(path)?, path, funcs)
    }

    /// The same, and aya's own parse of the BTF (made at once, on another thread) for programs
    /// that attach by name: the daemon's BTF tracepoints attach to typedefs, which aya finds
    /// only in its full parse (~15 ms of CPU, which a scan does without).
    pub fn with_aya_btf(path: &Path, funcs: &[&str]) -> Result<(Self, aya::Btf), BtfError> {
        let bytes = read(path)?;
        std::thread::scope(|s| {
            let aya = s.spawn(|| aya::Btf::parse(&bytes, aya::Endianness::default()));
            let loaded = Self::from_bytes(bytes.clone(), path, funcs);
            let aya = aya.join().expect("parsing BTF does not panic");
            let aya = aya.map_err(|e| BtfError::Parse {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            Ok((loaded?, aya))
        })
    }

    /// As [`LoadedBtf::from_file`] for the running kernel's BTF ([`VMLINUX_BTF`]), kept in
    /// `cache` for the boot: the pass over ~5 MB of BTF cost every scan ~4.5 ms of CPU (perf,
    /// preflight), and a kernel's BTF does not change while it runs. The key names this
    /// ckpt-watch binary too ([`file_key`] of /proc/self/exe): another build may look up other
    /// members, or the same ones otherwise.
    pub fn of_running_kernel(cache: &Cache, funcs: &[&str]) -> Result<Self, BtfError> {
        let path = Path::new(VMLINUX_BTF);
        let key = kept_key(path, funcs);
        let kept = key.as_ref().and_then(|k| {
            let entry = cache.load(OFFSETS_FILE, OFFSETS_MAGIC, k.as_bytes())?;
            Self::from_payload(entry.payload(), funcs.len())
        });
        if let Some(loaded) = kept {
            return Ok(loaded);
        }
        let loaded = Self::from_file(path, funcs)?;
        if let Some(k) = key
            && let Err(e) =
                cache.store(OFFSETS_FILE, OFFSETS_MAGIC, k.as_bytes(), &loaded.payload())
        {
            tracing::debug!(error = %e, "BTF offsets not cached");
        }
        Ok(loaded)
    }

    /// The offsets' bytes, then each function's id (`u32::MAX` for none).
    fn payload(&self) -> Vec<u8> {
        // SAFETY: `KernelOffsets` is `#[repr(C)]` integers without padding (ckpt-common's layout
        // test), so every one of its bytes is initialised.
        let offsets = unsafe {
            std::slice::from_raw_parts(
                (&raw const self.offsets).cast::<u8>(),
                size_of::<KernelOffsets>(),
            )
        };
        let mut payload = offsets.to_vec();
        for id in &self.func_ids {
            payload.extend_from_slice(&id.unwrap_or(u32::MAX).to_ne_bytes());
        }
        payload
    }

    fn from_payload(payload: &[u8], funcs: usize) -> Option<Self> {
        let (offsets, ids) = payload.split_at_checked(size_of::<KernelOffsets>())?;
        if ids.len() != 4 * funcs {
            return None;
        }
        // SAFETY: as many bytes as a `KernelOffsets`, whose integers take any value (aya::Pod).
        let offsets = unsafe { std::ptr::read_unaligned(offsets.as_ptr().cast::<KernelOffsets>()) };
        let func_ids = ids
            .chunks_exact(4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or([0xff; 4])))
            .map(|id| (id != u32::MAX).then_some(id))
            .collect();
        Some(Self { offsets, func_ids })
    }

    fn from_bytes(bytes: Bytes, path: &Path, funcs: &[&str]) -> Result<Self, BtfError> {
        let btf = KernelBtf::from_bytes(bytes, path)?;
        Ok(Self {
            offsets: btf.offsets()?,
            func_ids: btf.btf.funcs_named(funcs),
        })
    }
}

const OFFSETS_FILE: &str = "btf-offsets";
const OFFSETS_MAGIC: &[u8] = b"ckpt-watch btf offsets 1\n";

/// What offsets found in `path` for `funcs` depend on: the boot (the kernel's BTF is fixed
/// while it runs), the file's size, this binary, and the functions asked for. `None` when one
/// of them cannot be told.
fn kept_key(path: &Path, funcs: &[&str]) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let btf = std::fs::metadata(path).ok()?;
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    Some(format!(
        "boot {}\nbtf {}\nexe {}\nfuncs {}\n",
        boot.trim(),
        btf.len(),
        file_key(&exe),
        funcs.join(" ")
    ))
}

/// `statfs.f_type` of sysfs.
const SYSFS_MAGIC: u64 = 0x6265_6572;

/// The BTF at `path`. The kernel's own, on sysfs, is mapped where the kernel allows it (read-only
/// and private, Linux ≥ 6.16): that spares copying ~5 MB into fresh pages at every start (3 ms
/// of CPU, measured). Anything else, or where mapping fails, is read.
fn read(path: &Path) -> Result<Bytes, BtfError> {
    let error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => BtfError::Missing(path.to_path_buf()),
        _ => BtfError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    };
    let mut file = std::fs::File::open(path).map_err(error)?;
    let on_sysfs = rustix::fs::fstatfs(&file).is_ok_and(|s| s.f_type as u64 == SYSFS_MAGIC);
    if on_sysfs {
        // SAFETY: a sysfs BTF file is the kernel's (or a module's) BTF, which never changes
        // while it is loaded, so the mapping's bytes never change under the parser.
        match unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) } {
            Ok(map) => return Ok(Bytes::mapped(map)),
            Err(e) => tracing::debug!(error = %e, "kernel BTF not mapped; reading it"),
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(error)?;
    Ok(bytes.into())
}

impl KernelBtf {
    fn from_bytes(bytes: impl Into<Bytes>, path: &Path) -> Result<Self, BtfError> {
        let btf = Btf::parse(bytes).map_err(|e| BtfError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self { btf })
    }

    /// Type `id` with typedefs and qualifiers stripped.
    fn concrete(&self, id: u32) -> Option<Type> {
        let mut t = self.btf.type_by_id(id)?;
        for _ in 0..MAX_CHAIN {
            match t.kind {
                Kind::Typedef | Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag => {
                    t = self.btf.type_by_id(t.size_or_type)?;
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn size_of(t: &Type) -> Option<u32> {
        match t.kind {
            Kind::Int | Kind::Enum | Kind::Enum64 | Kind::Struct | Kind::Union => {
                Some(t.size_or_type)
            }
            Kind::Ptr => Some(8),
            Kind::Array => Some(0),
            _ => None,
        }
    }

    /// Finds `name` among `s`'s members, descending into anonymous structs and unions.
    /// Returns the member's bit offset relative to `s`, bitfield size, and type id.
    fn find_member(&self, s: &Type, name: &str, depth: usize) -> Option<(u32, Option<u32>, u32)> {
        for m in self.btf.members(s) {
            let Some(mname) = self.btf.name(m.name_off) else {
                continue;
            };
            if mname == name {
                return Some((m.bit_offset, m.bitfield_size, m.type_id));
            }
            if mname.is_empty()
                && depth < MAX_NESTING
                && let Some(inner) = self.concrete(m.type_id)
                && matches!(inner.kind, Kind::Struct | Kind::Union)
                && let Some((off, bits, t)) = self.find_member(&inner, name, depth + 1)
            {
                return Some((m.bit_offset.checked_add(off)?, bits, t));
            }
        }
        None
    }

    /// Resolves a dotted member path (`f_path.dentry`) in struct `strukt`. Bitfields and
    /// members not on a byte boundary are reported as absent: the BPF side reads whole bytes.
    pub fn field(&self, strukt: &str, path: &str) -> Option<Field> {
        let mut current = self.btf.struct_named(strukt)?;
        let mut bit_offset: u32 = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let (off, bits, type_id) = self.find_member(&current, part, 0)?;
            bit_offset = bit_offset.checked_add(off)?;
            let t = self.concrete(type_id)?;
            if parts.peek().is_none() {
                if bits.is_some() || !bit_offset.is_multiple_of(8) {
                    return None;
                }
                return Some(Field {
                    offset: bit_offset / 8,
                    size: Self::size_of(&t)?,
                });
            }
            match t.kind {
                Kind::Struct | Kind::Union => current = t,
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
        k.task_group_leader = o(8, "task_struct", "group_leader");
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
        k.flctx_lease = o(0, "file_lock_context", "flc_lease");
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
        k.bpf_map_map_type = o(4, "bpf_map", "map_type");
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
        k.regs_r8 = o(8, "pt_regs", "r8");
        k.regs_bx = o(8, "pt_regs", "bx");
        k.regs_cx = o(8, "pt_regs", "cx");
        k.regs_dx = o(8, "pt_regs", "dx");
        k.task_ti_status = o(4, "task_struct", "thread_info.status");
        k.task_cgroups = o(8, "task_struct", "cgroups");
        k.css_set_dfl_cgrp = o(8, "css_set", "dfl_cgrp");
        k.cgroup_level = o(4, "cgroup", "level");
        k.cgroup_ancestors = o(0, "cgroup", "ancestors");
        if k.cgroup_ancestors == ABSENT {
            k.cgroup_ancestors = o(0, "cgroup", "ancestor_ids");
            if k.cgroup_ancestors != ABSENT {
                k.flags |= ckpt_common::FLAG_CGROUP_ANCESTOR_IDS;
            }
        }
        k.cgroup_kn = o(8, "cgroup", "kn");
        k.kernfs_node_id = o(8, "kernfs_node", "id");
        k.pid_tasks = o(0, "pid", "tasks");
        // What CRIU's SO_GET_FILTER and UDP_CORK see (criu/sockets.c, criu/sk-inet.c), and the
        // queue lengths sock_diag reports.
        k.sock_sk_filter = o(8, "sock", "sk_filter");
        k.sk_filter_prog = o(8, "sk_filter", "prog");
        k.bpf_prog_orig_prog = o(8, "bpf_prog", "orig_prog");
        k.sock_wmem_alloc = o(4, "sock", "sk_wmem_alloc");
        k.sock_rmem_alloc = o(4, "sock", "sk_backlog.rmem_alloc");
        k.udp_cork = o(8, "udp_sock", "udp_flags");
        if k.udp_cork == ABSENT {
            k.udp_cork = o(4, "udp_sock", "corkflag");
        } else {
            k.flags |= ckpt_common::FLAG_UDP_FLAGS;
        }
        // What /proc/PID/status and /proc/PID/ns/* tell of a process (fs/proc/array.c).
        k.task_real_parent = o(8, "task_struct", "real_parent");
        k.task_parent = o(8, "task_struct", "parent");
        k.task_ptrace = o(4, "task_struct", "ptrace");
        k.task_signal = o(8, "task_struct", "signal");
        k.task_real_cred = o(8, "task_struct", "real_cred");
        k.task_comm = o(0, "task_struct", "comm");
        k.task_thread_pid = o(8, "task_struct", "thread_pid");
        k.task_mm = o(8, "task_struct", "mm");
        k.signal_pids = o(0, "signal_struct", "pids");
        k.signal_live = o(4, "signal_struct", "live");
        let pid_type = |name| {
            self.btf
                .enum_value("pid_type", name)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(ABSENT)
        };
        k.pidtype_pgid = pid_type("PIDTYPE_PGID");
        k.pidtype_sid = pid_type("PIDTYPE_SID");
        k.cred_uid = o(4, "cred", "uid");
        k.cred_euid = o(4, "cred", "euid");
        k.cred_suid = o(4, "cred", "suid");
        k.cred_gid = o(4, "cred", "gid");
        k.cred_egid = o(4, "cred", "egid");
        k.cred_sgid = o(4, "cred", "sgid");
        k.nsproxy_net_ns = o(8, "nsproxy", "net_ns");
        k.nsproxy_ipc_ns = o(8, "nsproxy", "ipc_ns");
        k.net_ns_inum = o(4, "net", "ns.inum");
        k.ipc_ns_inum = o(4, "ipc_namespace", "ns.inum");
        k.pidns_inum = o(4, "pid_namespace", "ns.inum");
        k.pid_level = o(4, "pid", "level");
        k.upid_ns = o(8, "upid", "ns");
        k.upid_size = self
            .btf
            .struct_named("upid")
            .and_then(|t| Self::size_of(&t))
            .unwrap_or(ABSENT);
        if self
            .btf
            .enum_value("bpf_func_id", "BPF_FUNC_get_current_task_btf")
            .is_some()
        {
            k.flags |= ckpt_common::FLAG_CURRENT_TASK_BTF;
        }
        if self
            .btf
            .enum_value("bpf_func_id", "BPF_FUNC_sock_from_file")
            .is_some()
        {
            k.flags |= ckpt_common::FLAG_SOCK_FROM_FILE;
        }
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
    use super::reader::blob::*;
    use super::*;

    fn parse(b: &Blob) -> KernelBtf {
        KernelBtf::from_bytes(b.build(), Path::new("blob")).expect("blob parses")
    }

    #[test]
    fn anonymous_members_are_searched_in_place() {
        // struct outer { int a; union { long b; struct { char c; char d; }; }; };
        let mut b = Blob::new();
        let int = b.ty("int", INT, 0, 4, &[32]);
        let long = b.ty("long", INT, 0, 8, &[64]);
        let char = b.ty("char", INT, 0, 1, &[8]);
        let inner = b.composite("", false, 2, &[("c", char, 0), ("d", char, 8)]);
        let anon = b.composite("", true, 8, &[("b", long, 0), ("", inner, 0)]);
        b.composite("outer", false, 16, &[("a", int, 0), ("", anon, 64)]);
        let btf = parse(&b);
        assert_eq!(btf.field("outer", "a"), Some(Field { offset: 0, size: 4 }));
        assert_eq!(btf.field("outer", "b"), Some(Field { offset: 8, size: 8 }));
        assert_eq!(btf.field("outer", "c"), Some(Field { offset: 8, size: 1 }));
        assert_eq!(btf.field("outer", "d"), Some(Field { offset: 9, size: 1 }));
        assert_eq!(btf.field("outer", "e"), None);
        assert_eq!(btf.field("outer", "a.b"), None, "int has no members");
    }

    /// typedef struct inner { int x; long y; } inner_t;
    /// struct s { const inner_t *p; restrict const volatile __tag inner_t in; u64 n; };
    fn qualified() -> Blob {
        let mut b = Blob::new();
        let int = b.ty("int", INT, 0, 4, &[32]);
        let long = b.ty("long", INT, 0, 8, &[64]);
        let inner = b.composite("inner", false, 16, &[("x", int, 0), ("y", long, 64)]);
        let inner_t = b.ty("inner_t", TYPEDEF, 0, inner, &[]);
        let tagged = b.ty("rcu", TYPE_TAG, 0, inner_t, &[]);
        let volatile = b.ty("", VOLATILE, 0, tagged, &[]);
        let konst = b.ty("", CONST, 0, volatile, &[]);
        let restrict = b.ty("", RESTRICT, 0, konst, &[]);
        let ptr = b.ty("", PTR, 0, konst, &[]);
        let u64_t = b.ty("u64", TYPEDEF, 0, long, &[]);
        let members = [("p", ptr, 0), ("in", restrict, 64), ("n", u64_t, 192)];
        b.composite("s", false, 32, &members);
        b
    }

    #[test]
    fn typedefs_and_qualifiers_are_stripped_along_a_path() {
        let btf = parse(&qualified());
        assert_eq!(btf.field("s", "p"), Some(Field { offset: 0, size: 8 }));
        assert_eq!(
            btf.field("s", "in"),
            Some(Field {
                offset: 8,
                size: 16
            })
        );
        assert_eq!(
            btf.field("s", "in.y"),
            Some(Field {
                offset: 16,
                size: 8
            })
        );
        assert_eq!(
            btf.field("s", "n"),
            Some(Field {
                offset: 24,
                size: 8
            })
        );
        assert_eq!(btf.field("s", "p.x"), None, "pointers are not followed");
        assert_eq!(
            btf.field("inner_t", "x"),
            None,
            "a typedef is not a struct name"
        );
    }

    #[test]
    fn bitfields_and_unaligned_members_are_absent() {
        let mut b = Blob::new();
        let int = b.ty("int", INT, 0, 4, &[32]);
        // With the kind flag: a 3-bit field, a byte-aligned 8-bit field, then a plain int.
        let members = [("a", int, 0, 3), ("b", int, 8, 8), ("c", int, 32, 0)];
        b.bitfield_struct("flags", 8, &members);
        // Without it, only the bit offset tells.
        b.composite("old", false, 8, &[("x", int, 4), ("y", int, 32)]);
        let btf = parse(&b);
        assert_eq!(btf.field("flags", "a"), None);
        assert_eq!(btf.field("flags", "b"), None);
        assert_eq!(btf.field("flags", "c"), Some(Field { offset: 4, size: 4 }));
        assert_eq!(btf.field("old", "x"), None);
        assert_eq!(btf.field("old", "y"), Some(Field { offset: 4, size: 4 }));
    }

    #[test]
    fn type_cycles_end_in_absence() {
        let mut b = Blob::new();
        // Two typedefs naming each other (ids 1 and 2), an anonymous struct containing itself
        // (id 3), and a struct using both.
        b.ty("a_t", TYPEDEF, 0, 2, &[]);
        b.ty("b_t", TYPEDEF, 0, 1, &[]);
        b.composite("", false, 4, &[("", 3, 0)]);
        b.composite("s", false, 4, &[("loop", 1, 0), ("", 3, 0)]);
        let btf = parse(&b);
        assert_eq!(btf.field("s", "loop"), None);
        assert_eq!(btf.field("s", "x"), None);
    }

    #[test]
    fn corrupt_blobs_never_panic_a_lookup() {
        let bytes = qualified().build();
        for i in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] = value;
                if let Ok(btf) = KernelBtf::from_bytes(bad, Path::new("blob")) {
                    for path in ["p", "in", "in.y", "n", "p.x", "in.x.y"] {
                        let _ = btf.field("s", path);
                    }
                }
            }
        }
    }

    #[test]
    fn blob_without_core_members_is_a_required_error() {
        let err = parse(&Blob::new())
            .offsets()
            .expect_err("nothing to offset");
        assert!(matches!(err, BtfError::Required("file.f_op")), "{err}");
    }

    #[test]
    fn bad_magic_is_a_parse_error_naming_the_file() {
        let mut bytes = Blob::new().build();
        bytes[0] = 0;
        let err = KernelBtf::from_bytes(bytes, Path::new("/x/vmlinux"))
            .err()
            .unwrap();
        assert!(matches!(err, BtfError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("/x/vmlinux: bad magic"), "{err}");
    }

    fn host() -> Option<KernelBtf> {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("skipped: {VMLINUX_BTF} absent (kernel without CONFIG_DEBUG_INFO_BTF)");
            return None;
        }
        let bytes = read(path).expect("host BTF reads");
        Some(KernelBtf::from_bytes(bytes, path).expect("host BTF parses"))
    }

    /// Each function's id is the one aya's full parse finds by name, which programs attached
    /// by name get; one the kernel lacks has none.
    #[test]
    fn func_ids_are_the_ids_aya_finds_by_name() {
        use aya_obj::btf::BtfKind;
        if host().is_none() {
            return;
        }
        let funcs = ["bpf_iter_task_file", "do_sys_openat2", "no_such_function"];
        let (loaded, full) = LoadedBtf::with_aya_btf(Path::new(VMLINUX_BTF), &funcs).unwrap();
        let by_name = funcs.map(|f| full.id_by_type_name_kind(f, BtfKind::Func).ok());
        assert_eq!(loaded.func_ids, by_name);
        assert!(loaded.func_ids[0].is_some_and(|id| id > 0));
        assert_eq!(loaded.func_ids[2], None);
        let alone = LoadedBtf::from_file(Path::new(VMLINUX_BTF), &funcs).unwrap();
        assert_eq!(alone.func_ids, loaded.func_ids);
        assert_eq!(alone.offsets, loaded.offsets);
    }

    /// Linux 6.16 lets /sys/kernel/btf/vmlinux be mapped (kernel/bpf/sysfs_btf.c).
    /// Offsets kept for the boot are those a pass finds, and a kept record stands for the
    /// pass while its key holds; other functions asked for are another key.
    #[test]
    fn kept_offsets_are_those_found_and_stand_for_the_pass() {
        if host().is_none() {
            return;
        }
        let funcs = ["bpf_iter_task_file", "no_such_function"];
        let fresh = LoadedBtf::from_file(Path::new(VMLINUX_BTF), &funcs).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(&dir.path().join("c"));
        for _ in 0..2 {
            let loaded = LoadedBtf::of_running_kernel(&cache, &funcs).unwrap();
            assert_eq!(loaded.offsets, fresh.offsets);
            assert_eq!(loaded.func_ids, fresh.func_ids);
        }
        assert!(fresh.func_ids[0].is_some() && fresh.func_ids[1].is_none());
        // A planted record is what comes back: the pass is not made again.
        let mut planted = LoadedBtf {
            offsets: fresh.offsets,
            func_ids: vec![Some(7), None],
        };
        planted.offsets.file_f_op = 4242;
        let key = kept_key(Path::new(VMLINUX_BTF), &funcs).unwrap();
        cache
            .store(
                OFFSETS_FILE,
                OFFSETS_MAGIC,
                key.as_bytes(),
                &planted.payload(),
            )
            .unwrap();
        let kept = LoadedBtf::of_running_kernel(&cache, &funcs).unwrap();
        assert_eq!(
            (kept.offsets.file_f_op, kept.func_ids),
            (4242, vec![Some(7), None])
        );
        let other = LoadedBtf::of_running_kernel(&cache, &funcs[..1]).unwrap();
        assert_eq!(
            (other.offsets, other.func_ids),
            (fresh.offsets, vec![fresh.func_ids[0]])
        );
        assert!(
            LoadedBtf::from_payload(&planted.payload(), 3).is_none(),
            "another length"
        );
    }

    #[test]
    fn kernel_btf_is_mapped_where_the_kernel_allows_it_and_reads_the_same() {
        if host().is_none() {
            return;
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut numbers = release.split(|c: char| !c.is_ascii_digit());
        let mut next = || numbers.next().and_then(|n| n.parse::<u32>().ok()).unwrap();
        let version = (next(), next());
        let bytes = read(Path::new(VMLINUX_BTF)).unwrap();
        assert_eq!(bytes.is_mapped(), version >= (6, 16), "Linux {release}");
        assert!(*bytes == *std::fs::read(VMLINUX_BTF).unwrap());
        // A file elsewhere is read, never mapped: only sysfs promises not to change it.
        let file = tempfile::Builder::new()
            .prefix("ckpt-btf-")
            .tempfile()
            .unwrap();
        std::fs::write(file.path(), &*bytes).unwrap();
        let copy = read(file.path()).unwrap();
        assert!(!copy.is_mapped());
        assert!(*copy == *bytes);
    }

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = LoadedBtf::from_file(Path::new("/nonexistent/vmlinux"), &[])
            .err()
            .expect("missing file is an error");
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn garbage_btf_is_a_parse_error() {
        let file = tempfile::Builder::new()
            .prefix("ckpt-btf-")
            .tempfile()
            .unwrap();
        std::fs::write(file.path(), b"not btf at all").unwrap();
        let err = LoadedBtf::from_file(file.path(), &[])
            .err()
            .expect("garbage fails");
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
        // 5.11+: the tracing programs read the current task through its BTF type.
        assert_ne!(k.flags & ckpt_common::FLAG_CURRENT_TASK_BTF, 0);
        assert_ne!(k.flags & ckpt_common::FLAG_SOCK_FROM_FILE, 0);
        for (name, off) in [
            ("i_flctx", k.inode_i_flctx),
            ("unix_sock.peer", k.unix_peer),
            ("mount.mnt", k.mount_mnt),
            ("vm_area_struct.vm_file", k.vma_vm_file),
            ("file_lock list", k.lock_list),
            ("tty_struct.index", k.tty_index),
            ("bpf_map.map_type", k.bpf_map_map_type),
            ("pid.tasks", k.pid_tasks),
            ("sock.sk_filter", k.sock_sk_filter),
            ("sk_filter.prog", k.sk_filter_prog),
            ("bpf_prog.orig_prog", k.bpf_prog_orig_prog),
            ("sock.sk_wmem_alloc", k.sock_wmem_alloc),
            ("sock.sk_backlog.rmem_alloc", k.sock_rmem_alloc),
            ("udp_sock cork", k.udp_cork),
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
        let task = btf.btf.struct_named("task_struct").unwrap();
        let bitfield = btf
            .btf
            .members(&task)
            .find(|m| m.bitfield_size.is_some_and(|b| b % 8 != 0))
            .and_then(|m| btf.btf.name(m.name_off))
            .expect("task_struct has sub-byte bitfields");
        assert_eq!(btf.field("task_struct", bitfield), None, "{bitfield}");
    }
}
