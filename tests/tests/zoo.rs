//! Every case of the CRIU 4.2 oracle that fdzoo can create on this kernel, judged by the real
//! binary with `--pid`: the verdict and the options must be what real CRIU needed. Cases the
//! table lacks are held to what CRIU's source does.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use ckpt_tests::{Started, Zoo, ckpt_watch, run};

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");

struct Expected {
    case: String,
    verdict: &'static str,
    /// Option names (`--tcp-established`, `--external unix`), any one of which passes.
    options: BTreeSet<String>,
}

/// The oracle as laid beside the repository (shared/), else the copy committed with the tests.
fn oracle_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../shared/oracle/criu-4.2-zoo.md");
    if shared.exists() {
        shared
    } else {
        manifest.join("data/criu-4.2-zoo.md")
    }
}

/// `--external unix[<inode>]` → `--external unix`; `--ghost-limit 1G` → `--ghost-limit`.
fn option_name(option: &str) -> String {
    let option = option.split('[').next().unwrap_or(option).trim();
    match option.split_once(' ') {
        Some((name, value)) if name == "--external" => format!("{name} {value}"),
        Some((name, _)) => name.to_string(),
        None => option.to_string(),
    }
}

fn parse_oracle(text: &str) -> Vec<Expected> {
    text.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| case") && !l.starts_with("|---"))
        .map(|l| {
            let cols: Vec<&str> = l.split(" | ").collect();
            let (case, result) = (cols[0].trim_start_matches("| ").trim(), cols[3].trim());
            let (verdict, options) = if result == "dumps" {
                ("ok", BTreeSet::new())
            } else if result.starts_with("fails") {
                ("blocks", BTreeSet::new())
            } else if let Some(rest) = result.strip_prefix("needs ") {
                let opts = rest
                    .split(" or ")
                    .map(|o| option_name(o.trim_matches('`')))
                    .collect();
                ("needs", opts)
            } else {
                panic!("oracle row {case}: unknown result {result:?}");
            };
            Expected {
                case: case.to_string(),
                verdict,
                options,
            }
        })
        .collect()
}

/// Option names of every `needs` judgement in a `--pid --json` report.
/// Alternatives the oracle's runs did not try but CRIU's source accepts, each with where.
const UNTRIED_ALTERNATIVES: &[(&str, &str)] = &[(
    "--orphan-pts-master",
    "criu/tty.c tty_verify_active_pairs: an unpaired pty slave passes with it",
)];

fn needed_options(report: &serde_json::Value) -> BTreeSet<String> {
    let items = ["files", "mappings", "task"]
        .iter()
        .flat_map(|k| report[k].as_array().cloned().unwrap_or_default());
    items
        .filter(|i| i["verdict"] == "needs")
        .flat_map(|i| i["options"].as_array().cloned().unwrap_or_default())
        .filter_map(|o| o.as_str().map(option_name))
        .filter(|o| UNTRIED_ALTERNATIVES.iter().all(|(u, _)| u != o))
        .collect()
}

#[test]
fn oracle_parses_into_every_group() {
    let cases = parse_oracle(&std::fs::read_to_string(oracle_path()).unwrap());
    assert!(cases.len() >= 100, "{} cases", cases.len());
    for verdict in ["ok", "needs", "blocks"] {
        assert!(
            cases.iter().any(|c| c.verdict == verdict),
            "no {verdict} case"
        );
    }
    let ghost = cases.iter().find(|c| c.case == "reg_deleted_big").unwrap();
    assert_eq!(ghost.options, BTreeSet::from(["--ghost-limit".to_string()]));
}

/// Runs each case that fdzoo can create here through `--pid --json --profile criu-4` and
/// asserts verdict, options and exit code; returns how many were checked.
fn check_cases(cases: &[Expected], source: &str) -> usize {
    let binary = ckpt_watch(FDZOO);
    let (mut checked, mut unsupported, mut failures) = (0, vec![], vec![]);
    for expected in cases {
        let zoo = match Zoo::start(FDZOO, &expected.case) {
            Started::Ready(z) => z,
            Started::Unsupported(why) => {
                unsupported.push(format!("{}: {why}", expected.case));
                continue;
            }
        };
        let pid = zoo.pid.to_string();
        let out = run(&binary, &["--pid", &pid, "--json", "--profile", "criu-4"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{}: no JSON ({e}); stderr: {}",
                    expected.case,
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
        };
        checked += 1;
        let verdict = report["verdict"].as_str().unwrap_or("?");
        let options = needed_options(&report);
        let code = out.status.code();
        let want_code = match expected.verdict {
            "ok" => 0,
            "blocks" => 1,
            _ => 3,
        };
        if verdict != expected.verdict || options != expected.options || code != Some(want_code) {
            failures.push(format!(
                "{}: {source} {} {:?}, ckpt-watch {verdict} {options:?} (exit {code:?})\n    {}",
                expected.case,
                expected.verdict,
                expected.options,
                stdout.trim()
            ));
        }
    }
    for u in &unsupported {
        eprintln!("skipped (this kernel cannot create it): {u}");
    }
    eprintln!(
        "{checked} cases checked against {source}, {} unsupported here",
        unsupported.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} cases disagree with {source}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn every_creatable_oracle_case_matches_criu() {
    let cases = parse_oracle(&std::fs::read_to_string(oracle_path()).unwrap());
    let checked = check_cases(&cases, "CRIU 4.2");
    assert!(checked >= 40, "only {checked} cases could be checked");
}

/// Kinds the oracle table does not show, judged as CRIU 4.2's source decides them
/// (criu/bpfmap.c: only hash and array maps are dumped; criu/proc_parse.c `vma_get_mapfile`
/// finds a mapped file's mount through map_files, which names the overlay, not its layer;
/// checked against a real CRIU 4.2.1 dump on this host for the two overlay cases).
#[test]
fn cases_beyond_the_oracle_follow_criu_source() {
    let cases: Vec<Expected> = [
        ("bpf_map_percpu_array", "blocks", None),
        ("bpf_map_ringbuf", "blocks", None),
        ("mmap_overlay_private_nofd", "ok", None),
        // criu/fsnotify.c: an overlay handle cannot be reopened; criu/irmap.c scans
        // --irmap-scan-path before its hints, which do not cover the zoo's directory.
        ("inotify_overlay", "needs", Some("--irmap-scan-path")),
        // Issue 15, each dumped by CRIU 4.2.1 on Linux 6.18 plain and with the option proposed
        // (docs/criu-conditions.md). criu/file-lock.c: an OFD lock is one of the task's locks.
        ("ofd_lock", "needs", Some("--file-locks")),
        // criu/proc_parse.c parse_file_locks(): POSIX locks of tasks outside the dump are
        // skipped; a flock belongs to the open file, wherever the task that took it lives.
        ("posix_lock_ext", "ok", None),
        ("flock_ext_shared", "needs", Some("--file-locks")),
        // criu/file-lock.c: any lock of a dumped task stops the dump without the option,
        // whatever the file (CRIU 4.2.1 on Linux 6.18: `Some file locks are hold by dumping
        // tasks!`, and with --file-locks the dump passes); the file alone is ok.
        ("flock_pipe", "needs", Some("--file-locks")),
        ("posix_lock_memfd", "needs", Some("--file-locks")),
        // A lease is one of them (CRIU 4.2.1 on Linux 6.18: the same failure, and the same pass).
        ("lease_read", "needs", Some("--file-locks")),
        // criu/sk-unix.c: a connection not yet accepted is dumped pointed at its listener,
        // found among the in-flight connections of the netns' listeners, inside or not.
        ("unix_stream_inflight_in_tree", "ok", None),
        ("unix_stream_inflight_ext", "ok", None),
        // criu/sk-inet.c dump_one_inet_fd(): UDP_CORK fails; a read queue is only dropped.
        ("udp4_corked", "blocks", None),
        ("udp4_rqueue", "ok", None),
        // criu/sockets.c dump_socket_filter(): SO_GET_FILTER reads classic filters only.
        ("sock_filter_classic", "ok", None),
        ("sock_filter_ebpf", "blocks", None),
        // criu/sk-packet.c dump_socket_map(): a ring is dumped beside its open socket only.
        ("packet_rx_ring", "ok", None),
        ("packet_rx_ring_nofd", "blocks", None),
        // criu/pidfd.c: `Pid: -1` is dumped (a stand-in is restored).
        ("pidfd_dead", "ok", None),
        // criu/pidfd.c: `PIDFD_THREAD flag is currently not supported`.
        ("pidfd_thread", "blocks", None),
        // criu/namespaces.c: `Can't dump nested pid namespace`.
        ("pidns_nested_child", "blocks", None),
        // criu/fsnotify.c: procfs and sysfs handles do not reopen; irmap finds the path given.
        ("inotify_procfs", "needs", Some("--irmap-scan-path")),
        ("inotify_sysfs", "needs", Some("--irmap-scan-path")),
        // criu/tty.c tty_verify_active_pairs(): --shell-job takes one unpaired slave only;
        // CRIU 4.2.1 dumps two with each declared --external.
        ("two_ext_pty_slaves", "needs", Some("--external tty")),
    ]
    .into_iter()
    .map(|(case, verdict, option)| Expected {
        case: case.into(),
        verdict,
        options: option.into_iter().map(String::from).collect(),
    })
    .collect();
    assert_eq!(check_cases(&cases, "CRIU 4.2's source"), cases.len());
}

/// Every scanned file's ops table reaches user space, however the iterators' output buffer
/// fills. A record that does not fit is discarded together with the ops table this run of the
/// program reported before it, and the kernel runs the program again on the same file: that
/// run must report the table again (ckpt-ebpf file_facts::settle_ops), or the file stays
/// unresolved, `unknown`. Every case fdzoo can create here, all at once, is a crowd of ops
/// tables each seen first somewhere in the walk, and whole-host scans overflow the buffer every
/// ~200 records. Before each scan this process (walked before the cases it started) opens a
/// few more files, so that the overflows fall on other records each time.
#[test]
fn every_scanned_file_keeps_its_ops_table_across_buffer_overflows() {
    const SCANS: usize = 24;
    let binary = ckpt_watch(FDZOO);
    let list = std::process::Command::new(FDZOO)
        .arg("--list")
        .output()
        .expect("fdzoo --list runs");
    let zoos: Vec<Zoo> = String::from_utf8_lossy(&list.stdout)
        .split_whitespace()
        .filter_map(|case| match Zoo::start(FDZOO, case) {
            Started::Ready(zoo) => Some(zoo),
            Started::Unsupported(_) => None,
        })
        .collect();
    assert!(zoos.len() >= 40, "only {} cases started", zoos.len());
    let dir = tempfile::tempdir().unwrap();
    let (mut files, mut tables) = (0, HashSet::new());
    let mut shift = Vec::new();
    for scan in 0..SCANS {
        shift.extend((0..3).map(|_| std::fs::File::open("/dev/null").unwrap()));
        let snap = dir.path().join(format!("scan{scan}.json"));
        let out = run(
            &binary,
            &["--json", "--save-snapshot", snap.to_str().unwrap()],
        );
        assert!(
            out.status.code().is_some_and(|c| c != 2),
            "scan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let snapshot: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
        let reported: HashSet<u64> = snapshot["ops"]
            .as_object()
            .expect("an ops map")
            .keys()
            .map(|k| k.parse().expect("numeric key"))
            .collect();
        let scanned = snapshot["files"].as_array().expect("a file list");
        let missing: Vec<String> = scanned
            .iter()
            .filter(|f| f["f_op"].as_u64().is_some_and(|op| !reported.contains(&op)))
            .map(|f| format!("pid {} fd {} {}", f["pid"], f["fd"], f["name"]))
            .collect();
        assert!(
            missing.is_empty(),
            "scan {scan}: {} of {} files without their ops table: {missing:?}",
            missing.len(),
            scanned.len()
        );
        files += scanned.len();
        tables.extend(reported);
    }
    eprintln!(
        "{files} files in {SCANS} scans, {} ops tables",
        tables.len()
    );
    assert!(tables.len() >= 30, "only {} ops tables", tables.len());
}
