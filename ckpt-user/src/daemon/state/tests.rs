use std::collections::BTreeMap;

use ckpt_common::{FS_TYPE_LEN, FileFacts, NAME_LEN, TAG_FILE, TAG_TASK, known};

use super::*;
use crate::classify::load_profile;

const ANON: u32 = 0; // anonymous inodes carry no S_IFMT bits
const SOCK: u32 = 0o140777;
const IO_URING_FOPS: u64 = 0xffff_0001;
const EVENTFD_FOPS: u64 = 0xffff_0002;
const SOCKET_FOPS: u64 = 0xffff_0003;

fn bytes<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b
}

fn record(pid: u32, fd: u32, f_op: u64, mode: u32, fs: &str, name: &str) -> FileFacts {
    FileFacts {
        tag: TAG_FILE,
        tgid: pid,
        tid: pid,
        fd,
        f_op,
        ino: 1000 + fd as u64,
        size: 0,
        blocks: 0,
        s_magic: 0x0904_1934,
        rdev: 0,
        dev: 0,
        mode,
        nlink: 1,
        f_flags: 0,
        known: known::INODE | known::SUPER | known::NAME,
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
        fs_type: bytes::<FS_TYPE_LEN>(fs),
        name: bytes::<NAME_LEN>(name),
    }
}

fn io_uring(pid: u32, fd: u32) -> FileFacts {
    record(pid, fd, IO_URING_FOPS, ANON, "anon_inodefs", "[io_uring]")
}

fn eventfd(pid: u32, fd: u32) -> FileFacts {
    record(pid, fd, EVENTFD_FOPS, ANON, "anon_inodefs", "[eventfd]")
}

fn udp(pid: u32, fd: u32) -> FileFacts {
    let mut r = record(pid, fd, SOCKET_FOPS, SOCK, "sockfs", "");
    r.known |= known::SOCKET;
    (r.sk_family, r.sk_type, r.sk_protocol) = (2, 2, 17);
    r
}

fn unix_stream(pid: u32, fd: u32) -> FileFacts {
    let mut r = record(pid, fd, SOCKET_FOPS, SOCK, "sockfs", "");
    r.known |= known::SOCKET;
    (r.sk_family, r.sk_type, r.sk_state) = (1, 1, 7);
    r
}

fn task(kind: u32, tgid: u32, arg: u32, arg2: u32) -> TaskEvent {
    TaskEvent {
        tag: TAG_TASK,
        kind,
        tgid,
        arg,
        arg2,
        _pad: 0,
    }
}

fn leader(pid: u32, ppid: u32) -> ProcInfo {
    ProcInfo {
        pid,
        ppid,
        sid: pid,
        pgid: pid,
        comm: format!("p{pid}"),
        ..Default::default()
    }
}

struct Fixture {
    state: State,
    profile: Profile,
    given: Given,
}

impl Fixture {
    /// Processes 10 (parent) and 11 (its child), no files yet.
    fn new() -> Self {
        let snap = Snapshot {
            procs: BTreeMap::from([(10, leader(10, 1)), (11, leader(11, 10))]),
            ..Default::default()
        };
        let mut f = Fixture {
            state: State::default(),
            profile: load_profile("criu-4").unwrap(),
            given: Given::default(),
        };
        let out = f.state.reconcile(
            &Judging {
                profile: &f.profile,
                given: &f.given,
            },
            snap,
        );
        assert!(
            out.changes.is_empty(),
            "ok processes raise no alert at start"
        );
        f
    }

    fn install(&mut self, rec: FileFacts) -> Outcome {
        self.state.installed(
            &Judging {
                profile: &self.profile,
                given: &self.given,
            },
            &rec,
        )
    }

    fn task(&mut self, ev: TaskEvent, alive: &dyn Fn(u32, &FileFact) -> bool) -> Outcome {
        let j = Judging {
            profile: &self.profile,
            given: &self.given,
        };
        self.state.task(&j, &ev, &|_| None, alive)
    }
}

fn events(out: &Outcome) -> Vec<(&'static str, u32)> {
    out.changes
        .iter()
        .map(|c| (c.event, c.report.pid))
        .collect()
}

#[test]
fn blocking_fd_alerts_and_its_close_clears() {
    let mut f = Fixture::new();
    let out = f.install(io_uring(10, 3));
    assert_eq!(events(&out), [("became-blocking", 10)]);
    assert!(
        out.kernel.is_empty(),
        "kept, and already tracked by the kernel: {out:?}"
    );
    let report = &out.changes[0].report;
    assert_eq!(report.files[0].kind, "io_uring");

    let out = f.task(task(task_event::CLOSE, 10, 3, 0), &|_, _| true);
    assert_eq!(events(&out), [("became-ok", 10)]);
    assert!(
        out.kernel.is_empty(),
        "the kernel untracked it as it reported the close; fd 3 may be tracked anew: {out:?}"
    );
}

#[test]
fn ok_files_are_not_kept_and_raise_nothing() {
    let mut f = Fixture::new();
    let out = f.install(eventfd(10, 4));
    assert!(out.changes.is_empty());
    assert!(
        !out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::Track(_) | KernelUpdate::Untrack(_))),
        "{out:?}"
    );
    assert!(f.state.files_of(10).is_empty());
    // The kernel reports its close (it tracks what it reported): that changes nothing.
    let out = f.task(task(task_event::CLOSE, 10, 4, 0), &|_, _| true);
    assert!(out.changes.is_empty() && out.kernel.is_empty(), "{out:?}");
    // One still open when its process exits is untracked then, with the process gone.
    f.install(eventfd(11, 4));
    f.install(eventfd(11, 6));
    f.task(task(task_event::CLOSE, 11, 6, 0), &|_, _| true);
    let out = f.task(task(task_event::EXIT, 11, 0, 0), &|_, _| true);
    assert_eq!(out.kernel, [KernelUpdate::Untrack(fd_key(11, 4))]);
}

#[test]
fn always_ok_tables_go_to_the_kernel_filter_once() {
    let mut f = Fixture::new();
    let out = f.install(eventfd(10, 4));
    let any = ckpt_common::OkFops {
        file_type: 0,
        rdev: ckpt_common::ANY_RDEV,
    };
    assert_eq!(out.kernel, [KernelUpdate::AlwaysOk(EVENTFD_FOPS, any)]);
    assert!(
        f.install(eventfd(10, 5)).kernel.is_empty(),
        "analysed once per table"
    );
    let out = f.install(udp(10, 6));
    let udp_kind = ckpt_common::OkSock {
        f_op: SOCKET_FOPS,
        family: 2,
        sk_type: 2,
        protocol: 17,
        _pad: 0,
    };
    assert!(
        out.kernel.contains(&KernelUpdate::AlwaysOkSocket(udp_kind)),
        "UDP is ok whatever its state: {out:?}"
    );
    assert!(
        !out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::AlwaysOk(..))),
        "the socket table itself is never dropped"
    );
    let out = f.install(unix_stream(10, 8));
    assert!(
        !out.kernel.iter().any(|k| matches!(
            k,
            KernelUpdate::AlwaysOk(..) | KernelUpdate::AlwaysOkSocket(..)
        )),
        "a unix socket depends on its peer"
    );
    let out = f.install(io_uring(10, 7));
    assert!(
        !out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::AlwaysOk(..))),
        "io_uring blocks"
    );
}

#[test]
fn unix_sockets_are_kept_even_when_ok_and_other_sockets_are_not() {
    let mut f = Fixture::new();
    assert!(f.install(unix_stream(10, 5)).changes.is_empty());
    assert!(f.install(udp(10, 6)).changes.is_empty());
    let kept: Vec<Option<u32>> = f.state.files_of(10).iter().map(|f| f.fd).collect();
    assert_eq!(kept, [Some(5)], "kept for peer relations");
}

#[test]
fn a_new_profile_voids_the_kernel_filters() {
    let mut f = Fixture::new();
    f.install(eventfd(10, 4));
    assert_eq!(
        f.state.profile_changed().kernel,
        [KernelUpdate::ForgetAlwaysOk]
    );
    let out = f.install(eventfd(10, 5));
    assert!(
        out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::AlwaysOk(EVENTFD_FOPS, _))),
        "analysed again under the new profile: {out:?}"
    );
}

#[test]
fn fork_inherits_blocking_fds_and_exec_clears_closed_ones() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    let out = f.task(task(task_event::FORK, 10, 12, 0), &|_, _| true);
    assert_eq!(events(&out), [("became-blocking", 12)]);
    assert!(out.kernel.contains(&KernelUpdate::Track(fd_key(12, 3))));

    // The child execs; its io_uring fd was close-on-exec. Forked, it leads no session: it
    // still needs --shell-job.
    let out = f.task(task(task_event::EXEC, 12, 0, 0), &|_, _| false);
    assert_eq!(events(&out), [("needs-options", 12)]);
    assert_eq!(out.changes[0].report.options, ["--shell-job"]);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(12, 3))));
    // The parent still holds its own.
    assert_eq!(f.state.verdicts.get(&10), Some(&Verdict::Blocks));
}

#[test]
fn exec_keeps_fds_that_survive() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    let out = f.task(task(task_event::EXEC, 10, 0, 0), &|_, _| true);
    assert!(out.changes.is_empty());
    assert_eq!(f.state.verdicts.get(&10), Some(&Verdict::Blocks));
}

#[test]
fn close_range_and_exit_forget_everything() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    f.install(io_uring(10, 9));
    let out = f.task(task(task_event::CLOSE_RANGE, 10, 0, 5), &|_, _| true);
    assert!(out.changes.is_empty(), "fd 9 still blocks");
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(10, 3))));
    let out = f.task(task(task_event::CLOSE_RANGE, 10, 6, u32::MAX), &|_, _| true);
    assert_eq!(events(&out), [("became-ok", 10)]);

    f.install(io_uring(11, 3));
    let out = f.task(task(task_event::EXIT, 11, 0, 0), &|_, _| true);
    assert!(out.changes.is_empty(), "an exit raises no alert");
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(11, 3))));
    assert_eq!(f.state.process_count(), 1);
}

#[test]
fn reconcile_reports_changes_and_resyncs_tracking() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    // The rescan finds fd 3 gone (a missed close) and a new io_uring in 11.
    let snap = Snapshot {
        files: vec![FileFact::from_file(&io_uring(11, 5))],
        procs: BTreeMap::from([(10, leader(10, 1)), (11, leader(11, 10))]),
        ..Default::default()
    };
    let j = Judging {
        profile: &f.profile,
        given: &f.given,
    };
    let out = f.state.reconcile(&j, snap);
    let mut ev = events(&out);
    ev.sort();
    assert_eq!(ev, [("became-blocking", 11), ("became-ok", 10)]);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(10, 3))));
    assert!(out.kernel.contains(&KernelUpdate::Track(fd_key(11, 5))));
}

#[test]
fn setsid_after_exec_is_seen_through_a_refresh() {
    let mut f = Fixture::new();
    let follower = ProcInfo {
        sid: 10,
        ..leader(12, 10)
    };
    let j = Judging {
        profile: &f.profile,
        given: &f.given,
    };
    let fork = task(task_event::FORK, 10, 12, 0);
    let out = f
        .state
        .task(&j, &fork, &|_| Some(follower.clone()), &|_, _| true);
    assert_eq!(
        events(&out),
        [("needs-options", 12)],
        "a forked child leads no session"
    );
    let refresh = task(task_event::REFRESH, 12, 0, 0);
    let out = f
        .state
        .task(&j, &refresh, &|_| Some(leader(12, 10)), &|_, _| true);
    assert_eq!(events(&out), [("became-ok", 12)]);
}

#[test]
fn change_events_follow_verdicts() {
    assert_eq!(change_event(None, Verdict::Ok), None);
    assert_eq!(change_event(None, Verdict::Needs), Some("needs-options"));
    assert_eq!(change_event(Some(Verdict::Needs), Verdict::Needs), None);
    assert_eq!(
        change_event(Some(Verdict::Needs), Verdict::Blocks),
        Some("became-blocking")
    );
    assert_eq!(
        change_event(Some(Verdict::Blocks), Verdict::Unknown),
        Some("unknown")
    );
    assert_eq!(
        change_event(Some(Verdict::Blocks), Verdict::Ok),
        Some("became-ok")
    );
}

#[test]
fn a_rescan_untracks_reported_fds_of_processes_gone() {
    let mut f = Fixture::new();
    f.install(eventfd(11, 4));
    // Process 11 exited and its exit event was lost: the rescan no longer finds it.
    let snap = Snapshot {
        procs: BTreeMap::from([(10, leader(10, 1))]),
        ..Default::default()
    };
    let j = Judging {
        profile: &f.profile,
        given: &f.given,
    };
    let out = f.state.reconcile(&j, snap);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(11, 4))));
    let out = f.state.reconcile(
        &j,
        Snapshot {
            procs: BTreeMap::from([(10, leader(10, 1))]),
            ..Default::default()
        },
    );
    assert!(out.kernel.is_empty(), "untracked once: {out:?}");
}
