//! `/proc/kallsyms`: names for the addresses the BPF side reports (ops tables and their member
//! functions). Only wanted addresses are kept, so a lookup costs one pass and no table of 100k+
//! names.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::ops::Range;

use crate::kernel::bytes::Bytes;

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

/// One line of kallsyms: `ADDRESS TYPE NAME [\t[MODULE]]`, its name and module read only
/// when asked for.
struct Line<'a> {
    addr: u64,
    kind: u8,
    rest: &'a [u8],
    /// Where the line starts in the text it was found in.
    offset: usize,
}

impl<'a> Line<'a> {
    fn name(&self) -> Option<&'a [u8]> {
        field(self.rest).map(|(name, _)| name)
    }

    /// Whether a name follows: the first byte after the blanks tells.
    fn has_name(&self) -> bool {
        self.rest.iter().any(|b| !b.is_ascii_whitespace())
    }

    fn symbol(&self, kind: SymKind) -> Option<Symbol> {
        let (name, rest) = field(self.rest)?;
        let module = field(rest).map(|(m, _)| {
            let m = m.strip_prefix(b"[").unwrap_or(m);
            String::from_utf8_lossy(m.strip_suffix(b"]").unwrap_or(m)).into_owned()
        });
        Some(Symbol {
            name: String::from_utf8_lossy(name).into_owned(),
            kind,
            module,
        })
    }
}

/// The lines of kallsyms text with an address and a type. Bytes, not `str`: a lookup reads
/// ~120,000-200,000 lines on the scan's critical path and converts only the few it keeps.
fn lines(text: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text)
        .chain(std::iter::once(text.len()))
        .filter_map(move |end| {
            let offset = start;
            let line = text.get(start..end)?;
            start = end + 1;
            let (addr, rest) = field(line)?;
            let (kind, rest) = field(rest)?;
            Some(Line {
                addr: hex(addr)?,
                kind: kind[0],
                rest,
                offset,
            })
        })
}

/// The first whitespace-separated field of `s` (never empty) and what follows it.
fn field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = s.trim_ascii_start();
    let end = s
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// Hex digit values, `NOT_HEX` elsewhere: one load per digit in the loop every line runs.
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

fn hex(digits: &[u8]) -> Option<u64> {
    if digits.len() > 16 {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        let v = HEX[usize::from(d)];
        if v == NOT_HEX {
            return None;
        }
        n = n << 4 | u64::from(v);
    }
    Some(n)
}

/// A few hundred addresses, asked about by every line of kallsyms: a bitmap of their low bits
/// turns nearly every line away with one load, where hashing or a binary search would cost
/// more than parsing the line.
struct Wanted {
    bits: Vec<u64>,
    sorted: Vec<u64>,
}

impl Wanted {
    const BITS: u64 = 1 << 16;

    fn slot(addr: u64) -> (usize, u64) {
        // Symbols are at least 4-byte aligned: the bits above those spread them best.
        let bit = (addr >> 2) % Self::BITS;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn new(addrs: &HashSet<u64>) -> Self {
        let mut bits = vec![0; (Self::BITS / 64) as usize];
        for &a in addrs {
            let (word, mask) = Self::slot(a);
            bits[word] |= mask;
        }
        let mut sorted: Vec<u64> = addrs.iter().copied().collect();
        sorted.sort_unstable();
        Self { bits, sorted }
    }

    fn contains(&self, addr: u64) -> bool {
        let (word, mask) = Self::slot(addr);
        self.bits[word] & mask != 0 && self.sorted.binary_search(&addr).is_ok()
    }
}

/// Calls `each` with every line of `reader` that has an address and a type, reading 64 KiB at
/// a time: the daemon never holds the whole table (~5 MB).
fn for_each_line(mut reader: impl Read, mut each: impl FnMut(Line<'_>)) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let mut filled = 0;
    loop {
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let whole = if n == 0 {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(last) => last + 1,
                // One line longer than the buffer: make room for the rest of it.
                None if filled == buf.len() => {
                    buf.resize(buf.len() * 2, 0);
                    continue;
                }
                None => continue,
            }
        };
        lines(&buf[..whole]).for_each(&mut each);
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// The kind of symbol a line's type letter names; `None` for the rest (absolute symbols, ...).
fn kind_of(letter: u8) -> Option<SymKind> {
    match letter {
        b'T' | b't' | b'W' | b'w' => Some(SymKind::Text),
        b'D' | b'd' | b'R' | b'r' | b'B' | b'b' => Some(SymKind::Data),
        _ => None,
    }
}

/// What a lookup learns from every line besides the wanted symbols.
#[derive(Debug, Default)]
struct Census {
    named: usize,
    nonzero: bool,
    data_symbols: usize,
}

impl Census {
    /// Counts `line`; the kind of symbol it names, `None` for a line without a name or of
    /// another type (absolute symbols, ...).
    fn see(&mut self, line: &Line<'_>) -> Option<SymKind> {
        if !line.has_name() {
            return None;
        }
        self.named += 1;
        self.nonzero |= line.addr != 0;
        let kind = kind_of(line.kind);
        self.data_symbols += usize::from(kind == Some(SymKind::Data));
        kind
    }

    /// Names without addresses are no table to look anything up in.
    fn check(&self) -> Result<(), KallsymsError> {
        if self.named > 0 && !self.nonzero {
            let restrict = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            let hint = crate::kernel::privileges::kallsyms_hidden_hint(&restrict);
            return Err(KallsymsError::AddressesHidden { restrict, hint });
        }
        Ok(())
    }
}

/// kallsyms text with its symbols sorted by address, built on a thread that has the time (a
/// scan's, while the verifier runs): a lookup then costs a binary search per wanted address,
/// where a pass over every line took ~4 ms on the scan's critical path, after the kernel's
/// walk. The daemon, which keeps neither, looks up as it reads.
///
/// It is one image: [`IMAGE_HEADER`] words (entries, then the [`Census`], then the text's
/// length), each named text or data symbol's address in order, the offset of its line in the
/// text, and the text. The copy kept between runs (`kallsyms_cache`) is that image as it is,
/// mapped: a run then neither copies ~5 MB nor parses ~200,000 lines (~9 ms of CPU here).
pub struct KallsymsIndex {
    image: Bytes,
    /// Where the image starts in `image`'s bytes (after a cache file's own header).
    at: usize,
    entries: usize,
    text: Range<usize>,
    census: Census,
}

/// Words before the addresses: entries, named, nonzero, data symbols, text length.
const IMAGE_HEADER: usize = 5;

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

impl KallsymsIndex {
    pub fn new(text: Vec<u8>) -> std::io::Result<Self> {
        if u32::try_from(text.len()).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes of kallsyms text", text.len()),
            ));
        }
        let mut census = Census::default();
        // Sized once: growing by doubling would hold two copies of ~200,000 entries at the peak.
        let mut by_addr = Vec::with_capacity(memchr::memchr_iter(b'\n', &text).count() + 1);
        for line in lines(&text) {
            if census.see(&line).is_some() {
                // Within `text`, whose length fits a u32.
                by_addr.push((line.addr, line.offset as u32));
            }
        }
        // Already sorted but for the modules' and a few other lines: a stable sort merges those
        // few runs (0.3 ms here), where an unstable one sorts all over again (2.3 ms).
        by_addr.sort();
        let header = [
            by_addr.len() as u64,
            census.named as u64,
            u64::from(census.nonzero),
            census.data_symbols as u64,
            text.len() as u64,
        ];
        let mut image = Vec::with_capacity(8 * IMAGE_HEADER + 12 * by_addr.len() + text.len());
        for w in header {
            image.extend_from_slice(&w.to_ne_bytes());
        }
        for (addr, _) in &by_addr {
            image.extend_from_slice(&addr.to_ne_bytes());
        }
        for (_, offset) in &by_addr {
            image.extend_from_slice(&offset.to_ne_bytes());
        }
        image.extend_from_slice(&text);
        let text = image.len() - text.len()..image.len();
        Ok(Self {
            image: image.into(),
            at: 0,
            entries: by_addr.len(),
            text,
            census,
        })
    }

    /// The index whose image starts at `at` in `bytes` and fills the rest of them; `None` when
    /// its lengths do not add up (a copy cut short or grown).
    pub fn from_image(bytes: Bytes, at: usize) -> Option<Self> {
        let w = |i: usize| word(&bytes, at + 8 * i).and_then(|w| usize::try_from(w).ok());
        let entries = w(0)?;
        let census = Census {
            named: w(1)?,
            nonzero: w(2)? != 0,
            data_symbols: w(3)?,
        };
        let text_len = w(4)?;
        let text_at = entries
            .checked_mul(12)?
            .checked_add(8 * IMAGE_HEADER)?
            .checked_add(at)?;
        if text_at.checked_add(text_len)? != bytes.len() {
            return None;
        }
        Some(Self {
            image: bytes,
            at,
            entries,
            text: text_at..text_at + text_len,
            census,
        })
    }

    /// The image, as [`KallsymsIndex::from_image`] takes it back.
    pub fn image(&self) -> &[u8] {
        &self.image[self.at..]
    }

    fn text(&self) -> &[u8] {
        &self.image[self.text.clone()]
    }

    fn addr(&self, i: usize) -> u64 {
        word(&self.image, self.at + 8 * (IMAGE_HEADER + i)).unwrap_or(u64::MAX)
    }

    /// The offset of entry `i`'s line in the text.
    fn offset(&self, i: usize) -> usize {
        let at = self.at + 8 * (IMAGE_HEADER + self.entries) + 4 * i;
        self.image.get(at..at + 4).map_or(usize::MAX, |b| {
            u32::from_ne_bytes(b.try_into().unwrap_or_default()) as usize
        })
    }

    /// The lines at `addr`, in text order.
    fn lines_at(&self, addr: u64) -> impl Iterator<Item = Line<'_>> {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.addr(mid) < addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let text = self.text();
        (lo..self.entries)
            .take_while(move |&i| self.addr(i) == addr)
            .filter_map(move |i| {
                let rest = text.get(self.offset(i)..)?;
                let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                lines(&rest[..end]).next()
            })
    }
}

impl Symbols {
    /// Reads kallsyms text from `reader`, keeping the symbols at `wanted` addresses.
    pub fn lookup(reader: impl Read, wanted: &HashSet<u64>) -> Result<Self, KallsymsError> {
        let wanted = Wanted::new(wanted);
        let mut out = Symbols::default();
        let mut census = Census::default();
        for_each_line(reader, |line| {
            if let Some(kind) = census.see(&line)
                && wanted.contains(line.addr)
                && let Some(symbol) = line.symbol(kind)
            {
                out.by_addr.entry(line.addr).or_default().push(symbol);
            }
        })?;
        census.check()?;
        out.data_symbols = census.data_symbols;
        Ok(out)
    }

    /// As [`Symbols::lookup`], in an index.
    pub fn lookup_indexed(
        index: &KallsymsIndex,
        wanted: &HashSet<u64>,
    ) -> Result<Self, KallsymsError> {
        index.census.check()?;
        let mut out = Symbols {
            data_symbols: index.census.data_symbols,
            ..Default::default()
        };
        for &addr in wanted {
            for line in index.lines_at(addr) {
                // Indexed lines all have a name and one of these kinds.
                if let Some(kind) = kind_of(line.kind)
                    && let Some(symbol) = line.symbol(kind)
                {
                    out.by_addr.entry(addr).or_default().push(symbol);
                }
            }
        }
        Ok(out)
    }

    /// Reads kallsyms text from `reader`, keeping the text symbols named in `names`.
    pub fn lookup_functions(
        reader: impl Read,
        names: &HashSet<&str>,
    ) -> Result<Self, KallsymsError> {
        let mut out = Symbols::default();
        for_each_line(reader, |line| {
            if !matches!(line.kind, b'T' | b't' | b'W' | b'w') {
                return;
            }
            let named = line.name().map(std::str::from_utf8);
            if let Some(Ok(name)) = named
                && names.contains(name)
                && let Some(symbol) = line.symbol(SymKind::Text)
            {
                out.by_addr.entry(line.addr).or_default().push(symbol);
            }
        })?;
        Ok(out)
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
    fn an_address_sharing_low_bits_with_a_wanted_one_is_not_it() {
        let text = "ffffffff91000010 T other\nffffffff81000010 T wanted_fn\n";
        let s = Symbols::lookup(text.as_bytes(), &wanted(&[0xffffffff81000010])).unwrap();
        assert_eq!(s.entries().len(), 1);
        assert_eq!(s.function_at(0xffffffff81000010).unwrap().name, "wanted_fn");
    }

    #[test]
    fn lines_across_read_chunks_and_longer_than_one_are_read_whole() {
        let mut text = String::new();
        let mut want = HashSet::new();
        for i in 0..6000u64 {
            let addr = 0xffffffff81000000 + i * 16;
            text.push_str(&format!("{addr:016x} t fn_{i}\n"));
            if i % 7 == 0 {
                want.insert(addr);
            }
        }
        let long = "x".repeat(200_000);
        text.push_str(&format!(
            "ffffffff90000000 T {long}\tmod\nffffffff90000010 T last"
        ));
        want.insert(0xffffffff90000000);
        want.insert(0xffffffff90000010);
        let s = Symbols::lookup(text.as_bytes(), &want).unwrap();
        assert_eq!(s.entries().len(), want.len());
        for i in (0..6000u64).step_by(7) {
            let addr = 0xffffffff81000000 + i * 16;
            assert_eq!(s.function_at(addr).unwrap().name, format!("fn_{i}"));
        }
        let big = s.function_at(0xffffffff90000000).unwrap();
        assert_eq!(
            (big.name.len(), big.module.as_deref()),
            (200_000, Some("mod"))
        );
        assert_eq!(s.function_at(0xffffffff90000010).unwrap().name, "last");
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
        let text = "garbage\nzzzz T x\nffffffff81000000\nffffffff81000010 T\n\
                    1ffffffff81000010 T too_long\nffffffff81000010 T ok_fn\n";
        let s = Symbols::lookup(text.as_bytes(), &wanted(&[0xffffffff81000010])).unwrap();
        let found: Vec<&str> = s.by_addr[&0xffffffff81000010]
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(found, ["ok_fn"]);
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
        let s = Symbols::lookup(
            std::fs::File::open("/proc/kallsyms").unwrap(),
            &wanted(&[addr]),
        )
        .unwrap();
        assert_eq!(s.function_at(addr).unwrap().name, "pipe_release");
    }

    /// Both lookups of `text` for `want`: the index must find what a pass finds, and so must
    /// its image read back behind a header of another length than a word's.
    fn both(text: &str, want: &HashSet<u64>) -> (Symbols, Symbols) {
        let passed = Symbols::lookup(text.as_bytes(), want).unwrap();
        let index = KallsymsIndex::new(text.as_bytes().to_vec()).unwrap();
        let indexed = Symbols::lookup_indexed(&index, want).unwrap();
        let image = [b"hdr".as_slice(), index.image()].concat();
        let back = KallsymsIndex::from_image(image.into(), 3).expect("the image reads back");
        let again = Symbols::lookup_indexed(&back, want).unwrap();
        assert_eq!(again.entries(), indexed.entries());
        assert_eq!(again.data_symbols, indexed.data_symbols);
        (passed, indexed)
    }

    #[test]
    fn an_index_finds_what_a_pass_finds() {
        // Unsorted (modules before vmlinux), aliases in text order, an address wanted twice
        // over kinds, and lines a pass skips.
        let text = format!(
            "ffffffffc0a09000 t late_fn\t[kvm]\n{FIXTURE}garbage\nffffffff81234560 r pipe_rodata\n"
        );
        for want in [
            wanted(&[]),
            wanted(&[0xffffffff81234560]),
            wanted(&[0xffffffff81234560, 0xffffffffc0a09000, 0xffffffff82400100]),
            wanted(&[0xffffffff81400000, 0xdead, 0xffffffffc0a03000]),
        ] {
            let (passed, indexed) = both(&text, &want);
            assert_eq!(indexed.entries(), passed.entries(), "{want:x?}");
            assert_eq!(indexed.data_symbols, passed.data_symbols);
        }
        let (_, indexed) = both(&text, &wanted(&[0xffffffff81234560]));
        let names: Vec<_> = indexed.by_addr[&0xffffffff81234560]
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["pipe_release", "pipe_release_alias", "pipe_rodata"]);
    }

    #[test]
    fn an_index_of_zeroed_addresses_means_kptr_restrict() {
        let hidden = "0000000000000000 T _text\n0000000000000000 t pipe_release\n";
        let index = KallsymsIndex::new(hidden.as_bytes().to_vec()).unwrap();
        let err = Symbols::lookup_indexed(&index, &wanted(&[0])).unwrap_err();
        assert!(matches!(err, KallsymsError::AddressesHidden { .. }));
    }

    /// On the host's own table, with every ops-like address wanted: the same symbols.
    #[test]
    fn host_kallsyms_index_agrees_with_a_pass() {
        let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
            eprintln!("skipped: /proc/kallsyms unreadable");
            return;
        };
        let want: HashSet<u64> = text
            .lines()
            .step_by(97)
            .filter_map(|l| u64::from_str_radix(l.get(..16)?, 16).ok())
            .collect();
        if want.iter().all(|&a| a == 0) {
            eprintln!("skipped: addresses hidden (not root?)");
            return;
        }
        let (passed, indexed) = both(&text, &want);
        assert!(passed.entries().len() > 1000, "{}", passed.entries().len());
        assert_eq!(indexed.entries(), passed.entries());
        assert_eq!(indexed.data_symbols, passed.data_symbols);
    }
}
