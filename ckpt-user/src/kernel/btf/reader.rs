//! A minimal reader for the BTF type format (`include/uapi/linux/btf.h`), little-endian only.
//!
//! Built for one job, member offsets, and for speed: parsing makes a single pass that records
//! where each type starts and indexes the named structs, unions and enums; types, members and names
//! are decoded only when asked for. (A general-purpose parser that decodes all ~125k types of
//! a 6.x vmlinux up front takes ~80 ms.) Every read is bounds-checked, so truncated or corrupt
//! input yields [`ReadError`] or `None`, never a panic. Split BTF (kernel modules, whose ids and
//! string offsets continue a base BTF) is not supported: only vmlinux is read.

use std::collections::HashMap;
use std::ops::Range;

use crate::kernel::bytes::Bytes;

const MAGIC: u16 = 0xEB9F;
const VERSION: u8 = 1;
/// The fixed `struct btf_header`; `hdr_len` may announce a longer one.
const HEADER_LEN: usize = 24;
/// The `struct btf_type` common to every kind, before its kind-specific trailer.
const TYPE_LEN: usize = 12;
/// `struct btf_member`.
const MEMBER_LEN: usize = 12;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum ReadError {
    #[error("bad magic {0:#06x}: not BTF (0xeb9f), or BTF of a big-endian machine")]
    BadMagic(u16),
    #[error("unsupported BTF version {0} (only version 1 is known)")]
    Version(u8),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("type {id} runs past the end of the type section")]
    TypeTruncated { id: u32 },
    #[error("type {id} has unknown kind {kind}")]
    UnknownKind { id: u32, kind: u32 },
    #[error("type {id} names offset {offset}, outside the string section")]
    BadName { id: u32, offset: u32 },
}

/// `BTF_KIND_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn decode(raw: u32) -> Option<Self> {
        use Kind::*;
        Some(match raw {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the common `struct btf_type`. Every kind must be
    /// known: skipping a type needs its length, so an unknown kind makes the rest unreadable.
    fn trailer_len(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
            // INT's encoding word, btf_var, btf_decl_tag.
            Int | Var | DeclTag => 4,
            // btf_array.
            Array => 12,
            // btf_enum, btf_param.
            Enum | FuncProto => 8 * vlen,
            // btf_member, btf_var_secinfo, btf_enum64.
            Struct | Union | Datasec | Enum64 => 12 * vlen,
        }
    }
}

/// One decoded `struct btf_type`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Type {
    pub kind: Kind,
    /// Byte size for INT, ENUM, ENUM64, STRUCT, UNION, DATASEC, FLOAT; the referenced type id
    /// for PTR, TYPEDEF, the qualifiers, FUNC, FUNC_PROTO, VAR and the tags.
    pub size_or_type: u32,
    vlen: u16,
    kind_flag: bool,
    /// Absolute position of the kind-specific trailer.
    trailer: usize,
}

/// One `struct btf_member` of a struct or union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Member {
    pub name_off: u32,
    pub type_id: u32,
    /// From the start of the enclosing struct or union.
    pub bit_offset: u32,
    /// Width of a bitfield member; `None` for ordinary members, and for all members of a
    /// struct without the kind flag (the pre-kind-flag encoding, which pahole no longer emits,
    /// keeps the width in the member's INT type instead).
    pub bitfield_size: Option<u32>,
}

/// Parsed BTF: the blob plus the position of each type and an index of struct/union names.
pub(super) struct Btf {
    data: Bytes,
    strings: Range<usize>,
    /// `type_at[id - 1]` is where type `id` starts (id 0 is `void`, not in the section).
    type_at: Vec<usize>,
    /// Struct or union name → lowest id with that name (a few names are defined twice).
    structs: HashMap<Box<[u8]>, u32>,
    /// The same for enums (C keeps their names apart from structs').
    enums: HashMap<Box<[u8]>, u32>,
}

impl Btf {
    pub(super) fn parse(data: impl Into<Bytes>) -> Result<Self, ReadError> {
        let data = data.into();
        let magic = read_u16(&data, 0).ok_or(ReadError::Truncated("header"))?;
        if magic != MAGIC {
            return Err(ReadError::BadMagic(magic));
        }
        let version = *data.get(2).ok_or(ReadError::Truncated("header"))?;
        if version != VERSION {
            return Err(ReadError::Version(version));
        }
        let word = |at| read_u32(&data, at).ok_or(ReadError::Truncated("header"));
        let hdr_len = word(4)? as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(ReadError::Truncated("header"));
        }
        let section = |off: u32, len: u32, what| {
            let start = hdr_len.checked_add(off as usize);
            let end = start.and_then(|s| s.checked_add(len as usize));
            match (start, end) {
                (Some(start), Some(end)) if end <= data.len() => Ok(start..end),
                _ => Err(ReadError::Truncated(what)),
            }
        };
        let types = section(word(8)?, word(12)?, "type section")?;
        let strings = section(word(16)?, word(20)?, "string section")?;

        // Every type takes at least TYPE_LEN bytes, so this never reallocates.
        let mut type_at = Vec::with_capacity(types.len() / TYPE_LEN);
        let mut structs = HashMap::new();
        let mut enums = HashMap::new();
        let mut pos = types.start;
        while pos < types.end {
            // Ids are bounded by type_len / 12, which fits in u32.
            let id = type_at.len() as u32 + 1;
            let header = pos + TYPE_LEN;
            if header > types.end {
                return Err(ReadError::TypeTruncated { id });
            }
            let (name_off, info) = read_u32(&data, pos)
                .zip(read_u32(&data, pos + 4))
                .ok_or(ReadError::TypeTruncated { id })?;
            let raw_kind = (info >> 24) & 0x1f;
            let kind =
                Kind::decode(raw_kind).ok_or(ReadError::UnknownKind { id, kind: raw_kind })?;
            let next = header + kind.trailer_len((info & 0xffff) as usize);
            if next > types.end {
                return Err(ReadError::TypeTruncated { id });
            }
            let index = match kind {
                Kind::Struct | Kind::Union => Some(&mut structs),
                Kind::Enum => Some(&mut enums),
                _ => None,
            };
            if let Some(index) = index.filter(|_| name_off != 0) {
                let name = c_str(&data, &strings, name_off).ok_or(ReadError::BadName {
                    id,
                    offset: name_off,
                })?;
                index.entry(name.into()).or_insert(id);
            }
            type_at.push(pos);
            pos = next;
        }
        Ok(Self {
            data,
            strings,
            type_at,
            structs,
            enums,
        })
    }

    /// The struct or union called `name` (the first one, should there be several).
    pub(super) fn struct_named(&self, name: &str) -> Option<Type> {
        self.type_by_id(*self.structs.get(name.as_bytes())?)
    }

    /// The value of `member` of the (32-bit) enum called `name`.
    pub(super) fn enum_value(&self, name: &str, member: &str) -> Option<i32> {
        let t = self.type_by_id(*self.enums.get(name.as_bytes())?)?;
        (0..t.vlen as usize).find_map(|i| {
            // struct btf_enum: name offset, value.
            let at = t.trailer + i * 8;
            let name = c_str(&self.data, &self.strings, read_u32(&self.data, at)?)?;
            (name == member.as_bytes()).then(|| read_u32(&self.data, at + 4).map(|v| v as i32))?
        })
    }

    /// Type `id`; `None` for `void` (0) and ids past the last type.
    pub(super) fn type_by_id(&self, id: u32) -> Option<Type> {
        let pos = *self.type_at.get((id as usize).checked_sub(1)?)?;
        let info = read_u32(&self.data, pos + 4)?;
        Some(Type {
            kind: Kind::decode((info >> 24) & 0x1f)?,
            size_or_type: read_u32(&self.data, pos + 8)?,
            vlen: info as u16,
            kind_flag: info >> 31 == 1,
            trailer: pos + TYPE_LEN,
        })
    }

    /// The id of the first function called each of `names`, in one pass over the types.
    pub(super) fn funcs_named(&self, names: &[&str]) -> Vec<Option<u32>> {
        let mut ids = vec![None; names.len()];
        for (i, &pos) in self.type_at.iter().enumerate() {
            let (Some(name_off), Some(info)) =
                (read_u32(&self.data, pos), read_u32(&self.data, pos + 4))
            else {
                continue;
            };
            if Kind::decode((info >> 24) & 0x1f) != Some(Kind::Func) {
                continue;
            }
            let Some(name) = c_str(&self.data, &self.strings, name_off) else {
                continue;
            };
            for (id, wanted) in ids.iter_mut().zip(names) {
                if id.is_none() && name == wanted.as_bytes() {
                    *id = Some(i as u32 + 1);
                }
            }
        }
        ids
    }

    /// The string at `offset` in the string section; `""` for anonymous types and members.
    pub(super) fn name(&self, offset: u32) -> Option<&str> {
        std::str::from_utf8(c_str(&self.data, &self.strings, offset)?).ok()
    }

    /// The members of a struct or union, in declaration order; none for other kinds.
    pub(super) fn members(&self, t: &Type) -> impl Iterator<Item = Member> + '_ {
        let vlen = match t.kind {
            Kind::Struct | Kind::Union => t.vlen as usize,
            _ => 0,
        };
        let (start, kind_flag) = (t.trailer, t.kind_flag);
        (0..vlen).map_while(move |i| {
            let at = start + i * MEMBER_LEN;
            let offset = read_u32(&self.data, at + 8)?;
            // With the kind flag, the offset word packs the bitfield width above a 24-bit
            // bit offset; without it, it is all bit offset and bitfields are not marked.
            let (bit_offset, bitfield_size) = if kind_flag {
                (offset & 0xff_ffff, Some(offset >> 24).filter(|&b| b != 0))
            } else {
                (offset, None)
            };
            Some(Member {
                name_off: read_u32(&self.data, at)?,
                type_id: read_u32(&self.data, at + 4)?,
                bit_offset,
                bitfield_size,
            })
        })
    }
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The NUL-terminated string at `offset` within `strings`.
fn c_str<'a>(data: &'a [u8], strings: &Range<usize>, offset: u32) -> Option<&'a [u8]> {
    let start = strings.start.checked_add(offset as usize)?;
    let tail = data.get(start..strings.end)?;
    Some(&tail[..tail.iter().position(|&b| b == 0)?])
}

/// Builds BTF blobs by hand for the tests here and in the parent module.
#[cfg(test)]
pub(super) mod blob {
    /// `BTF_KIND_*` numbers, as written into `info`.
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;

    /// A type section and string section under construction.
    pub struct Blob {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Blob {
        pub fn new() -> Self {
            // Offset 0 of the string section is the empty name of anonymous types.
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        pub fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let offset = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            offset
        }

        /// Appends a type header followed by `trailer` words; returns the new type's id.
        pub fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            size_or_type: u32,
            trailer: &[u32],
        ) -> u32 {
            let name_off = self.string(name);
            self.raw_type(name_off, kind << 24 | vlen, size_or_type, trailer)
        }

        /// Appends a struct (`union`: a union) of `size` bytes with `(name, type, bit offset)`
        /// members, none a bitfield.
        pub fn composite(
            &mut self,
            name: &str,
            union: bool,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let words: Vec<u32> = members
                .iter()
                .flat_map(|&(n, t, bits)| [self.string(n), t, bits])
                .collect();
            let kind = if union { UNION } else { STRUCT };
            self.ty(name, kind, members.len() as u32, size, &words)
        }

        /// Appends a struct with the kind flag set: `(name, type, bit offset, bitfield size)`.
        pub fn bitfield_struct(
            &mut self,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let words: Vec<u32> = members
                .iter()
                .flat_map(|&(n, t, bits, width)| [self.string(n), t, width << 24 | bits])
                .collect();
            let name_off = self.string(name);
            let info = 1 << 31 | STRUCT << 24 | members.len() as u32;
            self.raw_type(name_off, info, size, &words)
        }

        pub fn raw_type(
            &mut self,
            name_off: u32,
            info: u32,
            size_or_type: u32,
            trailer: &[u32],
        ) -> u32 {
            for w in [name_off, info, size_or_type].iter().chain(trailer) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        /// The complete blob: header, types, then strings.
        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xEB9F_u16.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let (types, strings) = (self.types.len() as u32, self.strings.len() as u32);
            for w in [24, 0, types, types, strings] {
                out.extend_from_slice(&u32::to_le_bytes(w));
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::blob::*;
    use super::*;

    /// One type of every kind, then a struct whose lookup proves each was skipped correctly.
    fn every_kind() -> (Blob, u32) {
        let mut b = Blob::new();
        let int = b.ty("int", INT, 0, 4, &[32]);
        b.ty("", PTR, 0, int, &[]);
        b.ty("", ARRAY, 0, 0, &[int, int, 4]);
        b.composite("s", false, 4, &[("x", int, 0)]);
        b.composite("u", true, 4, &[("x", int, 0), ("y", int, 0)]);
        let (first, second) = (b.string("A"), b.string("B"));
        b.ty("e", ENUM, 2, 4, &[first, 0, second, 1]);
        b.ty("f", FWD, 0, 0, &[]);
        b.ty("t", TYPEDEF, 0, int, &[]);
        b.ty("", VOLATILE, 0, int, &[]);
        b.ty("", CONST, 0, int, &[]);
        b.ty("", RESTRICT, 0, int, &[]);
        let proto = b.ty("", FUNC_PROTO, 2, int, &[0, int, 0, int]);
        b.ty("fn", FUNC, 0, proto, &[]);
        let var = b.ty("v", VAR, 0, int, &[1]);
        b.ty(".data", DATASEC, 1, 4, &[var, 0, 4]);
        b.ty("double", FLOAT, 0, 8, &[]);
        b.ty("tag", DECL_TAG, 0, var, &[u32::MAX]);
        b.ty("rcu", TYPE_TAG, 0, int, &[]);
        let c = b.string("C");
        b.ty("e64", ENUM64, 1, 8, &[c, 1, 2]);
        let last = b.composite("last", false, 8, &[("a", int, 0), ("b", int, 32)]);
        (b, last)
    }

    #[test]
    fn every_kind_is_skipped_by_its_length() {
        let (b, last) = every_kind();
        let btf = Btf::parse(b.build()).unwrap();
        assert_eq!(btf.type_at.len() as u32, last);
        let t = btf.struct_named("last").unwrap();
        assert_eq!((t.kind, t.size_or_type), (Kind::Struct, 8));
        let names: Vec<_> = btf
            .members(&t)
            .map(|m| btf.name(m.name_off).unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(btf.members(&t).nth(1).unwrap().bit_offset, 32);
        assert_eq!(btf.type_by_id(last).unwrap().kind, Kind::Struct);
        assert_eq!(btf.type_by_id(last - 1).unwrap().kind, Kind::Enum64);
    }

    #[test]
    fn struct_names_index_structs_and_unions_first_id_first() {
        let (mut b, _) = every_kind();
        let int = 1;
        let second = b.composite("s", false, 8, &[("other", int, 0)]);
        let btf = Btf::parse(b.build()).unwrap();
        assert_eq!(btf.struct_named("u").unwrap().kind, Kind::Union);
        let s = btf.struct_named("s").unwrap();
        assert_eq!(s.size_or_type, 4, "the first `s`, not id {second}");
        // Other kinds with a name are not structs.
        for name in ["int", "e", "f", "t", "fn", "nope", ""] {
            assert!(btf.struct_named(name).is_none(), "{name}");
        }
    }

    #[test]
    fn enum_values_are_found_by_enum_and_member_name() {
        let (mut b, _) = every_kind();
        let (x, minus) = (b.string("X"), b.string("MINUS"));
        b.ty("s", ENUM, 2, 4, &[x, 7, minus, -3i32 as u32]);
        let btf = Btf::parse(b.build()).unwrap();
        assert_eq!(btf.enum_value("e", "A"), Some(0));
        assert_eq!(btf.enum_value("e", "B"), Some(1));
        // An enum may share a struct's name; the struct `s` is not searched.
        assert_eq!(btf.enum_value("s", "X"), Some(7));
        assert_eq!(btf.enum_value("s", "MINUS"), Some(-3));
        assert_eq!(btf.enum_value("s", "x"), None);
        assert_eq!(btf.enum_value("e", "X"), None);
        // ENUM64 and other kinds are not 32-bit enums.
        assert_eq!(btf.enum_value("e64", "C"), None);
        assert_eq!(btf.enum_value("int", "A"), None);
    }

    #[test]
    fn ids_out_of_range_and_void_are_none() {
        let (b, last) = every_kind();
        let btf = Btf::parse(b.build()).unwrap();
        assert!(btf.type_by_id(0).is_none());
        assert!(btf.type_by_id(last + 1).is_none());
        assert!(btf.type_by_id(u32::MAX).is_none());
        assert!(btf.name(u32::MAX).is_none());
    }

    #[test]
    fn kind_flag_splits_bitfield_width_from_offset() {
        let mut b = Blob::new();
        let int = b.ty("int", INT, 0, 4, &[32]);
        let id = b.bitfield_struct(
            "bits",
            4,
            &[("a", int, 0, 3), ("b", int, 3, 5), ("c", int, 16, 0)],
        );
        let btf = Btf::parse(b.build()).unwrap();
        let t = btf.type_by_id(id).unwrap();
        let got: Vec<_> = btf
            .members(&t)
            .map(|m| (m.bit_offset, m.bitfield_size))
            .collect();
        assert_eq!(got, [(0, Some(3)), (3, Some(5)), (16, None)]);
    }

    #[test]
    fn empty_btf_parses() {
        let btf = Btf::parse(Blob::new().build()).unwrap();
        assert!(btf.type_by_id(1).is_none());
        assert_eq!(btf.name(0), Some(""));
    }

    #[test]
    fn bad_magic_and_big_endian_are_rejected() {
        let mut bytes = Blob::new().build();
        bytes[..2].copy_from_slice(&[0xEB, 0x9F]);
        assert_eq!(Btf::parse(bytes).err(), Some(ReadError::BadMagic(0x9FEB)));
        let err = Btf::parse(b"not btf at all".to_vec()).err().unwrap();
        assert!(matches!(err, ReadError::BadMagic(_)), "{err}");
        assert!(err.to_string().contains("not BTF"), "{err}");
    }

    #[test]
    fn unknown_version_and_kind_are_rejected() {
        let mut bytes = Blob::new().build();
        bytes[2] = 2;
        assert_eq!(Btf::parse(bytes).err(), Some(ReadError::Version(2)));
        let mut b = Blob::new();
        b.ty("int", INT, 0, 4, &[32]);
        b.ty("x", 20, 0, 0, &[]);
        assert_eq!(
            Btf::parse(b.build()).err(),
            Some(ReadError::UnknownKind { id: 2, kind: 20 })
        );
    }

    #[test]
    fn sections_outside_the_blob_are_rejected() {
        let bytes = every_kind().0.build();
        for (field, what) in [
            (4, "header"),
            (8, "type section"),
            (12, "type section"),
            (16, "string section"),
        ] {
            let mut bad = bytes.clone();
            bad[field..field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(
                Btf::parse(bad).err(),
                Some(ReadError::Truncated(what)),
                "field {field}"
            );
        }
    }

    #[test]
    fn a_struct_name_outside_the_strings_is_rejected() {
        let mut b = Blob::new();
        b.raw_type(1000, STRUCT << 24, 0, &[]);
        assert_eq!(
            Btf::parse(b.build()).err(),
            Some(ReadError::BadName {
                id: 1,
                offset: 1000
            })
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (b, last) = every_kind();
        let bytes = b.build();
        // Cut anywhere, the header promises more than there is.
        for len in 0..bytes.len() {
            assert!(Btf::parse(bytes[..len].to_vec()).is_err(), "length {len}");
        }
        // A type section cut inside a type, with a consistent header.
        let mut cut = bytes.clone();
        let short = read_u32(&bytes, 12).unwrap() - 4;
        cut[12..16].copy_from_slice(&short.to_le_bytes());
        cut[16..20].copy_from_slice(&short.to_le_bytes());
        assert_eq!(
            Btf::parse(cut).err(),
            Some(ReadError::TypeTruncated { id: last })
        );
        // A string section cut before the NUL of the last struct's name, the last string.
        let mut cut = bytes.clone();
        let short = read_u32(&bytes, 20).unwrap() - 1;
        cut[20..24].copy_from_slice(&short.to_le_bytes());
        assert!(matches!(Btf::parse(cut), Err(ReadError::BadName { id, .. }) if id == last));
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let (b, _) = every_kind();
        let bytes = b.build();
        for i in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] = value;
                if let Ok(btf) = Btf::parse(bad) {
                    for id in 0..=btf.type_at.len() as u32 + 1 {
                        if let Some(t) = btf.type_by_id(id) {
                            btf.members(&t).for_each(|m| _ = btf.name(m.name_off));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn host_btf_decodes_every_type() {
        let path = std::path::Path::new(super::super::VMLINUX_BTF);
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipped: {} unreadable", path.display());
            return;
        };
        let btf = Btf::parse(bytes).expect("host BTF parses");
        let count = btf.type_at.len() as u32;
        assert!(count > 10_000, "{count} types");
        for id in 1..=count {
            let t = btf.type_by_id(id).expect("every recorded type decodes");
            for m in btf.members(&t) {
                assert!(btf.name(m.name_off).is_some(), "member of {id}");
                assert!(
                    btf.type_by_id(m.type_id).is_some(),
                    "member of {id} has a type"
                );
            }
        }
    }
}
