//! The host scan speaks in workloads (DESIGN.md §7), on real processes and real cgroups: a
//! container by its engine's cgroup, a systemd unit by its `.service`/`.scope` cgroup, else a
//! session under its leader. Each is judged as the dump its root implies, the worst first.

use ckpt_tests::{Fdctl, Sh, Started, TestCgroups, Zoo, ckpt_watch, container_id, run_env};
use serde_json::Value;

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");
const FDCTL: &str = env!("CARGO_BIN_EXE_fdctl");
/// These tests judge workloads, not the installed CRIU (which `criu check` would ask).
const NO_CRIU: (&str, &str) = ("PATH", "/ckpt-watch-tests/no-criu-on-this-path");

fn host_scan() -> Value {
    let out = run_env(
        &ckpt_watch(FDZOO),
        &["--json", "--profile", "criu-4"],
        &[NO_CRIU],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

fn zoo(case: &str) -> Zoo {
    match Zoo::start(FDZOO, case) {
        Started::Ready(z) => z,
        Started::Unsupported(why) => panic!("{case} cannot be created here: {why}"),
    }
}

fn rank(verdict: &str) -> u8 {
    match verdict {
        "blocks" => 3,
        "unknown" => 2,
        "needs" => 1,
        _ => 0,
    }
}

fn workload_rooted_at(doc: &Value, pid: u32) -> Option<&Value> {
    doc["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["root"] == pid)
}

/// A blocking session, a unit and a container, found as what they are, worst first, each with
/// what decides it.
#[test]
fn host_scan_lists_workloads_worst_first() {
    let cg = TestCgroups::new("workloads");
    let blocker = zoo("io_uring");
    let unit = cg.dir("ckpt-test-app.service");
    let unit_sh = Sh::start("exec sleep 1000", None);
    TestCgroups::add(&unit, unit_sh.pid);
    let id = container_id("");
    let container = cg.dir(&format!("libpod-{id}.scope"));
    let locked = zoo("flock_ex");
    TestCgroups::add(&container, locked.pid);

    let doc = host_scan();
    let ws = doc["workloads"].as_array().expect("workloads");
    assert!(
        ws.windows(2).all(|p| {
            rank(p[0]["verdict"].as_str().unwrap()) >= rank(p[1]["verdict"].as_str().unwrap())
        }),
        "not worst first: {doc}"
    );
    assert_eq!(doc["verdict"], "blocks", "{doc}");

    let b = workload_rooted_at(&doc, blocker.pid).expect("the io_uring holder's session");
    assert_eq!(
        (b["kind"].as_str(), b["verdict"].as_str()),
        (Some("session"), Some("blocks"))
    );
    let files = b["processes"][0]["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["kind"] == "io_uring"), "{b}");

    let u = workload_rooted_at(&doc, unit_sh.pid).expect("the unit");
    assert_eq!(u["kind"], "unit", "{u}");
    assert_eq!(u["name"], "ckpt-test-app.service", "{u}");
    assert!(
        u["id"]
            .as_str()
            .unwrap()
            .ends_with("/ckpt-test-app.service"),
        "{u}"
    );

    let c = ws
        .iter()
        .find(|w| w["id"] == id.as_str())
        .expect("the container");
    assert_eq!(
        (
            c["kind"].as_str(),
            c["root"].as_u64(),
            c["verdict"].as_str()
        ),
        (Some("container"), Some(locked.pid as u64), Some("needs")),
        "{c}"
    );
    assert_eq!(c["options"], serde_json::json!(["--file-locks"]), "{c}");

    // The text report: the blocking session before the container that needs options.
    let out = run_env(&ckpt_watch(FDZOO), &["--profile", "criu-4"], &[NO_CRIU]);
    let text = String::from_utf8_lossy(&out.stdout);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
    };
    assert!(at(&format!("session {}", blocker.pid)) < at(&format!("container {}", &id[..12])));
    assert!(text.contains("io_uring"), "{text}");
    assert!(
        text.lines().last().unwrap().contains(" workloads: "),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// A process that is not a session leader is part of its leader's dump: no workload of its
/// own, no `needs --shell-job`. A session whose leader is gone is rooted at its top process.
#[test]
fn children_belong_to_their_leaders_dump() {
    let sh = Sh::start("sleep 1000 & sleep 1000 & wait", None);
    let children = sh.children(2);
    let doc = host_scan();
    let w = workload_rooted_at(&doc, sh.pid).expect("the session");
    assert_eq!(
        (w["kind"].as_str(), w["id"].as_str()),
        (Some("session"), Some(sh.pid.to_string().as_str()))
    );
    assert_ne!(w["verdict"], "needs", "{w}");
    for child in &children {
        assert!(
            workload_rooted_at(&doc, *child).is_none(),
            "child {child} has its own workload"
        );
    }
    // --processes keeps the per-process view: there the child alone needs --shell-job.
    let out = run_env(
        &ckpt_watch(FDZOO),
        &["--json", "--profile", "criu-4", "--processes"],
        &[NO_CRIU],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let child = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == children[0])
        .expect("the child, per process");
    assert_eq!(
        child["options"],
        serde_json::json!(["--shell-job"]),
        "{child}"
    );
}

/// A worker pool's inherited files are judged for every holder, under its own pid and fd, with
/// what depends on the holder judged for each: the leader's POSIX lock on a deleted file is its
/// own (its files table owns it), and its children hold the same open file unlocked, which
/// needs nothing of them.
#[test]
fn files_a_pool_shares_are_judged_for_every_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool-lock");
    let mut pool = Fdctl::start(FDCTL);
    let ring = pool.open("io_uring");
    let locked = pool.open(&format!("file {}", path.display()));
    std::fs::remove_file(&path).unwrap();
    pool.send(&format!("lock {locked}"));
    let workers: Vec<u64> = (0..3)
        .map(|_| {
            let reply = pool.send("fork");
            reply.strip_prefix("child ").unwrap().parse().unwrap()
        })
        .collect();

    let doc = host_scan();
    let w = workload_rooted_at(&doc, pool.pid).expect("the pool's session");
    let files_of = |pid: u64| -> Vec<(u64, String, Value)> {
        let p = w["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("process {pid} not in {w}"));
        p["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let kind = f["kind"].as_str().unwrap().to_string();
                (f["fd"].as_u64().unwrap(), kind, f["options"].clone())
            })
            .collect()
    };
    let io_uring = (ring as u64, "io_uring".to_string(), serde_json::json!([]));
    assert_eq!(
        files_of(pool.pid as u64),
        [
            io_uring.clone(),
            (
                locked as u64,
                "locked-file".into(),
                serde_json::json!(["--file-locks"])
            )
        ],
        "{w}"
    );
    for worker in workers {
        assert_eq!(files_of(worker), std::slice::from_ref(&io_uring), "{w}");
    }
}

/// A lock on a file whose kind the host scan counts in the kernel as ok (a pipe, a memfd, a
/// plain file with a lease) still reaches the verdict: CRIU stops at every lock a dumped task
/// holds.
#[test]
fn a_lock_on_a_file_ok_by_its_kind_needs_file_locks() {
    let cases = [
        zoo("flock_pipe"),
        zoo("posix_lock_memfd"),
        zoo("lease_read"),
    ];
    let doc = host_scan();
    for case in &cases {
        let w = workload_rooted_at(&doc, case.pid).expect("the lock holder's session");
        assert_eq!(
            (w["verdict"].as_str(), &w["options"]),
            (Some("needs"), &serde_json::json!(["--file-locks"])),
            "{w}"
        );
        let task = &w["processes"][0]["task"];
        assert!(
            task.as_array()
                .unwrap()
                .iter()
                .any(|j| j["rule"] == "holds-file-locks"),
            "{w}"
        );
    }
}
