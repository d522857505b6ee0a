use std::path::Path;
fn main() -> anyhow::Result<()> {
    let btf = ckpt_user::kernel::btf::KernelBtf::from_file(Path::new(
        ckpt_user::kernel::btf::VMLINUX_BTF,
    ))?;
    let mut off = btf.offsets()?;
    if let Some(p) = std::env::args().nth(1) {
        off.target_tgid = p.parse()?;
    }
    let aya_btf = aya::Btf::from_sys_fs()?;
    let t = std::time::Instant::now();
    let mut probe = ckpt_user::probe::Probe::load(&off, &aya_btf)?;
    let t1 = t.elapsed();
    let snap = probe.snapshot()?;
    eprintln!(
        "load {:?} snapshot {:?}: {} files {} vmas {} ops",
        t1,
        t.elapsed() - t1,
        snap.files.len(),
        snap.vmas.len(),
        snap.ops.len()
    );
    let mut m = std::collections::BTreeMap::new();
    for f in &snap.files {
        *m.entry(f.tgid).or_insert(0) += 1;
    }
    eprintln!("{:?}", m);
    Ok(())
}
