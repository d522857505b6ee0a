//! The checkpointer's own environment: what stops a dump whatever the files are. The checkpointer
//! is taken to run where ckpt-watch runs, with its capabilities and ids (a runtime started on
//! this host inherits the same bounding set). Checks give the same verdicts as files do.
//!
//! - Privileges: CRIU needs CAP_SYS_ADMIN, or CAP_CHECKPOINT_RESTORE with `--unprivileged`.
//! - ptrace: seizing a task with other uids needs CAP_SYS_PTRACE; Yama's scope 3 forbids all.
//! - rlimits: CRIU reads each task's limits with prlimit(2), which the kernel allows only when
//!   the caller's uid and gid equal the task's real, effective and saved ones, or with
//!   CAP_SYS_RESOURCE (`check_prlimit_permission`); else `Can't get rlimit 0: Operation not
//!   permitted` and the dump fails.
//! - Kernel features that `criu check` needs and /proc shows: `map_files`, `ns_last_pid`, kcmp.

use std::path::Path;

use crate::classify::{Judgement, Verdict};
use crate::scope::ProcInfo;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

#[derive(Debug, thiserror::Error)]
#[error("cannot read this process's credentials from /proc/self/status: {0}")]
pub struct EnvError(#[from] std::io::Error);

/// The rights the checkpointer will have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpointer {
    /// Effective capabilities.
    pub caps: u64,
    /// Real uid and gid (what prlimit compares).
    pub uid: u32,
    pub gid: u32,
    /// `/proc/sys/kernel/yama/ptrace_scope`, when Yama is there.
    pub ptrace_scope: Option<u8>,
}

impl Checkpointer {
    pub fn current() -> Result<Self, EnvError> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok();
        Ok(Self::from_status(&status, scope.as_deref()))
    }

    fn from_status(status: &str, ptrace_scope: Option<&str>) -> Self {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or("")
        };
        let first = |key: &str| {
            field(key)
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u32::MAX)
        };
        Self {
            caps: u64::from_str_radix(field("CapEff:"), 16).unwrap_or(0),
            uid: first("Uid:"),
            gid: first("Gid:"),
            ptrace_scope: ptrace_scope.and_then(|s| s.trim().parse().ok()),
        }
    }

    fn has(&self, cap: u32) -> bool {
        self.caps & (1u64 << cap) != 0
    }

    /// Whether prlimit(2) on the task is allowed without CAP_SYS_RESOURCE.
    fn ids_match(&self, t: &ProcInfo) -> bool {
        t.uid.iter().all(|&u| u == self.uid) && t.gid.iter().all(|&g| g == self.gid)
    }
}

fn judgement(rule: &str, verdict: Verdict, reason: String, options: &[&str]) -> Judgement {
    Judgement {
        verdict,
        kind: "checkpointer".into(),
        rule: rule.into(),
        reason,
        options: options.iter().map(|o| o.to_string()).collect(),
    }
}

/// `pid 12 (nginx) uid 101, ...`, at most a few.
fn list(tasks: &[&ProcInfo]) -> String {
    const SHOWN: usize = 4;
    let mut s: Vec<String> = tasks
        .iter()
        .take(SHOWN)
        .map(|t| {
            format!(
                "pid {} ({}) uid {} gid {}",
                t.pid, t.comm, t.uid[0], t.gid[0]
            )
        })
        .collect();
    if tasks.len() > SHOWN {
        s.push(format!("and {} more", tasks.len() - SHOWN));
    }
    s.join(", ")
}

/// The checks that depend on which tasks are dumped.
pub fn judge_tasks(cp: &Checkpointer, tasks: &[&ProcInfo]) -> Vec<Judgement> {
    let mut out = Vec::new();
    out.push(if cp.has(CAP_SYS_ADMIN) {
        judgement("privileges", Verdict::Ok, "CAP_SYS_ADMIN".into(), &[])
    } else if cp.has(CAP_CHECKPOINT_RESTORE) {
        judgement(
            "privileges",
            Verdict::Needs,
            "no CAP_SYS_ADMIN: CRIU (≥ 3.18) dumps with CAP_CHECKPOINT_RESTORE in unprivileged mode".into(),
            &["--unprivileged"],
        )
    } else {
        judgement(
            "privileges",
            Verdict::Blocks,
            "the checkpointer has neither CAP_SYS_ADMIN nor CAP_CHECKPOINT_RESTORE: run it as root".into(),
            &[],
        )
    });

    let foreign_uid: Vec<&ProcInfo> = tasks
        .iter()
        .copied()
        .filter(|t| t.uid.iter().any(|&u| u != cp.uid))
        .collect();
    out.push(match cp.ptrace_scope {
        Some(3) => judgement(
            "ptrace",
            Verdict::Blocks,
            "kernel.yama.ptrace_scope = 3 forbids every ptrace attach: CRIU cannot seize any task".into(),
            &[],
        ),
        Some(2) if !cp.has(CAP_SYS_PTRACE) => judgement(
            "ptrace",
            Verdict::Blocks,
            "kernel.yama.ptrace_scope = 2 allows ptrace only with CAP_SYS_PTRACE, which the checkpointer lacks".into(),
            &[],
        ),
        _ if !foreign_uid.is_empty() && !cp.has(CAP_SYS_PTRACE) => judgement(
            "ptrace",
            Verdict::Blocks,
            format!(
                "without CAP_SYS_PTRACE the checkpointer cannot seize tasks of another uid: {}",
                list(&foreign_uid)
            ),
            &[],
        ),
        _ => judgement("ptrace", Verdict::Ok, "every task can be seized".into(), &[]),
    });

    let foreign_ids: Vec<&ProcInfo> = tasks.iter().copied().filter(|t| !cp.ids_match(t)).collect();
    out.push(if cp.has(CAP_SYS_RESOURCE) {
        judgement("rlimits", Verdict::Ok, "CAP_SYS_RESOURCE".into(), &[])
    } else if foreign_ids.is_empty() {
        judgement(
            "rlimits",
            Verdict::Ok,
            format!(
                "no CAP_SYS_RESOURCE, but every task has the checkpointer's uid {} and gid {}",
                cp.uid, cp.gid
            ),
            &[],
        )
    } else {
        judgement(
            "rlimits",
            Verdict::Blocks,
            format!(
                "the checkpointer lacks CAP_SYS_RESOURCE, so it cannot read the rlimits of tasks whose uids or gids differ from its own ({}): CRIU fails with `Can't get rlimit 0: Operation not permitted`; run it with CAP_SYS_RESOURCE",
                list(&foreign_ids)
            ),
            &[],
        )
    });
    out
}

/// Kernel features CRIU needs whatever it dumps, as far as /proc shows them.
pub fn kernel_features() -> Vec<Judgement> {
    let feature = |rule: &str, present: bool, what: &str| {
        if present {
            judgement(rule, Verdict::Ok, what.into(), &[])
        } else {
            judgement(
                rule,
                Verdict::Blocks,
                format!(
                    "{what} is missing: the kernel lacks CONFIG_CHECKPOINT_RESTORE (criu check fails)"
                ),
                &[],
            )
        }
    };
    vec![
        feature(
            "map-files",
            Path::new("/proc/self/map_files").is_dir(),
            "/proc/PID/map_files",
        ),
        feature(
            "ns-last-pid",
            Path::new("/proc/sys/kernel/ns_last_pid").exists(),
            "/proc/sys/kernel/ns_last_pid",
        ),
        feature("kcmp", kcmp_works(), "the kcmp(2) system call"),
    ]
}

/// kcmp(2) of this process with itself: CRIU compares files and VMs with it.
fn kcmp_works() -> bool {
    const KCMP_VM: libc::c_long = 1;
    let pid = std::process::id() as libc::c_long;
    // SAFETY: kcmp takes integers only; comparing our own VM with itself has no effect.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_VM, 0, 0) };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(caps: u64) -> Checkpointer {
        Checkpointer {
            caps,
            uid: 0,
            gid: 0,
            ptrace_scope: Some(0),
        }
    }

    fn task(pid: u32, uid: u32, gid: u32) -> ProcInfo {
        ProcInfo {
            pid,
            comm: "t".into(),
            uid: [uid; 3],
            gid: [gid; 3],
            ..Default::default()
        }
    }

    fn verdict(js: &[Judgement], rule: &str) -> Verdict {
        js.iter().find(|j| j.rule == rule).unwrap().verdict
    }

    const ROOT_WITHOUT_SYS_RESOURCE: u64 = 0x1ff_feff_ffff;

    #[test]
    fn rlimits_block_for_foreign_ids_without_cap_sys_resource() {
        let (mine, other) = (task(1, 0, 0), task(2, 65534, 65534));
        let c = cp(ROOT_WITHOUT_SYS_RESOURCE);
        assert_eq!(verdict(&judge_tasks(&c, &[&mine]), "rlimits"), Verdict::Ok);
        let js = judge_tasks(&c, &[&mine, &other]);
        assert_eq!(verdict(&js, "rlimits"), Verdict::Blocks);
        let reason = &js.iter().find(|j| j.rule == "rlimits").unwrap().reason;
        assert!(
            reason.contains("Can't get rlimit 0") && reason.contains("pid 2"),
            "{reason}"
        );
        // A gid alone differing is enough (the kernel compares both).
        assert_eq!(
            verdict(&judge_tasks(&c, &[&task(3, 0, 5)]), "rlimits"),
            Verdict::Blocks
        );
        assert_eq!(
            verdict(&judge_tasks(&cp(!0), &[&other]), "rlimits"),
            Verdict::Ok
        );
    }

    #[test]
    fn privileges_and_ptrace() {
        let other = task(2, 1000, 1000);
        assert_eq!(
            verdict(&judge_tasks(&cp(0), &[]), "privileges"),
            Verdict::Blocks
        );
        let unpriv = judge_tasks(&cp(1 << CAP_CHECKPOINT_RESTORE), &[]);
        assert_eq!(verdict(&unpriv, "privileges"), Verdict::Needs);
        assert_eq!(
            verdict(&judge_tasks(&cp(0), &[&other]), "ptrace"),
            Verdict::Blocks
        );
        assert_eq!(
            verdict(&judge_tasks(&cp(!0), &[&other]), "ptrace"),
            Verdict::Ok
        );
        let mut yama3 = cp(!0);
        yama3.ptrace_scope = Some(3);
        assert_eq!(
            verdict(&judge_tasks(&yama3, &[]), "ptrace"),
            Verdict::Blocks
        );
    }

    #[test]
    fn reads_own_credentials_and_this_kernel() {
        let status = "Name:\tx\nUid:\t0\t0\t0\t0\nGid:\t7\t7\t7\t7\nCapEff:\t000001fffeffffff\n";
        let c = Checkpointer::from_status(status, Some("1\n"));
        assert_eq!((c.uid, c.gid, c.ptrace_scope), (0, 7, Some(1)));
        assert!(c.has(CAP_SYS_ADMIN) && !c.has(CAP_SYS_RESOURCE));
        assert!(Checkpointer::current().is_ok());
        assert!(kernel_features().iter().all(|j| j.verdict == Verdict::Ok));
    }
}
