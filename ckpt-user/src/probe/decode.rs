//! Splits the iterators' byte stream into records by their leading tag.

use ckpt_common::{
    FILE_FACTS_NO_SOCK_LEN, FileFacts, N_OPS_MEMBERS, OpsRecord, ProcFacts, TAG_FILE,
    TAG_FILE_NO_SOCK, TAG_OPS, TAG_PROC, TAG_TABLE, TAG_TASK, TAG_VMA, TableRecord, TaskEvent,
    VmaFacts,
};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("BPF iterator output is corrupt at byte {offset}: unknown record tag {tag:#x}")]
    UnknownTag { offset: usize, tag: u32 },
    #[error("BPF iterator output ends inside a record at byte {offset}")]
    Truncated { offset: usize },
}

/// One record of an iteration, as the kernel wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    File(FileFacts),
    Vma(VmaFacts),
    /// An ops table (`f_op`) and its member function addresses, in
    /// [`ckpt_common::OPS_MEMBERS`] order.
    Ops(u64, [u64; N_OPS_MEMBERS]),
    /// A process, from `iter/task`.
    Proc(ProcFacts),
    /// Process `tgid`'s fd table, from the daemon's file walk.
    Table {
        tgid: u32,
        files: u64,
    },
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

/// A [`TAG_FILE_NO_SOCK`] record at `offset`, its missing socket members zero: the same facts
/// as the whole record of that file.
fn take_no_sock(buf: &[u8], offset: usize) -> Result<FileFacts, DecodeError> {
    let mut whole = [0u8; std::mem::size_of::<FileFacts>()];
    let short = buf
        .get(offset..offset + FILE_FACTS_NO_SOCK_LEN)
        .ok_or(DecodeError::Truncated { offset })?;
    whole[..FILE_FACTS_NO_SOCK_LEN].copy_from_slice(short);
    let mut rec: FileFacts = take(&whole, 0)?;
    rec.tag = TAG_FILE;
    Ok(rec)
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

/// Decodes the whole records at the start of `buf`, a piece of an iterator's stream that
/// begins `base` bytes into it, handing each to `each`; returns how many bytes they took. A
/// record cut at the end of `buf` is left for the next piece.
pub fn decode_records(
    buf: &[u8],
    base: usize,
    each: &mut dyn FnMut(Record),
) -> Result<usize, DecodeError> {
    let mut offset = 0;
    while offset + std::mem::size_of::<u32>() <= buf.len() {
        let tag: u32 = take(buf, offset)?;
        let size = match tag {
            TAG_FILE => std::mem::size_of::<FileFacts>(),
            TAG_FILE_NO_SOCK => FILE_FACTS_NO_SOCK_LEN,
            TAG_VMA => std::mem::size_of::<VmaFacts>(),
            TAG_OPS => std::mem::size_of::<OpsRecord>(),
            TAG_PROC => std::mem::size_of::<ProcFacts>(),
            TAG_TABLE => std::mem::size_of::<TableRecord>(),
            tag => {
                return Err(DecodeError::UnknownTag {
                    offset: base + offset,
                    tag,
                });
            }
        };
        if offset + size > buf.len() {
            break;
        }
        each(match tag {
            TAG_FILE => Record::File(take(buf, offset)?),
            TAG_FILE_NO_SOCK => Record::File(take_no_sock(buf, offset)?),
            TAG_VMA => Record::Vma(take(buf, offset)?),
            TAG_PROC => Record::Proc(take(buf, offset)?),
            TAG_TABLE => {
                let rec: TableRecord = take(buf, offset)?;
                Record::Table {
                    tgid: rec.tgid,
                    files: rec.files,
                }
            }
            _ => {
                let rec: OpsRecord = take(buf, offset)?;
                Record::Ops(rec.f_op, rec.members)
            }
        });
        offset += size;
    }
    Ok(offset)
}

/// An iterator's stream decoded piece by piece, as reads return it: a record cut across two
/// pieces is kept until its end comes.
#[derive(Default)]
pub struct StreamDecoder {
    /// The start of a record the pieces so far did not finish.
    carry: Vec<u8>,
    /// Bytes of the stream decoded so far.
    decoded: usize,
}

impl StreamDecoder {
    /// Hands `each` every record that `piece` (the next bytes of the stream) completes.
    pub fn feed(&mut self, piece: &[u8], each: &mut dyn FnMut(Record)) -> Result<(), DecodeError> {
        if self.carry.is_empty() {
            let used = decode_records(piece, self.decoded, each)?;
            self.decoded += used;
            self.carry.extend_from_slice(&piece[used..]);
        } else {
            self.carry.extend_from_slice(piece);
            let used = decode_records(&self.carry, self.decoded, each)?;
            self.decoded += used;
            self.carry.drain(..used);
        }
        Ok(())
    }

    /// The stream has ended: an error if it ended inside a record.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.carry.is_empty() {
            true => Ok(()),
            false => Err(DecodeError::Truncated {
                offset: self.decoded,
            }),
        }
    }
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
            time: 0,
        }
    }

    fn decode(buf: &[u8]) -> Result<(Vec<Record>, usize), DecodeError> {
        let mut records = Vec::new();
        let used = decode_records(buf, 0, &mut |r| records.push(r))?;
        Ok((records, used))
    }

    fn ops_record() -> OpsRecord {
        OpsRecord {
            tag: TAG_OPS,
            _pad: 0,
            f_op: 0xffff_0000,
            members: [1; N_OPS_MEMBERS],
        }
    }

    #[test]
    fn decodes_interleaved_records() {
        let ops = ops_record();
        let table = TableRecord {
            tag: TAG_TABLE,
            tgid: 42,
            files: 0xffff_8888_0000_1000,
        };
        let mut buf = Vec::new();
        buf.extend_from_slice(bytes(&table));
        buf.extend_from_slice(bytes(&ops));
        buf.extend_from_slice(bytes(&file(3)));
        buf.extend_from_slice(bytes(&file(4)));
        let (records, used) = decode(&buf).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(
            records,
            [
                Record::Table {
                    tgid: 42,
                    files: 0xffff_8888_0000_1000
                },
                Record::Ops(0xffff_0000, [1; N_OPS_MEMBERS]),
                Record::File(file(3)),
                Record::File(file(4))
            ]
        );
    }

    /// `f` as the iterator writes a file that is no socket.
    fn no_sock_bytes(f: &FileFacts) -> Vec<u8> {
        let short = FileFacts {
            tag: TAG_FILE_NO_SOCK,
            ..*f
        };
        bytes(&short)[..FILE_FACTS_NO_SOCK_LEN].to_vec()
    }

    fn socket(fd: u32) -> FileFacts {
        FileFacts {
            mode: 0o140777,
            known: ckpt_common::known::SOCKET,
            sk_family: 1,
            sk_type: 1,
            peer_ino: 99,
            sk_rqueue: 5,
            ..file(fd)
        }
    }

    /// A record cut by the end of a read waits for the next piece, wherever the cut falls; a
    /// short record and a whole one give the same facts.
    #[test]
    fn a_cut_record_is_left_for_the_next_piece() {
        let mut stream = no_sock_bytes(&file(3));
        stream.extend_from_slice(bytes(&socket(4)));
        stream.extend_from_slice(&no_sock_bytes(&file(5)));
        for cut in 0..stream.len() {
            let mut records = Vec::new();
            let first = decode_records(&stream[..cut], 0, &mut |r| records.push(r)).unwrap();
            let rest = decode_records(&stream[first..], first, &mut |r| records.push(r)).unwrap();
            assert_eq!(first + rest, stream.len(), "cut at {cut}");
            assert_eq!(
                records,
                [
                    Record::File(file(3)),
                    Record::File(socket(4)),
                    Record::File(file(5))
                ]
            );
        }
    }

    /// Pieces of any sizes, records cut anywhere, give the records once each and in order.
    #[test]
    fn a_stream_in_pieces_gives_each_record_once() {
        let ops = ops_record();
        let mut stream = bytes(&ops).to_vec();
        (3..9).for_each(|fd| stream.extend_from_slice(bytes(&file(fd))));
        let mut expected = vec![Record::Ops(0xffff_0000, [1; N_OPS_MEMBERS])];
        expected.extend((3..9).map(|fd| Record::File(file(fd))));
        for piece in [1, 7, 100, 191, 192, 193, 500, stream.len()] {
            let mut decoder = StreamDecoder::default();
            let mut records = Vec::new();
            for p in stream.chunks(piece) {
                decoder.feed(p, &mut |r| records.push(r)).unwrap();
            }
            decoder.finish().unwrap();
            assert_eq!(records, expected, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn a_stream_ending_inside_a_record_is_truncated_where_that_record_began() {
        let mut stream = bytes(&file(3)).to_vec();
        stream.extend_from_slice(&bytes(&file(4))[..100]);
        let mut decoder = StreamDecoder::default();
        let mut records = Vec::new();
        for p in stream.chunks(150) {
            decoder.feed(p, &mut |r| records.push(r)).unwrap();
        }
        assert_eq!(records, [Record::File(file(3))]);
        assert!(matches!(
            decoder.finish(),
            Err(DecodeError::Truncated { offset }) if offset == size_of::<FileFacts>()
        ));
    }

    #[test]
    fn unknown_records_are_errors_with_their_offset() {
        let mut buf = bytes(&file(3)).to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4]);
        assert!(matches!(
            decode(&buf),
            Err(DecodeError::UnknownTag {
                offset,
                tag: 0x0403_0201
            }) if offset == size_of::<FileFacts>()
        ));
        let mut records = Vec::new();
        assert!(matches!(
            decode_records(&[1, 2, 3, 4], 1000, &mut |r| records.push(r)),
            Err(DecodeError::UnknownTag { offset: 1000, .. })
        ));
    }
}
