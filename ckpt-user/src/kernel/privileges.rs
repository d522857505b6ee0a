//! Whether this process may load and run the BPF iterators, checked before trying so the error
//! names the missing privilege instead of a bare EPERM from the verifier; and how to grant a
//! capability, which differs for root (a unit's or a container's capability set removed it) and
//! for anyone else.

const CAP_SYS_ADMIN: u32 = 21;
/// Shows kernel addresses in `/proc/kallsyms` (unless `kernel.kptr_restrict` is 2).
pub const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "missing {missing}: loading BPF iterators needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); {fix}"
    )]
    Missing { missing: String, fix: String },
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

/// This process's effective capabilities (none when they cannot be read).
fn own_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s))
        .unwrap_or(0)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this process holds `cap` in its effective set.
pub fn holds(cap: u32) -> bool {
    own_caps() & (1u64 << cap) != 0
}

/// How to give this process `caps` (e.g. "CAP_SYSLOG"). Root lacks a capability only because
/// something removed it — a systemd unit's `CapabilityBoundingSet=`, a container's capability
/// list, `setpriv`/`capsh` — so "run as root" would be no help there.
pub fn how_to_grant(caps: &str, root: bool) -> String {
    if root {
        format!(
            "this process is root but its capability set lacks {caps}: grant it where the set is \
             limited (a systemd unit's CapabilityBoundingSet= and AmbientCapabilities=, a \
             container's capabilities, e.g. securityContext.capabilities.add)"
        )
    } else {
        format!("run as root (sudo ckpt-watch ...), or grant this process {caps}")
    }
}

fn check(caps: u64, root: bool) -> Result<(), PrivilegeError> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(c, _)| !has(*c))
        .map(|(_, n)| n)
        .collect();
    let missing = missing.join(" and ");
    Err(PrivilegeError::Missing {
        fix: how_to_grant(&missing, root),
        missing,
    })
}

/// Fails with a one-line explanation when this process cannot load the iterators.
pub fn ensure_can_load_bpf() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    check(effective_caps(&status).unwrap_or(0), is_root())
}

/// Why `/proc/kallsyms` shows every address as 0, and the fix, for this process: the kernel
/// shows addresses to a reader holding CAP_SYSLOG in the initial user namespace unless
/// `kernel.kptr_restrict` is 2 (with 0, also to anyone while `perf_event_paranoid` ≤ 1).
pub fn kallsyms_hidden_hint(kptr_restrict: &str) -> String {
    hidden_hint(kptr_restrict, holds(CAP_SYSLOG), is_root())
}

fn hidden_hint(kptr_restrict: &str, has_syslog: bool, root: bool) -> String {
    if kptr_restrict == "2" {
        return "kptr_restrict=2 hides kernel addresses from every process: lower it (sysctl \
                kernel.kptr_restrict=1) and keep CAP_SYSLOG"
            .into();
    }
    if has_syslog {
        return "this process holds CAP_SYSLOG, but not in the host's user namespace (a \
                user-namespaced container?): run it in the host's user namespace"
            .into();
    }
    format!(
        "the kernel shows them only to holders of CAP_SYSLOG; {}",
        how_to_grant("CAP_SYSLOG", root)
    )
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
        assert!(check(1 << CAP_SYS_ADMIN, false).is_ok());
        assert!(check((1 << CAP_BPF) | (1 << CAP_PERFMON), false).is_ok());
    }

    #[test]
    fn missing_caps_are_named() {
        let err = check(1 << CAP_BPF, false).unwrap_err().to_string();
        assert!(err.starts_with("missing CAP_PERFMON:"), "{err}");
        let err = check(0, false).unwrap_err().to_string();
        assert!(err.contains("CAP_BPF and CAP_PERFMON"), "{err}");
        assert!(err.contains("sudo"), "{err}");
    }

    #[test]
    fn root_without_caps_is_told_to_grant_them_not_to_be_root() {
        let err = check(0, true).unwrap_err().to_string();
        assert!(!err.contains("run as root"), "{err}");
        assert!(err.contains("CapabilityBoundingSet"), "{err}");
    }

    #[test]
    fn hidden_kallsyms_names_cap_syslog_or_the_sysctl() {
        for root in [false, true] {
            let hint = hidden_hint("0", false, root);
            assert!(hint.contains("CAP_SYSLOG"), "{hint}");
            assert_eq!(hint.contains("run as root"), !root, "{hint}");
        }
        assert!(hidden_hint("2", true, true).contains("sysctl kernel.kptr_restrict=1"));
        assert!(hidden_hint("1", true, true).contains("user namespace"));
    }
}
