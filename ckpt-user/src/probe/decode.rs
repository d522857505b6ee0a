//! Splits the iterators' byte stream into records by their leading tag.

use std::collections::HashMap;

use ckpt_common::{
    FileFacts, N_OPS_MEMBERS, OpsRecord, TAG_FILE, TAG_OPS, TAG_TASK, TAG_VMA, TaskEvent, VmaFacts,
};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("BPF iterator output is corrupt at byte {offset}: unknown record tag {tag:#x}")]
    UnknownTag { offset: usize, tag: u32 },
    #[error("BPF iterator output ends inside a record at byte {offset}")]
    Truncated { offset: usize },
}

/// The records of one iteration, as the kernel wrote them.
#[derive(Debug, Default)]
pub struct RawSnapshot {
    pub files: Vec<FileFacts>,
    pub vmas: Vec<VmaFacts>,
    /// Member function addresses per ops table (`f_op`), in [`ckpt_common::OPS_MEMBERS`] order.
    pub ops: HashMap<u64, [u64; N_OPS_MEMBERS]>,
}

fn take<T: Copy>(buf: &[u8], offset: usize) -> Result<T, DecodeError> {
    let end = offset + std::mem::size_of::<T>();
    if end > buf.len() {
        return Err(DecodeError::Truncated { offset });
    }
    // SAFETY: the range is in bounds and T is a padding-free #[repr(C)] record of integers, valid
    // for any bits; read_unaligned because the Vec<u8> promises no alignment.
    Ok(unsafe { std::ptr::read_unaligned(buf[offset..end].as_ptr().cast::<T>()) })
}

/// One ring-buffer record of the live event programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Installed(FileFacts),
    Ops(u64, [u64; N_OPS_MEMBERS]),
    Task(TaskEvent),
}

/// Decodes one ring-buffer item.
pub fn decode_event(buf: &[u8]) -> Result<Event, DecodeError> {
    match take::<u32>(buf, 0)? {
        TAG_FILE => Ok(Event::Installed(take(buf, 0)?)),
        TAG_OPS => {
            let rec: OpsRecord = take(buf, 0)?;
            Ok(Event::Ops(rec.f_op, rec.members))
        }
        TAG_TASK => Ok(Event::Task(take(buf, 0)?)),
        tag => Err(DecodeError::UnknownTag { offset: 0, tag }),
    }
}

pub fn decode(buf: &[u8]) -> Result<RawSnapshot, DecodeError> {
    let mut snap = RawSnapshot {
        files: Vec::with_capacity(buf.len() / std::mem::size_of::<FileFacts>()),
        ..Default::default()
    };
    let mut offset = 0;
    while offset < buf.len() {
        let tag: u32 = take(buf, offset)?;
        match tag {
            TAG_FILE => {
                snap.files.push(take(buf, offset)?);
                offset += std::mem::size_of::<FileFacts>();
            }
            TAG_VMA => {
                snap.vmas.push(take(buf, offset)?);
                offset += std::mem::size_of::<VmaFacts>();
            }
            TAG_OPS => {
                let rec: OpsRecord = take(buf, offset)?;
                snap.ops.insert(rec.f_op, rec.members);
                offset += std::mem::size_of::<OpsRecord>();
            }
            tag => return Err(DecodeError::UnknownTag { offset, tag }),
        }
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_common::{FS_TYPE_LEN, NAME_LEN};

    fn bytes<T>(v: &T) -> &[u8] {
        // SAFETY: test records are plain #[repr(C)] integers.
        unsafe { std::slice::from_raw_parts((v as *const T).cast(), std::mem::size_of::<T>()) }
    }

    fn file(fd: u32) -> FileFacts {
        FileFacts {
            tag: TAG_FILE,
            tgid: 42,
            tid: 42,
            fd,
            f_op: 0xffff_0000,
            ino: 7,
            size: 0,
            blocks: 0,
            s_magic: 0,
            rdev: 0,
            dev: 0,
            mode: 0o100644,
            nlink: 1,
            f_flags: 0,
            known: 0,
            flags: 0,
            mnt_id: 0,
            sk_family: 0,
            sk_type: 0,
            sk_protocol: 0,
            sk_state: 0,
            sk_backlog: 0,
            peer_state: 0,
            peer_ino: 0,
            aux: 0,
            fs_type: [0; FS_TYPE_LEN],
            name: [0; NAME_LEN],
            sk_wqueue: 0,
            sk_rqueue: 0,
        }
    }

    #[test]
    fn decodes_interleaved_records() {
        let ops = OpsRecord {
            tag: TAG_OPS,
            _pad: 0,
            f_op: 0xffff_0000,
            members: [1; N_OPS_MEMBERS],
        };
        let mut buf = Vec::new();
        buf.extend_from_slice(bytes(&ops));
        buf.extend_from_slice(bytes(&file(3)));
        buf.extend_from_slice(bytes(&file(4)));
        let snap = decode(&buf).unwrap();
        assert_eq!(snap.files.iter().map(|f| f.fd).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(snap.ops[&0xffff_0000], [1; N_OPS_MEMBERS]);
    }

    #[test]
    fn truncated_and_unknown_records_are_errors() {
        let mut buf = bytes(&file(3)).to_vec();
        buf.truncate(buf.len() - 1);
        assert!(matches!(
            decode(&buf),
            Err(DecodeError::Truncated { offset: 0 })
        ));
        assert!(matches!(
            decode(&[1, 2, 3, 4]),
            Err(DecodeError::UnknownTag {
                offset: 0,
                tag: 0x0403_0201
            })
        ));
    }
}
