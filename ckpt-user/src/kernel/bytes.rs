//! A file's bytes, mapped or read: the kernel's BTF and the kallsyms index kept between runs
//! are read in place when the file can be mapped, and copied only when it cannot.

use std::ops::Deref;
use std::sync::Arc;

/// Bytes mapped from a file or read into memory; clones share them.
#[derive(Clone)]
pub struct Bytes(Arc<Storage>);

enum Storage {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl Bytes {
    pub fn mapped(map: memmap2::Mmap) -> Self {
        Self(Arc::new(Storage::Mapped(map)))
    }

    #[cfg(test)]
    pub fn is_mapped(&self) -> bool {
        matches!(*self.0, Storage::Mapped(_))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Storage::Read(bytes)))
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &*self.0 {
            Storage::Mapped(map) => map,
            Storage::Read(bytes) => bytes,
        }
    }
}
