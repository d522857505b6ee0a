//! Relational rules on whole trees (`--pid N --tree`), each with a case that passes and one that
//! does not, on real processes: unix peers, pidfd targets, pty masters, the session leader, net
//! and IPC namespaces for tun and SysV shm, nsfs files, TCP states, ghosts, link-remap, locks,
//! hidden mounts, ptrace on any task of the tree; and `--with` / `--engine` turning `needs`
//! into `ok`.

use std::path::PathBuf;
use std::process::Command;

use ckpt_tests::{
    Fdctl, Sh, Started, Zoo, ckpt_watch, io_uring_holders, judged_with_newcomer, run, test_bin,
};

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");
const FDCTL: &str = env!("CARGO_BIN_EXE_fdctl");

fn binary() -> PathBuf {
    ckpt_watch(FDZOO)
}

/// `--tree --json` of `pid` with the criu-4 profile (the default would follow the CRIU on PATH).
fn judge_tree(pid: u32, extra: &[&str]) -> (serde_json::Value, Option<i32>) {
    let pid = pid.to_string();
    let mut args = vec!["--pid", &pid, "--tree", "--json", "--profile", "criu-4"];
    args.extend_from_slice(extra);
    let out = run(&binary(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}) from {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code())
}

fn exit_of(verdict: &str) -> i32 {
    match verdict {
        "ok" => 0,
        "blocks" => 1,
        "needs" => 3,
        _ => 4,
    }
}

struct Row {
    case: &'static str,
    args: &'static [&'static str],
    verdict: &'static str,
    /// An option the dump must list as needed (`{ino}`: the case's socket inode).
    option: Option<&'static str>,
}

const fn row(
    case: &'static str,
    args: &'static [&'static str],
    verdict: &'static str,
    option: Option<&'static str>,
) -> Row {
    Row {
        case,
        args,
        verdict,
        option,
    }
}

const EXT_UNIX: &str = "--external unix[{ino}]";

/// Each rule: the case that passes, the case that does not, and the option that fixes it.
const ROWS: &[Row] = &[
    row("unix_stream_pair_in_tree", &[], "ok", None),
    row("unix_stream_ext", &[], "needs", Some(EXT_UNIX)),
    row(
        "unix_stream_ext",
        &["--with", "--ext-unix-sk"],
        "needs",
        Some(EXT_UNIX),
    ),
    row("unix_stream_ext", &["--with", EXT_UNIX], "ok", None),
    row("unix_dgram_ext", &[], "needs", Some("--ext-unix-sk")),
    row("unix_dgram_ext", &["--with", "--ext-unix-sk"], "ok", None),
    row("pidfd_child", &[], "ok", None),
    row("pidfd_ext", &[], "blocks", None),
    row("pty_pair", &[], "ok", None),
    row("ext_pty_slave", &[], "needs", Some("--shell-job")),
    row("ext_pty_slave", &["--with", "--shell-job"], "ok", None),
    row("none", &[], "ok", None),
    row("noshell", &[], "needs", Some("--shell-job")),
    row("ns_net_dev_net_tun", &[], "ok", None),
    row("dev_net_tun", &[], "blocks", None),
    row("ns_ipc_sysv_shm_attached", &[], "ok", None),
    row("sysv_shm_attached", &[], "blocks", None),
    row("tcp_listen4", &[], "ok", None),
    row("tcp_est_client", &[], "needs", Some("--tcp-established")),
    row("tcp_est_client", &["--engine", "lxc"], "ok", None),
    row(
        "tcp_est_client",
        &["--engine", "crio"],
        "needs",
        Some("--tcp-established"),
    ),
    row(
        "tcp_listen_inflight",
        &[],
        "needs",
        Some("--skip-in-flight"),
    ),
    row("tcp_listen_inflight", &["--engine", "lxc"], "ok", None),
    row("reg_deleted_small", &[], "ok", None),
    row("reg_deleted_big", &[], "needs", None),
    row(
        "reg_deleted_big",
        &["--with", "--ghost-limit 1G"],
        "ok",
        None,
    ),
    row("reg_deleted_linked", &[], "needs", Some("--link-remap")),
    row("reg_deleted_linked", &["--engine", "lxc"], "ok", None),
    row("flock_ex", &[], "needs", Some("--file-locks")),
    row("flock_ex", &["--engine", "crio"], "ok", None),
    row(
        "flock_ex",
        &["--engine", "runc"],
        "needs",
        Some("--file-locks"),
    ),
    row("reg_ext4", &[], "ok", None),
    row("open_tree_clone", &[], "blocks", None),
    row("pipe_pair", &[], "ok", None),
    row("pipe_ext_read_end", &[], "ok", None),
    row("nsfs_own_net", &[], "ok", None),
];

#[test]
fn every_relational_rule_passes_and_fails_on_real_trees() {
    let (mut checked, mut failures) = (0, vec![]);
    for r in ROWS {
        let zoo = match Zoo::start(FDZOO, r.case) {
            Started::Ready(z) => z,
            Started::Unsupported(why) => {
                eprintln!("skipped {}: {why}", r.case);
                continue;
            }
        };
        let ino = zoo
            .extra
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ino="))
            .unwrap_or("0")
            .to_string();
        let args: Vec<String> = r.args.iter().map(|a| a.replace("{ino}", &ino)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (report, code) = judge_tree(zoo.pid, &args);
        checked += 1;
        let verdict = report["verdict"].as_str().unwrap_or("?");
        let options: Vec<&str> = report["options"]
            .as_array()
            .map(|a| a.iter().filter_map(|o| o.as_str()).collect())
            .unwrap_or_default();
        let want_option = r.option.map(|o| o.replace("{ino}", &ino));
        let option_ok = want_option.as_deref().is_none_or(|o| options.contains(&o));
        if verdict != r.verdict || code != Some(exit_of(r.verdict)) || !option_ok {
            failures.push(format!(
                "{} {:?}: want {} {:?}, got {verdict} {options:?} (exit {code:?})",
                r.case, r.args, r.verdict, want_option
            ));
        }
    }
    assert!(
        checked >= ROWS.len() - 4,
        "only {checked} rows could be checked"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// CRIU must seize every task of the tree: a tracer on a child fails the dump as one on the root.
#[test]
fn a_traced_task_anywhere_in_the_tree_blocks() {
    let Started::Ready(zoo) = Zoo::start(FDZOO, "pidfd_child") else {
        panic!("pidfd_child is supported everywhere pidfds are");
    };
    let child: u32 = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", zoo.pid))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("fdzoo pidfd_child has a child")
        .parse()
        .unwrap();
    let (untraced, _) = judge_tree(zoo.pid, &[]);
    assert_eq!(untraced["verdict"], "ok", "{untraced}");
    // SAFETY: PTRACE_SEIZE neither stops the child nor touches our memory; the kernel detaches
    // it when this thread's test ends.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, child as libc::pid_t, 0, 0) };
    assert_eq!(
        r,
        0,
        "PTRACE_SEIZE {child}: {}",
        std::io::Error::last_os_error()
    );
    let (traced, code) = judge_tree(zoo.pid, &[]);
    assert_eq!(
        (traced["verdict"].as_str(), code),
        (Some("blocks"), Some(1)),
        "{traced}"
    );
    let p = traced["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == child)
        .expect("the child is judged");
    assert_eq!(p["task"][0]["rule"], "traced", "{p}");
}

/// An nsfs file is dumped when some task of the dump lives in that namespace.
#[test]
fn nsfs_of_a_namespace_no_task_lives_in_blocks() {
    let other = Sh::start("exec unshare --net sleep 1000", None);
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    for _ in 0..200 {
        if std::fs::read_link(format!("/proc/{}/ns/net", other.pid)).is_ok_and(|l| l != ours) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let foreign = Sh::start(
        &format!("exec 3</proc/{}/ns/net; exec sleep 1000", other.pid),
        None,
    );
    let own = Sh::start("exec 3</proc/self/ns/net; exec sleep 1000", None);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (report, code) = judge_tree(foreign.pid, &[]);
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("blocks"), Some(1)),
        "{report}"
    );
    let rule = &report["processes"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fd"] == 3)
        .expect("fd 3 judged")["rule"];
    assert_eq!(rule, "nsfs-foreign");
    let (report, code) = judge_tree(own.pid, &[]);
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("ok"), Some(0)),
        "{report}"
    );
}

/// A small tree is iterated process by process, a wide one in one pass over every task with
/// the kernel filtering by tgid: either way every process of the tree is judged, and only
/// those.
#[test]
fn narrow_and_wide_trees_are_judged_whole() {
    use std::os::unix::process::CommandExt;
    for children in [3, 80] {
        let script = format!("for i in $(seq {children}); do sleep 60 & done; wait");
        let mut sh = std::process::Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .spawn()
            .expect("sh");
        let root = sh.id();
        let tree_size = || {
            std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
                .map_or(0, |c| c.split_whitespace().count())
        };
        for _ in 0..500 {
            if tree_size() == children {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (doc, _) = judge_tree(root, &[]);
        // SAFETY: kills the process group this test started.
        unsafe { libc::kill(-(root as i32), libc::SIGKILL) };
        let _ = sh.wait();
        let judged = doc["processes"].as_array().map_or(0, Vec::len);
        assert_eq!(judged, children + 1, "a tree of {children} children: {doc}");
    }
}

/// A process forked into the tree after `--pid` listed it (once the scanner holds a BPF map),
/// which opens an io_uring: the probe filtered on the listed tree, yet the newcomer is judged
/// (by a tree choosing its timing, the dump would otherwise be `ok`).
#[test]
fn a_process_forked_into_the_tree_during_the_scan_is_judged() {
    let mut p = Fdctl::start(&test_bin(FDCTL));
    let pid = p.pid.to_string();
    let (doc, code) = judged_with_newcomer(
        Command::new(binary()).args(["--pid", &pid, "--tree", "--json", "--profile", "criu-4"]),
        &mut p,
    );
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("blocks"), Some(1)),
        "{doc}"
    );
    assert_eq!(io_uring_holders(&doc["processes"]), 1, "{doc}");
}
