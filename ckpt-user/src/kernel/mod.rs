//! Facts about the running kernel: BTF offsets, kernel symbols, and whether we may load BPF.

pub mod btf;
pub mod bytes;
pub mod kallsyms;
pub mod kallsyms_cache;
pub mod privileges;
