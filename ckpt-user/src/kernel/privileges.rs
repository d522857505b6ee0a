//! Whether this process may load and run the BPF iterators, checked before trying so the error
//! names the missing privilege instead of a bare EPERM from the verifier.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "missing {missing}: loading BPF iterators needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root (sudo ckpt-watch ...)"
    )]
    Missing { missing: String },
    #[error("cannot read this process's capabilities from /proc/self/status: {0}")]
    Io(#[from] std::io::Error),
}

/// The effective capability set, from `/proc/self/status`.
fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

fn check(caps: u64) -> Result<(), PrivilegeError> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(c, _)| !has(*c))
        .map(|(_, n)| n)
        .collect();
    Err(PrivilegeError::Missing {
        missing: missing.join(" and "),
    })
}

/// Fails with a one-line explanation when this process cannot load the iterators.
pub fn ensure_can_load_bpf() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    check(effective_caps(&status).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn sys_admin_alone_or_bpf_with_perfmon_suffice() {
        assert!(check(1 << CAP_SYS_ADMIN).is_ok());
        assert!(check((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_ok());
    }

    #[test]
    fn missing_caps_are_named() {
        let err = check(1 << CAP_BPF).unwrap_err().to_string();
        assert!(err.starts_with("missing CAP_PERFMON:"), "{err}");
        let err = check(0).unwrap_err().to_string();
        assert!(err.contains("CAP_BPF and CAP_PERFMON"), "{err}");
        assert!(err.contains("sudo"), "{err}");
    }
}
