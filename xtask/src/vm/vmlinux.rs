//! The uncompressed kernel ELF inside a bzImage, so QEMU can enter it through its PVH note:
//! that skips the in-guest decompression, which costs seconds under TCG.
//!
//! Same idea as the kernel's `scripts/extract-vmlinux`, but exact: the x86 boot header says
//! where the compressed payload starts and how long it is (boot protocol ≥ 2.08), so there is
//! no scanning for magic numbers in the middle of the image.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Offsets in the x86 boot sector / setup header (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Payload magic → the host tool (and its arguments) that decompresses it to stdout.
const DECOMPRESSORS: &[(&[u8], &[&str])] = &[
    (b"\x1f\x8b", &["gzip", "-dc"]),
    (b"\xfd7zXZ", &["xz", "-dc"]),
    (b"\x28\xb5\x2f\xfd", &["zstd", "-dcq"]),
    (b"\x02\x21\x4c\x18", &["lz4", "-dcq"]),
    (b"BZh", &["bzip2", "-dc"]),
    (b"\x5d\x00\x00", &["xz", "--format=lzma", "-dc"]),
];

/// Writes the ELF kernel found in `bzimage` to `out`.
pub fn extract(bzimage: &Path, out: &Path) -> anyhow::Result<()> {
    let image = std::fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    let payload = payload(&image).with_context(|| format!("{}", bzimage.display()))?;
    let Some((_, tool)) = DECOMPRESSORS.iter().find(|(m, _)| payload.starts_with(m)) else {
        bail!(
            "{}: unknown payload compression (magic {:02x?})",
            bzimage.display(),
            &payload[..payload.len().min(4)]
        );
    };
    let staged = out.with_extension("payload");
    std::fs::write(&staged, payload)?;
    let result = decompress(tool, &staged, out);
    let _ = std::fs::remove_file(&staged);
    result.with_context(|| format!("decompressing {} with {}", bzimage.display(), tool[0]))
}

/// The compressed payload's bytes, as the setup header locates them.
fn payload(image: &[u8]) -> anyhow::Result<&[u8]> {
    let word = |at: usize| -> anyhow::Result<usize> {
        let bytes = image.get(at..at + 4).context("too short for a bzImage")?;
        Ok(u32::from_le_bytes(bytes.try_into()?) as usize)
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS setup header)");
    }
    // A setup_sects of 0 means 4 (boot protocol, for ancient images).
    let sects = match image[SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let start = (sects + 1) * 512 + word(PAYLOAD_OFFSET)?;
    let end = start + word(PAYLOAD_LENGTH)?;
    image
        .get(start..end)
        .context("payload lies beyond the end of the image")
}

/// Runs `tool` on `input`; success is judged by the output being an ELF file, because the
/// payload ends with the decompressed size, which every tool reports as trailing garbage.
fn decompress(tool: &[&str], input: &Path, out: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(out)?;
    let status = Command::new(tool[0])
        .args(&tool[1..])
        .arg(input)
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {} (is it installed?)", tool[0]))?;
    let mut head = [0u8; 4];
    use std::io::Read;
    let got = std::fs::File::open(out)?.read(&mut head)?;
    if got < 4 || head != ELF_MAGIC {
        let _ = std::fs::remove_file(out);
        bail!("{} produced no ELF kernel ({status})", tool[0]);
    }
    Ok(())
}
