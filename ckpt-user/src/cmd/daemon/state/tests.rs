use std::cell::Cell;
use std::collections::BTreeMap;

use ckpt_common::{FS_TYPE_LEN, FileFacts, NAME_LEN, TAG_FILE, TAG_TASK, flags, known};

use super::*;
use crate::classify::load_profile;
use crate::resolve::{OpsIdentity, Via};

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
        sk_wqueue: 0,
        sk_rqueue: 0,
        time: LATER,
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

/// A connected unix stream socket of inode `ino` whose peer is `peer` (0: not yet accepted).
fn unix_connected(pid: u32, fd: u32, ino: u64, peer: u64) -> FileFacts {
    let mut r = unix_stream(pid, fd);
    r.known |= known::UNIX_PEER;
    r.flags |= ckpt_common::flags::HAS_PEER;
    (r.ino, r.peer_ino, r.peer_state, r.sk_state) = (ino, peer, 1, 1);
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
        time: LATER,
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

/// A process in `sid`'s session that leads none.
fn member(pid: u32, ppid: u32, sid: u32) -> ProcInfo {
    ProcInfo {
        sid,
        pgid: sid,
        ..leader(pid, ppid)
    }
}

fn in_cgroup(p: ProcInfo, path: &str) -> ProcInfo {
    ProcInfo {
        cgroups: vec![path.to_string()],
        ..p
    }
}

/// On the events' clock: when the fixtures' rescans begin, and when events come by default.
const RESCANNED_AT: u64 = 1_000_000;
const LATER: u64 = 2_000_000;
const EARLIER: u64 = 500_000;

const SETTLE: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

struct Fixture {
    state: State,
    profile: Profile,
    given: GivenBy,
    /// The options of any container, as if its runc config file were annotated.
    annotated: Option<Given>,
    /// The settle clock.
    now: Duration,
    /// What /proc says of each process, and how often it was read.
    on_proc: HashMap<u32, ProcInfo>,
    reads: Cell<usize>,
    /// Pids /proc shows gone, dead or exiting.
    exited: HashSet<u32>,
    /// What /proc/PID/maps shows of a process's mappings of an inode, by (pid, inode): none
    /// unless set; `None`, not looked for.
    maps: HashMap<(u32, u64), Option<Vec<Mapping>>>,
}

/// Ops table `addr`, named by its data symbol.
fn named_table(addr: u64, name: &str) -> OpsIdentity {
    OpsIdentity {
        addr,
        name: Some(name.into()),
        module: None,
        members: BTreeMap::new(),
        via: Via::DataSymbol,
    }
}

/// A fixture's judging context, borrowing its fields apart from its state.
macro_rules! judging {
    ($f:expr) => {
        Judging {
            profile: &$f.profile,
            given: &$f.given,
            annotated: &|_| $f.annotated.clone(),
            read_proc: &|pid| {
                $f.reads.set($f.reads.get() + 1);
                $f.on_proc.get(&pid).cloned()
            },
            exited: &|pid| $f.exited.contains(&pid),
            mapped: &|pid, file| {
                $f.maps
                    .get(&(pid, file.ino))
                    .cloned()
                    .unwrap_or(Some(vec![]))
            },
        }
    };
}

fn session(id: u32) -> Key {
    Key {
        kind: Kind::Session,
        id: id.to_string(),
    }
}

impl Fixture {
    /// Session 10: its leader 10 and a child 11 that leads nothing; settled ok.
    fn new() -> Self {
        Self::with(
            vec![leader(10, 1), member(11, 10, 10)],
            GivenBy::default(),
            100,
        )
    }

    /// These processes, judged and settled (their first alerts, if any, already out).
    fn with(procs: Vec<ProcInfo>, given: GivenBy, per_minute: u32) -> Self {
        let mut f = Self::unsettled(procs, vec![], given, per_minute);
        f.settle();
        f.at(SETTLE);
        f.settle();
        f
    }

    fn unsettled(
        procs: Vec<ProcInfo>,
        files: Vec<FileFact>,
        given: GivenBy,
        per_minute: u32,
    ) -> Self {
        let mut f = Fixture {
            state: State::new(Settings {
                settle: SETTLE,
                max_alerts_per_minute: per_minute,
            }),
            profile: load_profile("criu-4").unwrap(),
            given,
            annotated: None,
            now: Duration::ZERO,
            on_proc: HashMap::new(),
            reads: Cell::new(0),
            exited: HashSet::new(),
            maps: HashMap::new(),
        };
        let snap = Snapshot {
            procs: procs.into_iter().map(|p| (p.pid, p)).collect(),
            files,
            ..Default::default()
        };
        let j = judging!(f);
        f.state.reconcile(&j, snap, RESCANNED_AT);
        f
    }

    /// Moves the settle clock forward.
    fn at(&mut self, later: Duration) {
        self.now += later;
    }

    fn settle(&mut self) -> Settled {
        let j = judging!(self);
        self.state.settle(&j, &Names::default(), self.now)
    }

    /// The alerts once `later` has passed.
    fn alerts_after(&mut self, later: Duration) -> Vec<(&'static str, String)> {
        self.at(later);
        events(&self.settle())
    }

    fn install(&mut self, rec: FileFacts) -> Outcome {
        self.state.installed(&judging!(self), &rec, &|_, _| true)
    }

    fn task(&mut self, ev: TaskEvent, alive: &dyn Fn(u32, &FileFact) -> bool) -> Outcome {
        let j = judging!(self);
        self.state.task(&j, &ev, alive)
    }

    /// `parent` forks `child`, which /proc then shows as it is given.
    fn fork(&mut self, parent: u32, child: ProcInfo) {
        let pid = child.pid;
        self.on_proc.insert(pid, child);
        self.task(task(task_event::FORK, parent, pid, 0), &|_, _| true);
    }

    fn verdict(&self, key: &Key) -> Option<Verdict> {
        self.state.workloads.get(key).and_then(|w| w.settled)
    }
}

/// A kept file whose fd is closed while the process still maps it stays judged as that mapping:
/// an io_uring's rings outlive its fd, and CRIU stops at them. Unmapped before the close, the
/// file goes with its fd.
#[test]
fn a_closed_fd_still_mapped_is_judged_as_its_mapping() {
    let mut f = Fixture::new();
    f.install(io_uring(11, 3));
    f.install(io_uring(11, 4));
    f.alerts_after(Duration::ZERO);
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 10)]);
    let ring = Mapping {
        start: 0x7000_0000,
        end: 0x7000_1000,
        vm_flags: 0xb,
        pgoff: 0,
    };
    f.maps.insert((11, 1003), Some(vec![ring.clone()]));
    f.task(task(task_event::CLOSE, 11, 3, 0), &|_, _| true);
    f.task(task(task_event::CLOSE, 11, 4, 0), &|_, _| true);
    assert!(f.alerts_after(SETTLE * 2).is_empty(), "still blocks");
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Blocks));
    let files = f.state.files_of(11);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        (files[0].fd, files[0].mapping.as_deref(), files[0].ino),
        (None, Some(&ring), 1003)
    );
    // The same mapping is kept once however often its file's fds close.
    f.install(io_uring(11, 3));
    f.task(task(task_event::CLOSE, 11, 3, 0), &|_, _| true);
    assert_eq!(f.state.files_of(11).len(), 1);
    // Mappings not looked for (the daemon's budget for reading them spent): kept as mapped.
    f.maps.insert((11, 1005), None);
    f.install(io_uring(11, 5));
    f.task(task(task_event::CLOSE, 11, 5, 0), &|_, _| true);
    let unknown = f
        .state
        .files_of(11)
        .into_iter()
        .find(|m| m.ino == 1005)
        .cloned();
    assert_eq!(
        unknown.and_then(|m| m.mapping).as_deref(),
        Some(&Mapping::unknown())
    );
}

/// A socket ok as an fd, reported as it is mapped ([`flags::MAPPED`]): its mapping is judged at
/// once. CRIU dumps a mapped socket only as a packet socket's ring, beside that socket's fd.
#[test]
fn a_mapped_socket_is_judged_by_its_mapping() {
    let mut f = Fixture::new();
    f.install(udp(11, 3));
    assert!(f.alerts_after(SETTLE * 2).is_empty(), "a UDP socket is ok");
    let at = Mapping {
        start: 0x7000_0000,
        end: 0x7000_1000,
        vm_flags: 0x9,
        pgoff: 0,
    };
    f.maps.insert((11, 1003), Some(vec![at.clone()]));
    let mut mapped = udp(11, 3);
    mapped.flags |= flags::MAPPED;
    f.install(mapped);
    f.alerts_after(Duration::ZERO);
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 10)]);
    let maps: Vec<_> = f
        .state
        .files_of(11)
        .into_iter()
        .filter_map(|m| m.mapping.as_deref())
        .cloned()
        .collect();
    assert_eq!(maps, [at]);
    // From before a rescan, of a process the rescan did not find: nothing is brought back.
    let mut gone = udp(12, 3);
    (gone.flags, gone.time) = (flags::MAPPED, EARLIER);
    f.maps.insert(
        (12, 1003),
        Some(vec![Mapping {
            start: 0x1000,
            end: 0x2000,
            vm_flags: 0x9,
            pgoff: 0,
        }]),
    );
    f.install(gone);
    assert!(f.state.files_of(12).is_empty());
}

/// Each alert's event and workload id.
fn events(out: &Settled) -> Vec<(&'static str, String)> {
    out.alerts
        .iter()
        .map(|c| (c.event, c.workload.id.clone()))
        .collect()
}

fn alert(event: &'static str, id: u32) -> (&'static str, String) {
    (event, id.to_string())
}

#[test]
fn a_change_alerts_once_it_has_held_and_names_what_decides_it() {
    let mut f = Fixture::new();
    let out = f.install(io_uring(11, 3));
    assert!(
        out.kernel.is_empty(),
        "kept, and already tracked by the kernel: {out:?}"
    );
    assert!(f.alerts_after(Duration::ZERO).is_empty(), "not held yet");
    assert!(f.alerts_after(SETTLE - MS).is_empty(), "not held yet");
    f.at(MS);
    let out = f.settle();
    assert_eq!(events(&out), [alert("became-blocking", 10)]);
    let c = &out.alerts[0];
    assert_eq!(c.workload.kind, Kind::Session);
    assert_eq!((c.workload.root, c.workload.name.as_str()), (10, "p10"));
    assert_eq!(
        (c.verdict, c.previous),
        (Verdict::Blocks, Some(Verdict::Ok))
    );
    let d = c.decider.as_ref().expect("a decider");
    assert_eq!((d.pid, d.fd, d.kind.as_str()), (11, Some(3), "io_uring"));
    assert!(f.alerts_after(SETTLE * 5).is_empty(), "once");

    f.task(task(task_event::CLOSE, 11, 3, 0), &|_, _| true);
    assert!(f.alerts_after(Duration::ZERO).is_empty());
    assert!(f.alerts_after(SETTLE / 2).is_empty());
    let out = {
        f.at(SETTLE / 2);
        f.settle()
    };
    assert_eq!(events(&out), [alert("became-ok", 10)]);
    assert_eq!(out.alerts[0].previous, Some(Verdict::Blocks));
    assert!(out.alerts[0].decider.is_none());
}

#[test]
fn a_process_shorter_than_the_settle_time_never_alerts() {
    let mut f = Fixture::new();
    // A child that leads no session (as `sleep` under a shell): part of the leader's dump.
    f.fork(10, member(12, 10, 10));
    f.task(task(task_event::EXEC, 12, 0, 0), &|_, _| true);
    assert!(f.alerts_after(SETTLE / 2).is_empty());
    // One in a session of its own that holds an io_uring, then exits.
    f.fork(10, leader(20, 10));
    f.install(io_uring(20, 4));
    assert!(f.alerts_after(SETTLE - MS).is_empty());
    f.task(task(task_event::EXIT, 20, 0, 0), &|_, _| true);
    f.task(task(task_event::EXIT, 12, 0, 0), &|_, _| true);
    assert!(f.alerts_after(Duration::ZERO).is_empty());
    assert!(
        f.alerts_after(SETTLE * 3).is_empty(),
        "an exited workload raises nothing"
    );
    assert!(!f.state.workloads.contains_key(&session(20)));
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Ok));
}

#[test]
fn changes_coalesce_into_the_net_one() {
    let mut f = Fixture::new();
    // Session 10 loses its leader: 11 is its root and leads nothing (needs --shell-job) ...
    f.task(task(task_event::EXIT, 10, 0, 0), &|_, _| true);
    assert!(f.alerts_after(SETTLE / 4).is_empty());
    // ... and before that held, it opens an io_uring.
    f.install(io_uring(11, 3));
    assert!(f.alerts_after(SETTLE / 4).is_empty());
    let out = {
        f.at(SETTLE);
        f.settle()
    };
    assert_eq!(events(&out), [alert("became-blocking", 10)]);
    assert_eq!(out.alerts[0].previous, Some(Verdict::Ok));
    assert_eq!(out.alerts[0].workload.root, 11);
}

#[test]
fn a_flapping_workload_alerts_once_it_stops() {
    let mut f = Fixture::new();
    for _ in 0..31 {
        f.install(io_uring(11, 3));
        assert!(f.alerts_after(MS * 2).is_empty());
        f.task(task(task_event::CLOSE, 11, 3, 0), &|_, _| true);
        assert!(f.alerts_after(MS).is_empty());
    }
    assert!(f.alerts_after(SETTLE * 2).is_empty(), "back where it was");
    f.install(io_uring(11, 3));
    f.settle();
    assert_eq!(
        f.alerts_after(SETTLE),
        [alert("became-blocking", 10)],
        "once it holds"
    );
}

#[test]
fn workloads_seen_at_start_alert_once_each_not_per_process() {
    let procs = vec![
        leader(10, 1),
        member(11, 10, 10),
        member(12, 10, 10),
        member(13, 12, 10),
        leader(20, 1),
        member(21, 20, 20),
    ];
    let files = [11, 12, 13, 21]
        .map(|pid| FileFact::from_file(&io_uring(pid, 5)))
        .to_vec();
    let mut f = Fixture::unsettled(procs, files, GivenBy::default(), 100);
    assert!(f.alerts_after(Duration::ZERO).is_empty(), "held first");
    let out = {
        f.at(SETTLE);
        f.settle()
    };
    let mut ev = events(&out);
    ev.sort();
    assert_eq!(
        ev,
        [alert("became-blocking", 10), alert("became-blocking", 20)]
    );
    assert!(out.alerts.iter().all(|c| c.previous.is_none()), "new");
    // Its leader alone decides a session that is ok apart from it.
    let mut f = Fixture::unsettled(
        (100..300)
            .map(|pid| member(pid, 99, 99))
            .chain([leader(99, 1)])
            .collect(),
        vec![],
        GivenBy::default(),
        100,
    );
    f.settle();
    assert!(
        f.alerts_after(SETTLE).is_empty(),
        "200 idle processes under their leader"
    );
}

#[test]
fn a_workload_nested_in_another_tells_of_its_own_blocker() {
    let mut f = Fixture::new();
    // 11 starts a process that leads a session of its own (as fdctl and daemons do).
    f.fork(11, leader(30, 11));
    f.install(io_uring(30, 3));
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 30)]);
    // The dump of session 10 holds it too: its verdict says so, without an alert of its own.
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Blocks));
    assert_eq!(f.verdict(&session(30)), Some(Verdict::Blocks));
    f.task(task(task_event::CLOSE, 30, 3, 0), &|_, _| true);
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-ok", 30)]);
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Ok));
}

#[test]
fn the_rate_limit_suppresses_and_reports_the_rest() {
    let procs: Vec<ProcInfo> = (0..5).map(|i| leader(40 + i, 1)).collect();
    let mut f = Fixture::with(procs, GivenBy::default(), 2);
    for i in 0..5 {
        f.install(io_uring(40 + i, 3));
    }
    f.settle();
    f.at(SETTLE);
    let out = f.settle();
    assert_eq!((out.alerts.len(), out.suppressed.len()), (2, 3), "{out:?}");
    assert!(out.suppressed.iter().all(|c| c.event == "became-blocking"));
    // Suppressed changes are settled all the same: they do not come back.
    assert!(f.alerts_after(SETTLE).is_empty());
    // Two a minute: one more after 30 s.
    for i in 0..5 {
        f.task(task(task_event::CLOSE, 40 + i, 3, 0), &|_, _| true);
    }
    f.settle();
    f.at(Duration::from_secs(30));
    let out = f.settle();
    assert_eq!((out.alerts.len(), out.suppressed.len()), (1, 4), "{out:?}");
}

#[test]
fn the_rate_limit_refills_to_its_burst() {
    let mut r = RateLimit::new(60);
    let t = Duration::from_secs(100);
    assert!((0..60).all(|_| r.take(t)));
    assert!(!r.take(t));
    assert!(r.take(t + Duration::from_secs(1)), "one a second");
    assert!(!r.take(t + Duration::from_secs(1)));
    let later = t + Duration::from_secs(3600);
    assert_eq!(
        (0..100).filter(|_| r.take(later)).count(),
        60,
        "burst capped"
    );
    assert!(!r.take(t), "a clock going back refills nothing");
}

#[test]
fn containers_and_units_are_workloads_with_their_engines_options() {
    let id = "3f4e2a1b9c0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
    let docker = format!("/system.slice/docker-{id}.scope");
    // A container init that leads no session (needs --shell-job), and a unit whose main
    // process leads none either.
    let procs = vec![
        leader(10, 1),
        in_cgroup(member(50, 1, 10), &docker),
        in_cgroup(member(51, 50, 10), &docker),
        in_cgroup(member(60, 1, 10), "/system.slice/app.service"),
    ];
    let shell_job = Given::parse("--shell-job", crate::checkpointer::given::Source::With).unwrap();
    let given = GivenBy {
        default: Given::default(),
        runtimes: vec![(Runtime::Docker, shell_job)],
    };
    let mut f = Fixture::unsettled(procs, vec![], given, 100);
    f.settle();
    f.at(SETTLE);
    let out = f.settle();
    assert_eq!(
        events(&out),
        [("needs-options", "/system.slice/app.service".to_string())],
        "the container's engine passes --shell-job"
    );
    assert_eq!(out.alerts[0].workload.name, "app.service");
    assert_eq!(out.alerts[0].options, ["--shell-job"]);
    let container = Key {
        kind: Kind::Container,
        id: id.into(),
    };
    assert_eq!(f.verdict(&container), Some(Verdict::Ok));
    let all = f.state.workloads();
    let c = all.iter().find(|w| w.workload.id == id).unwrap();
    assert_eq!((c.workload.root, c.members), (50, 2));
}

/// A container whose runc hands CRIU its own config file is judged with that file's options,
/// not its engine's.
#[test]
fn an_annotated_containers_own_options_win() {
    let id = "3f4e2a1b9c0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
    let docker = format!("/system.slice/docker-{id}.scope");
    let procs = vec![
        in_cgroup(member(50, 1, 10), &docker),
        in_cgroup(member(51, 50, 10), &docker),
    ];
    let shell_job = Given::parse("--shell-job", crate::checkpointer::given::Source::With).unwrap();
    let given = GivenBy {
        default: Given::default(),
        runtimes: vec![(Runtime::Docker, shell_job.clone())],
    };
    let container = Key {
        kind: Kind::Container,
        id: id.into(),
    };
    let mut f = Fixture::unsettled(procs.clone(), vec![], given.clone(), 100);
    f.annotated = Some(Given::default());
    f.settle();
    f.at(SETTLE);
    f.settle();
    assert_eq!(
        f.verdict(&container),
        Some(Verdict::Needs),
        "the annotated file does not give --shell-job"
    );
    let mut f = Fixture::unsettled(procs, vec![], given, 100);
    f.annotated = Some(shell_job);
    f.settle();
    f.at(SETTLE);
    f.settle();
    assert_eq!(f.verdict(&container), Some(Verdict::Ok));
}

#[test]
fn moving_to_another_session_moves_the_process_between_workloads() {
    let mut f = Fixture::new();
    f.install(io_uring(11, 3));
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 10)]);
    // 11 calls setsid: the blocker leaves session 10 for a session of its own.
    f.on_proc.insert(11, leader(11, 10));
    f.task(task(task_event::REFRESH, 11, 0, 0), &|_, _| true);
    f.settle();
    assert_eq!(
        f.alerts_after(SETTLE),
        [alert("became-blocking", 11)],
        "the dump of 10 still holds 11 (still blocking: nothing new), and 11 tells of it"
    );
    // Closed, both are ok again, and each told of its blocking once: each tells of this.
    f.task(task(task_event::CLOSE, 11, 3, 0), &|_, _| true);
    f.settle();
    let mut ev = f.alerts_after(SETTLE);
    ev.sort();
    assert_eq!(ev, [alert("became-ok", 10), alert("became-ok", 11)]);
}

#[test]
fn ok_files_are_not_kept_and_change_nothing() {
    let mut f = Fixture::new();
    let out = f.install(eventfd(10, 4));
    assert!(
        !out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::Track(_) | KernelUpdate::Untrack(_))),
        "{out:?}"
    );
    assert!(f.state.files_of(10).is_empty());
    assert!(f.state.dirty.is_empty(), "no workload to judge again");
    // The kernel reports its close (it tracks what it reported): that changes nothing.
    let out = f.task(task(task_event::CLOSE, 10, 4, 0), &|_, _| true);
    assert!(out.kernel.is_empty(), "{out:?}");
    // One still open when its process exits is untracked then, with the process gone.
    f.install(eventfd(11, 4));
    f.install(eventfd(11, 6));
    f.task(task(task_event::CLOSE, 11, 6, 0), &|_, _| true);
    let out = f.task(task(task_event::EXIT, 11, 0, 0), &|_, _| true);
    assert_eq!(out.kernel, [KernelUpdate::Untrack(fd_key(11, 4))]);
}

/// What rules each kind of file could match is kept from one install to the next, and judged
/// again once its ops table is named: a file that looked like an eventfd is an io_uring by its
/// table's name.
#[test]
fn files_are_judged_by_their_ops_tables_name_once_it_is_known() {
    const TABLE: u64 = 0xffff_0042;
    let mut f = Fixture::new();
    let plain = |fd| record(11, fd, TABLE, ANON, "anon_inodefs", "[eventfd]");
    let out = f.install(plain(5));
    assert!(
        out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::AlwaysOk(t, _) if *t == TABLE)),
        "{out:?}"
    );
    f.install(plain(6));
    f.settle();
    assert!(f.alerts_after(SETTLE).is_empty());
    assert!(f.state.files_of(11).is_empty(), "ok: not kept");
    let named = named_table(TABLE, "io_uring_fops");
    // Proven always ok as an eventfd, the table's files are dropped in the kernel: named,
    // it is forgotten there. Named the same again (every rescan names every table), nothing.
    let tables: OpsTables = [(TABLE, named)].into_iter().collect();
    let out = f.state.learn_ops(&judging!(f), tables.clone());
    assert_eq!(out.kernel, [KernelUpdate::ForgetAlwaysOk]);
    assert!(f.state.learn_ops(&judging!(f), tables).kernel.is_empty());
    f.install(plain(7));
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 10)]);
    assert_eq!(f.state.files_of(11).len(), 1);
}

/// A table whose files were judged before it was named is judged again by its name, and only
/// a proof that no longer holds voids the kernel's others. A rescan that finds files while the
/// event naming their table waits in the ring does this: /dev/null, ok by its major before and
/// after, changes nothing; a device not known ok is proven ok by its table at once.
#[test]
fn a_table_named_after_it_was_judged_is_judged_again() {
    const NULL: u64 = 0xffff_0043;
    const OTHER: u64 = 0xffff_0044;
    let mut f = Fixture::new();
    let device = |fd, f_op, major: u32| {
        let mut r = record(11, fd, f_op, 0o020666, "devtmpfs", "null");
        r.rdev = major << 20 | 3;
        r
    };
    let proofs_of = |out: &Outcome, table| {
        out.kernel
            .iter()
            .filter(|k| matches!(k, KernelUpdate::AlwaysOk(t, _) if *t == table))
            .count()
    };
    assert_eq!(
        proofs_of(&f.install(device(4, NULL, 1)), NULL),
        1,
        "by its major"
    );
    assert_eq!(
        proofs_of(&f.install(device(5, OTHER, 250)), OTHER),
        0,
        "unknown"
    );
    let tables: OpsTables = [(NULL, named_table(NULL, "null_fops"))]
        .into_iter()
        .collect();
    let out = f.state.learn_ops(&judging!(f), tables);
    assert!(out.kernel.is_empty(), "still ok, as proven: {out:?}");
    let tables: OpsTables = [(OTHER, named_table(OTHER, "null_fops"))]
        .into_iter()
        .collect();
    let out = f.state.learn_ops(&judging!(f), tables);
    assert_eq!(proofs_of(&out, OTHER), 1, "ok by its table: {out:?}");
    assert!(
        !out.kernel.contains(&KernelUpdate::ForgetAlwaysOk),
        "{out:?}"
    );
    assert!(
        f.install(device(6, OTHER, 250)).kernel.is_empty(),
        "offered once"
    );
}

/// A lock on a file ok by its kind (an eventfd here; a pipe or a memfd alike) is the task's:
/// CRIU stops at any lock without --file-locks. The kernel reports the fd again when a lock is
/// taken or dropped; the fact with its lock is kept, and dropped with it.
#[test]
fn a_lock_on_a_file_ok_by_its_kind_is_kept_until_it_is_dropped() {
    let mut f = Fixture::new();
    f.install(eventfd(11, 4));
    assert!(f.state.files_of(11).is_empty(), "ok and unlocked: not kept");
    let mut locked = eventfd(11, 4);
    locked.known |= known::LOCKS;
    locked.flags |= ckpt_common::flags::LOCKED;
    f.install(locked);
    assert_eq!(f.state.files_of(11).len(), 1, "locked: kept");
    assert!(f.alerts_after(Duration::ZERO).is_empty(), "not held yet");
    assert_eq!(f.alerts_after(SETTLE), [alert("needs-options", 10)]);
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Needs));

    let mut unlocked = eventfd(11, 4);
    unlocked.known |= known::LOCKS;
    f.install(unlocked);
    assert!(f.state.files_of(11).is_empty(), "unlocked: forgotten");
    assert!(f.alerts_after(Duration::ZERO).is_empty(), "not held yet");
    assert_eq!(f.alerts_after(SETTLE), [alert("became-ok", 10)]);

    // A rescan keeps it as well.
    let mut snap_file = FileFact::from_file(&locked);
    snap_file.pid = 10;
    let mut f = Fixture::unsettled(
        vec![leader(10, 1)],
        vec![snap_file],
        GivenBy::default(),
        100,
    );
    f.settle();
    f.at(SETTLE);
    f.settle();
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Needs));
}

#[test]
fn always_ok_tables_go_to_the_kernel_filter_once() {
    let mut f = Fixture::new();
    let out = f.install(eventfd(10, 4));
    let any = ckpt_common::OkFops {
        file_type: 0,
        rdev: ckpt_common::ANY_RDEV,
        only_plain: 0,
        _pad: 0,
    };
    assert_eq!(out.kernel, [KernelUpdate::AlwaysOk(EVENTFD_FOPS, any)]);
    assert!(
        f.install(eventfd(10, 5)).kernel.is_empty(),
        "analysed once per table"
    );
    let out = f.install(udp(10, 6));
    let udp_kind = ckpt_common::OkSock {
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
    f.install(unix_stream(10, 5));
    f.install(udp(10, 6));
    let kept: Vec<Option<u32>> = f.state.files_of(10).iter().map(|f| f.fd).collect();
    assert_eq!(kept, [Some(5)], "kept for peer relations");
}

#[test]
fn a_new_profile_voids_the_kernel_filters() {
    let mut f = Fixture::new();
    f.install(eventfd(10, 4));
    f.install(idle_tcp(10, 5));
    let out = f.state.profile_changed(&judging!(f));
    assert_eq!(out.kernel[0], KernelUpdate::ForgetAlwaysOk, "{out:?}");
    assert_eq!(
        tcp_state_masks(&out).len(),
        2,
        "the TCP kinds' states offered again, after the old are forgotten: {out:?}"
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
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 10)]);
    let out = f.task(task(task_event::FORK, 10, 12, 0), &|_, _| true);
    assert!(out.kernel.contains(&KernelUpdate::Track(fd_key(12, 3))));
    // The parent execs; its io_uring fd was close-on-exec. The child still holds its copy,
    // inside the leader's dump: still blocking, nothing new to say.
    let out = f.task(task(task_event::EXEC, 10, 0, 0), &|_, _| false);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(10, 3))));
    assert!(f.alerts_after(SETTLE * 2).is_empty());
    f.task(task(task_event::EXEC, 12, 0, 0), &|_, _| false);
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-ok", 10)]);
}

/// A fork copies its parent's facts; /proc is read for the child once, at its exec, and
/// never for a child that exits before anything of its own is judged.
#[test]
fn a_fork_and_its_exec_read_proc_once() {
    let mut f = Fixture::new();
    f.fork(10, member(12, 10, 10));
    assert_eq!(f.reads.get(), 0, "a fork copies its parent's facts");
    f.task(task(task_event::EXEC, 12, 0, 0), &|_, _| true);
    assert_eq!(f.reads.get(), 1);
    f.settle();
    assert_eq!(f.reads.get(), 1, "read at its exec, not again at settle");

    f.fork(10, member(13, 10, 10));
    f.task(task(task_event::EXIT, 13, 0, 0), &|_, _| true);
    f.settle();
    assert_eq!(f.reads.get(), 1, "gone before anything judged it");
}

/// A child that leaves its parent's session at once is judged in its own: /proc is read
/// before the next settle judges it, or before its first install is judged.
#[test]
fn a_forked_process_is_read_before_it_is_judged() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 10)]);
    // It inherits the io_uring and calls setsid before anything else.
    f.fork(10, leader(20, 10));
    assert_eq!(
        f.state.keys.get(&20),
        Some(&session(10)),
        "a copy until read"
    );
    f.settle();
    assert_eq!(f.state.keys.get(&20), Some(&session(20)));
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 20)]);

    f.fork(10, leader(30, 10));
    f.install(io_uring(30, 4));
    assert_eq!(
        f.state.keys.get(&30),
        Some(&session(30)),
        "read at its install"
    );
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-blocking", 30)]);
}

#[test]
fn exec_keeps_fds_that_survive() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    f.settle();
    f.at(SETTLE);
    f.settle();
    f.task(task(task_event::EXEC, 10, 0, 0), &|_, _| true);
    assert!(f.alerts_after(SETTLE * 2).is_empty());
    assert_eq!(f.verdict(&session(10)), Some(Verdict::Blocks));
}

#[test]
fn close_range_and_exit_forget_everything() {
    let mut f = Fixture::new();
    f.install(io_uring(10, 3));
    f.install(io_uring(10, 9));
    f.settle();
    f.at(SETTLE);
    f.settle();
    let out = f.task(task(task_event::CLOSE_RANGE, 10, 0, 5), &|_, _| true);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(10, 3))));
    assert!(f.alerts_after(SETTLE * 2).is_empty(), "fd 9 still blocks");
    f.task(task(task_event::CLOSE_RANGE, 10, 6, u32::MAX), &|_, _| true);
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), [alert("became-ok", 10)]);

    f.install(io_uring(11, 3));
    let out = f.task(task(task_event::EXIT, 11, 0, 0), &|_, _| true);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(11, 3))));
    assert!(
        f.alerts_after(SETTLE * 2).is_empty(),
        "an exit raises nothing"
    );
    assert_eq!(f.state.process_count(), 1);
}

#[test]
fn reconcile_finds_changes_and_resyncs_tracking() {
    let mut f = Fixture::with(vec![leader(10, 1), leader(11, 10)], GivenBy::default(), 100);
    f.install(io_uring(10, 3));
    // The rescan finds fd 3 gone (a missed close) and a new io_uring in 11.
    let snap = Snapshot {
        files: vec![FileFact::from_file(&io_uring(11, 5))],
        procs: BTreeMap::from([(10, leader(10, 1)), (11, leader(11, 10))]),
        ..Default::default()
    };
    let j = judging!(f);
    let out = f.state.reconcile(&j, snap, RESCANNED_AT);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(10, 3))));
    assert!(out.kernel.contains(&KernelUpdate::Track(fd_key(11, 5))));
    f.settle();
    assert_eq!(
        f.alerts_after(SETTLE),
        [alert("became-blocking", 11)],
        "10's io_uring never held"
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
    let j = judging!(f);
    let out = f.state.reconcile(&j, snap, RESCANNED_AT);
    assert!(out.kernel.contains(&KernelUpdate::Untrack(fd_key(11, 4))));
    let out = f.state.reconcile(
        &j,
        Snapshot {
            procs: BTreeMap::from([(10, leader(10, 1))]),
            ..Default::default()
        },
        RESCANNED_AT,
    );
    assert!(out.kernel.is_empty(), "untracked once: {out:?}");
}

/// A rescan of sessions 10 (leader 10, member 11) and 20, finding `files`.
fn rescanned(f: &mut Fixture, files: Vec<FileFacts>) -> Outcome {
    let snap = Snapshot {
        files: files.iter().map(FileFact::from_file).collect(),
        procs: BTreeMap::from([
            (10, leader(10, 1)),
            (11, member(11, 10, 10)),
            (20, leader(20, 1)),
        ]),
        ..Default::default()
    };
    let j = judging!(f);
    f.state.reconcile(&j, snap, RESCANNED_AT)
}

fn earlier(mut ev: TaskEvent) -> TaskEvent {
    ev.time = EARLIER;
    ev
}

fn kept_fds(f: &Fixture, pid: u32) -> Vec<u32> {
    f.state
        .files
        .get(&pid)
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default()
}

#[test]
fn events_from_before_a_rescan_do_not_undo_what_it_found() {
    let mut f = Fixture::new();
    // Read after the rescan, though it began after them: 11 had an eventfd on fd 3 and closed
    // it, then took an io_uring there, whose install was lost; 20 forked 11 long ago.
    let mut old = eventfd(11, 3);
    old.time = EARLIER;
    rescanned(&mut f, vec![io_uring(11, 3), io_uring(20, 5)]);
    let j = judging!(f);
    f.state.installed(&j, &old, &|_, _| false);
    let out = f.task(earlier(task(task_event::CLOSE, 11, 3, 0)), &|_, _| true);
    assert!(
        out.kernel.contains(&KernelUpdate::Track(fd_key(11, 3))),
        "the kernel dropped its tracking of fd 3 at the close: the io_uring is tracked again"
    );
    f.task(earlier(task(task_event::FORK, 20, 11, 0)), &|_, _| true);
    f.task(earlier(task(task_event::EXEC, 11, 0, 0)), &|_, _| false);
    assert_eq!(
        kept_fds(&f, 11),
        [3],
        "the rescan's io_uring stays, 20's is not copied"
    );
    f.settle();
    assert_eq!(
        f.alerts_after(SETTLE),
        [alert("became-blocking", 10), alert("became-blocking", 20)]
    );
    // Events from after the rescan are applied.
    f.task(task(task_event::CLOSE, 11, 3, 0), &|_, _| true);
    assert!(kept_fds(&f, 11).is_empty());
}

#[test]
fn an_install_the_rescan_passed_by_is_taken_if_its_fd_still_holds_it() {
    let mut f = Fixture::new();
    rescanned(&mut f, vec![]);
    // fd_install's programs run before the install: the rescan can pass the task in between.
    let mut missed = io_uring(11, 4);
    missed.time = EARLIER;
    let j = judging!(f);
    let out = f
        .state
        .installed(&j, &missed, &|pid, ff| (pid, ff.fd) == (11, Some(4)));
    assert_eq!(kept_fds(&f, 11), [4]);
    assert!(out.kernel.contains(&KernelUpdate::Track(fd_key(11, 4))));
    // One closed since is not: its close is as old, and not replayed.
    let mut closed = io_uring(11, 5);
    closed.time = EARLIER;
    let out = f.state.installed(&j, &closed, &|_, _| false);
    assert_eq!(kept_fds(&f, 11), [4]);
    assert!(out.kernel.is_empty(), "{out:?}");
    // Nor one that would replace what the rescan kept on its fd.
    let mut replaced = eventfd(11, 4);
    replaced.time = EARLIER;
    f.state.installed(&j, &replaced, &|_, _| true);
    assert_eq!(f.state.files[&11][&4].f_op, IO_URING_FOPS);
    // The kernel tracks the fds it reported: their process's exit untracks them.
    let out = f.task(task(task_event::EXIT, 11, 0, 0), &|_, _| true);
    for fd in [4, 5] {
        assert!(
            out.kernel.contains(&KernelUpdate::Untrack(fd_key(11, fd))),
            "fd {fd}: {out:?}"
        );
    }
}

#[test]
fn an_exit_from_before_a_rescan_ends_only_the_process_that_exited() {
    let mut f = Fixture::new();
    // sched_process_exit comes before the files are closed: the rescan found 20 exiting.
    rescanned(&mut f, vec![io_uring(20, 3)]);
    let exit = earlier(task(task_event::EXIT, 20, 0, 0));
    f.task(exit, &|_, _| true);
    assert_eq!(
        kept_fds(&f, 20),
        [3],
        "20 names a live process: another one"
    );
    f.exited.insert(20);
    f.task(exit, &|_, _| true);
    assert!(kept_fds(&f, 20).is_empty());
    assert_eq!(f.state.process_count(), 2);
}

/// A unix client connected before its server accepted has a peer with no inode; the
/// accepted end names it. Whichever is heard of first, the client is judged by where the
/// accepted end is held: here outside its dump (session 20's), so it needs an option, and so
/// does the server, whose peer is outside its own.
#[test]
fn a_unix_client_in_flight_learns_its_peer_from_the_accepted_end() {
    let client = || unix_connected(11, 3, 500, 0);
    let accepted = || unix_connected(20, 4, 501, 500);
    let needs = vec![alert("needs-options", 10), alert("needs-options", 20)];
    let fixture = || {
        Fixture::with(
            vec![leader(10, 1), member(11, 10, 10), leader(20, 1)],
            GivenBy::default(),
            100,
        )
    };
    let peer_of = |f: &Fixture, fd| {
        let s = f.state.files[&11][&fd].socket.as_ref().expect("a socket");
        s.peer.as_ref().expect("a peer").ino
    };
    let mut f = fixture();
    f.install(client());
    f.settle();
    assert!(
        f.alerts_after(SETTLE).is_empty(),
        "in flight: CRIU dumps it"
    );
    assert_eq!(peer_of(&f, 3), 0);
    f.install(accepted());
    assert_eq!(peer_of(&f, 3), 501);
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), needs, "accepted after");

    let mut f = fixture();
    f.install(accepted());
    f.install(client());
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), needs, "accepted first");

    let mut f = fixture();
    rescanned(&mut f, vec![client(), accepted()]);
    f.settle();
    assert_eq!(f.alerts_after(SETTLE), needs, "both in one rescan");
    // Once the accepted end is gone, nothing names the client's peer: a record of the client
    // read in flight again (a dup) is left so.
    f.task(task(task_event::CLOSE, 20, 4, 0), &|_, _| true);
    let mut dup = client();
    dup.fd = 5;
    f.install(dup);
    assert_eq!(peer_of(&f, 5), 0);
}

#[test]
fn the_hosts_init_is_no_workload() {
    let f = Fixture::with(
        vec![leader(1, 0), member(10, 1, 0), leader(20, 1)],
        GivenBy::default(),
        100,
    );
    let ids: Vec<String> = f
        .state
        .workloads()
        .into_iter()
        .map(|w| format!("{}:{}", w.workload.id, w.workload.root))
        .collect();
    assert_eq!(ids, ["0:10", "20:20"]);
}

/// A new TCP socket: AF_INET, SOCK_STREAM, IPPROTO_TCP, TCP_CLOSE.
fn idle_tcp(pid: u32, fd: u32) -> FileFacts {
    let mut tcp = record(pid, fd, SOCKET_FOPS, SOCK, "sockfs", "");
    tcp.known |= known::SOCKET;
    (tcp.sk_family, tcp.sk_type, tcp.sk_protocol, tcp.sk_state) = (2, 1, 6, 7);
    tcp
}

/// The state masks `out` gives TCP kinds.
fn tcp_state_masks(out: &Outcome) -> Vec<u32> {
    out.kernel
        .iter()
        .filter_map(|k| match k {
            KernelUpdate::OkSocketStates(kind, mask) if kind.protocol == 6 => Some(*mask),
            _ => None,
        })
        .collect()
}

/// Both TCP kinds get their ok states before any socket is seen; a new socket of theirs,
/// judged the same, offers nothing more.
#[test]
fn a_tcp_socket_kind_is_dropped_in_the_states_it_is_ok_in() {
    let mut f = Fixture::new();
    let out = f.state.offer_socket_kinds(&judging!(f));
    let families: Vec<u16> = out
        .kernel
        .iter()
        .filter_map(|k| match k {
            KernelUpdate::OkSocketStates(kind, _) => Some(kind.family),
            _ => None,
        })
        .collect();
    assert_eq!(families, [2, 10], "{out:?}");
    for mask in tcp_state_masks(&out) {
        let state = |s: u32| mask & (1 << s) != 0;
        assert!(
            state(7) && state(10),
            "closed and listening are ok: {mask:#x}"
        );
        assert!(
            !state(1) && !state(2),
            "established and syn-sent need an option: {mask:#x}"
        );
    }
    assert!(
        !out.kernel
            .iter()
            .any(|k| matches!(k, KernelUpdate::AlwaysOkSocket(..))),
        "TCP is never ok whatever its state"
    );
    let out = f.install(idle_tcp(10, 4));
    assert!(tcp_state_masks(&out).is_empty(), "offered already: {out:?}");
}

/// A kind's states are judged on a new socket of the kind, not on the first one seen: a
/// listener with connections in flight (itself needing --skip-in-flight) changes nothing.
#[test]
fn a_tcp_kinds_states_are_judged_on_a_new_socket_not_the_first_seen() {
    let mut f = Fixture::new();
    f.state.offer_socket_kinds(&judging!(f));
    let mut listener = idle_tcp(10, 4);
    listener.sk_state = 10;
    listener.known |= known::BACKLOG;
    listener.sk_backlog = 1;
    let out = f.install(listener);
    assert!(tcp_state_masks(&out).is_empty(), "{out:?}");
}

/// Offered before any socket's ops table is known, a kind's states are offered again when its
/// first socket's table makes a rule match: here, one that blocks closed sockets by table.
#[test]
fn a_tcp_kinds_states_are_offered_again_when_its_table_changes_them() {
    let mut f = Fixture::new();
    f.profile = crate::classify::parse_profile(
        r#"[profile]
name = "by-table"
checkpointer = "criu"
version = "0"

[[rule]]
id = "closed-by-table"
kind = "tcp"
verdict = "blocks"
reason = "closed"
when = [{ ops = "socket_file_ops", tcp_state = "close" }]

[[rule]]
id = "tcp-idle"
kind = "tcp"
verdict = "ok"
when = [{ tcp_state = ["listen", "close"] }]
"#,
        "by-table",
    )
    .unwrap();
    let offered = tcp_state_masks(&f.state.offer_socket_kinds(&judging!(f)));
    assert_eq!(offered, [1 << 7 | 1 << 10, 1 << 7 | 1 << 10]);
    let table = named_table(SOCKET_FOPS, "socket_file_ops");
    let tables: OpsTables = [(SOCKET_FOPS, table)].into_iter().collect();
    f.state.learn_ops(&judging!(f), tables);
    let out = f.install(idle_tcp(10, 4));
    assert_eq!(tcp_state_masks(&out), [1 << 10], "closed left out: {out:?}");
}

/// An idle TCP socket the kernel could not watch (its map full) is unknown, never ok; and,
/// as the first of its kind, it still offers the kind's ok states, or no socket of the kind
/// would be watched from then on.
#[test]
fn an_unwatched_idle_tcp_socket_is_unknown_and_still_offers_its_kinds_states() {
    let mut f = Fixture::new();
    let mut tcp = idle_tcp(11, 4);
    tcp.flags |= flags::UNWATCHED;
    let out = f.install(tcp);
    assert_eq!(tcp_state_masks(&out).len(), 1, "{out:?}");
    f.install(idle_tcp(11, 5));
    f.alerts_after(Duration::ZERO);
    assert_eq!(f.alerts_after(SETTLE), [alert("unknown", 10)]);
    let kept: Vec<Option<u32>> = f.state.files_of(11).iter().map(|k| k.fd).collect();
    assert_eq!(kept, [Some(4)], "the watched one is not kept");
}
