//! `ckpt-watch preflight` on real "containers": cgroup v2 directories named as each engine names
//! them, real processes moved in, namespaces made with `unshare`. Verdicts, exit codes, the
//! options in force and their sources, the checkpointer's environment, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_tests::{
    Fdctl, Sh, Started, TestCgroups, Zoo, ckpt_watch, container_id, io_uring_holders,
    judged_with_newcomer, run, run_env, test_bin,
};

const FDZOO: &str = env!("CARGO_BIN_EXE_fdzoo");
const FDCTL: &str = env!("CARGO_BIN_EXE_fdctl");

fn binary() -> PathBuf {
    ckpt_watch(FDZOO)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/criu-config")
        .join(name)
        .display()
        .to_string()
}

/// A PATH that holds no `criu`: these tests judge containers, not the installed CRIU (Debian
/// 12's 3.17 cannot run on this kernel, and `criu check` would block every container).
const NO_CRIU: (&str, &str) = ("PATH", "/ckpt-watch-tests/no-criu-on-this-path");

/// `preflight ARGS --json --profile criu-4` with `env` and no CRIU installed; the report and
/// the exit code.
fn preflight(args: &[&str], env: &[(&str, &str)]) -> (serde_json::Value, Option<i32>) {
    let mut all = vec!["preflight", "--json", "--profile", "criu-4"];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = std::iter::once(NO_CRIU)
        .chain(env.iter().copied())
        .collect();
    let out = run_env(&binary(), &all, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}) from {all:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code())
}

fn zoo(case: &str) -> Zoo {
    match Zoo::start(FDZOO, case) {
        Started::Ready(z) => z,
        Started::Unsupported(why) => panic!("{case} unsupported here: {why}"),
    }
}

fn option_names(c: &serde_json::Value) -> Vec<String> {
    c["options_in_force"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_container_needs_file_locks_until_the_engine_passes_them() {
    let cg = TestCgroups::new("locks");
    let id = container_id("");
    let dir = cg.dir(&format!("docker-{id}.scope"));
    let z = zoo("flock_ex");
    TestCgroups::add(&dir, z.pid);

    let (doc, code) = preflight(&["--container", &id[..12]], &[]);
    let c = &doc["containers"][0];
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("needs"), Some(3)),
        "{doc}"
    );
    assert_eq!(
        (c["id"].as_str(), c["short_id"].as_str()),
        (Some(id.as_str()), Some(&id[..12]))
    );
    assert_eq!(
        (c["runtime"].as_str(), c["engine"].as_str()),
        (Some("docker"), Some("docker"))
    );
    // `docker checkpoint create` has no flag for it: the remedy is runc's own config file.
    assert_eq!(c["remedies"][0]["option"], "--file-locks", "{c}");
    assert!(
        c["remedies"][0]["how"]
            .as_str()
            .unwrap()
            .starts_with("the line `file-locks` in /etc/criu/runc.conf"),
        "{c}"
    );
    assert_eq!(c["root"], z.pid);
    assert_eq!(c["options"], serde_json::json!(["--file-locks"]));
    let file = &c["processes"][0]["files"].as_array().unwrap();
    assert!(file.iter().any(|f| f["rule"] == "file-locks"), "{c}");
    assert!(
        c["environment"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["rule"] == "rlimits")
    );

    // CRI-O always passes --file-locks; so does `--with`.
    let (doc, code) = preflight(&["--container", &id[..12], "--engine", "crio"], &[]);
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("ok"), Some(0)),
        "{doc}"
    );
    let locks = doc["containers"][0]["options_in_force"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "--file-locks")
        .cloned()
        .unwrap();
    assert_eq!(
        locks["source"],
        serde_json::json!({"from": "engine", "engine": "crio"})
    );
    let (doc, code) = preflight(&["--container", &id, "--with", "--file-locks"], &[]);
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("ok"), Some(0)),
        "{doc}"
    );
}

#[test]
fn every_engines_layout_is_found() {
    let cg = TestCgroups::new("layouts");
    let uid = "0b6e3c2a-1d4f-4a5b-9c8d-7e6f5a4b3c2d";
    let lxc = format!("ckpt{}", std::process::id());
    let ids: Vec<(String, &str, String)> = [
        ("docker", "docker-{}.scope"),
        (
            "containerd",
            "kubepods-besteffort-pod{uid_}.slice/cri-containerd-{}.scope",
        ),
        ("cri-o", "crio-{}.scope"),
        ("podman", "libpod-{}.scope/container"),
        ("docker", "docker/{}"),
        ("cri", "kubepods/besteffort/pod{uid}/{}"),
    ]
    .iter()
    .map(|(runtime, layout)| {
        let id = container_id("");
        let rel = layout
            .replace("{uid_}", &uid.replace('-', "_"))
            .replace("{uid}", uid)
            .replace("{}", &id);
        (id, *runtime, rel)
    })
    .chain([(lxc.clone(), "lxc", format!("lxc.payload.{lxc}"))])
    .collect();
    let mut procs = vec![];
    for (_, _, rel) in &ids {
        let sh = Sh::start("exec sleep 1000", None);
        TestCgroups::add(&cg.dir(rel), sh.pid);
        procs.push(sh);
    }

    let (doc, code) = preflight(&["--all-containers"], &[]);
    assert!(code.is_some_and(|c| c != 2), "{doc}");
    let found = doc["containers"].as_array().unwrap();
    for ((id, runtime, rel), sh) in ids.iter().zip(&procs) {
        let c = found
            .iter()
            .find(|c| c["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{runtime} container {rel} not found"));
        assert_eq!(c["runtime"], *runtime, "{rel}");
        assert_eq!(
            (c["root"].as_u64(), c["verdict"].as_str()),
            (Some(sh.pid as u64), Some("ok")),
            "{c}"
        );
        if rel.contains("/pod") || rel.contains("-pod") {
            assert_eq!(c["pod"], uid, "{rel}");
        }
    }
    // By cgroup path (inside the hierarchy): the directory names the container.
    let podman_scope = cg.path_of(&cg.top.join(ids[3].2.trim_end_matches("/container")));
    let (doc, code) = preflight(&["--cgroup", &podman_scope], &[]);
    assert_eq!(
        (doc["containers"][0]["runtime"].as_str(), code),
        (Some("podman"), Some(0)),
        "{doc}"
    );
    assert_eq!(doc["containers"][0]["engine"], "podman");
    // By the directory itself; a plain cgroup is checkpointed by criu.
    let plain = cg.dir("plain.scope");
    let sh = Sh::start("exec sleep 1000", None);
    TestCgroups::add(&plain, sh.pid);
    let (doc, _) = preflight(&["--cgroup", plain.to_str().unwrap()], &[]);
    let c = &doc["containers"][0];
    assert_eq!(
        (c.get("id"), c["engine"].as_str()),
        (None, Some("criu")),
        "{c}"
    );
}

#[test]
fn blocking_container_names_the_process_and_file() {
    let cg = TestCgroups::new("blocks");
    let id = container_id("");
    let dir = cg.dir(&format!("crio-{id}.scope"));
    let z = zoo("io_uring");
    TestCgroups::add(&dir, z.pid);
    let (doc, code) = preflight(&["--container", &id[..8]], &[]);
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("blocks"), Some(1)),
        "{doc}"
    );
    let p = &doc["containers"][0]["processes"][0];
    assert_eq!(p["pid"], z.pid);
    assert!(
        p["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "io_uring" && f["verdict"] == "blocks")
    );
    let text = run(
        &binary(),
        &["preflight", "--container", &id[..8], "--profile", "criu-4"],
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("profile criu-4: criu-4 chosen with --profile\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("container {} (cri-o)", &id[..12])),
        "{text}"
    );
    assert!(
        text.contains("io_uring") && text.contains("blocks: a checkpoint would fail"),
        "{text}"
    );
}

/// A process forked into a container after preflight listed its processes (once the scanner
/// holds a BPF map), which opens an io_uring: the processes visited were the listed ones, yet
/// the newcomer is judged (by a process choosing its timing, the container would be `ok`).
#[test]
fn a_process_forked_into_the_container_during_the_scan_is_judged() {
    let cg = TestCgroups::new("newcomer");
    let id = container_id("");
    let dir = cg.dir(&format!("crio-{id}.scope"));
    let mut p = Fdctl::start(&test_bin(FDCTL));
    TestCgroups::add(&dir, p.pid);
    let (doc, code) = judged_with_newcomer(
        Command::new(binary())
            .args([
                "preflight",
                "--json",
                "--profile",
                "criu-4",
                "--container",
                &id[..8],
            ])
            .env(NO_CRIU.0, NO_CRIU.1),
        &mut p,
    );
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("blocks"), Some(1)),
        "{doc}"
    );
    assert_eq!(
        io_uring_holders(&doc["containers"][0]["processes"]),
        1,
        "{doc}"
    );
}

#[test]
fn config_files_are_read_in_crius_order_and_named() {
    let cg = TestCgroups::new("config");
    let id = container_id("");
    let dir = cg.dir(&format!("docker/{id}"));
    let z = zoo("flock_ex");
    TestCgroups::add(&dir, z.pid);
    let locks = fixture("locks.conf");
    // Through runc (Docker's engine), the RPC's file-locks=false beats every config file but
    // runc.conf: still needs, though ghost-limit, which runc never sends, holds.
    let (doc, code) = preflight(&["--container", &id], &[("CRIU_CONFIG_FILE", &locks)]);
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("needs"), Some(3)),
        "{doc}"
    );
    let c = &doc["containers"][0];
    assert!(
        option_names(c).contains(&"--ghost-limit".to_string()),
        "{c}"
    );
    // CRIU's own command line reads the files and nothing overrides them.
    let by_hand = ["--container", &id, "--engine", "criu"];
    let (doc, code) = preflight(&by_hand, &[("CRIU_CONFIG_FILE", &locks)]);
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("ok"), Some(0)),
        "{doc}"
    );
    let out = run_env(
        &binary(),
        &[
            "preflight",
            "--container",
            &id,
            "--profile",
            "criu-4",
            "--engine",
            "criu",
        ],
        &[("CRIU_CONFIG_FILE", &locks), NO_CRIU],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("--file-locks                 {locks}:2")),
        "{text}"
    );

    // ~/.criu/default.conf gives it, $CRIU_CONFIG_FILE (read after it) withdraws it.
    let tmp = tempfile::Builder::new()
        .prefix("ckpt-preflight-home-")
        .tempdir()
        .unwrap();
    let home = tmp.path();
    std::fs::create_dir_all(home.join(".criu")).unwrap();
    std::fs::write(home.join(".criu/default.conf"), "file-locks\n").unwrap();
    let home_s = home.display().to_string();
    let (given, _) = preflight(&by_hand, &[("HOME", &home_s)]);
    let (withdrawn, code) = preflight(
        &by_hand,
        &[
            ("HOME", &home_s),
            ("CRIU_CONFIG_FILE", &fixture("withdraw.conf")),
        ],
    );
    assert_eq!(given["verdict"], "ok", "{given}");
    assert_eq!(
        (withdrawn["verdict"].as_str(), code),
        (Some("needs"), Some(3)),
        "{withdrawn}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let cg = TestCgroups::new("bad");
    let a = container_id("abcabc");
    let b = container_id("abcabd");
    let mut procs = vec![];
    for id in [&a, &b] {
        let sh = Sh::start("exec sleep 1000", None);
        TestCgroups::add(&cg.dir(&format!("docker-{id}.scope")), sh.pid);
        procs.push(sh);
    }
    let empty = cg.dir("empty.scope");
    let malformed = fixture("malformed.conf");
    /// Arguments, environment, and what the one line on stderr says.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            vec!["--container", "fffffffffffe"],
            vec![],
            "no container with id fffffffffffe".into(),
        ),
        (
            vec!["--container", "abcab"],
            vec![],
            "container id prefix abcab is ambiguous".into(),
        ),
        (
            vec!["--cgroup", "/no/such/cgroup"],
            vec![],
            "no cgroup /no/such/cgroup".into(),
        ),
        (
            vec!["--cgroup", empty.to_str().unwrap()],
            vec![],
            "holds no processes".into(),
        ),
        (
            vec!["--container", &a[..12]],
            vec![("CRIU_CONFIG_FILE", &malformed)],
            format!("{malformed}:3: unknown CRIU option `file-lcoks`"),
        ),
        (
            vec!["--container", &a[..12], "--with", "tcp-close"],
            vec![],
            "--with:".into(),
        ),
        // The judge is built while the scan loads; its errors still come first, then the
        // targets', then the options', then what the scan met.
        (
            vec!["--cgroup", "/no/such/cgroup", "--profile", "criu-9"],
            vec![],
            "criu-4, criu-3.17".into(),
        ),
        (
            vec!["--cgroup", empty.to_str().unwrap()],
            vec![("CRIU_CONFIG_FILE", &malformed)],
            format!("{malformed}:3: unknown CRIU option `file-lcoks`"),
        ),
    ];
    for (args, env, want) in cases {
        let mut all = vec!["preflight"];
        all.extend(&args);
        let out = run_env(&binary(), &all, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&want),
            "{args:?}: want {want:?} in {stderr}"
        );
    }
    let (doc, code) = preflight(&["--container", &a[..7]], &[]);
    assert_eq!(
        (doc["containers"][0]["id"].as_str(), code),
        (Some(a.as_str()), Some(0))
    );
}

const CAP_SYS_RESOURCE: u32 = 24;

fn have_cap(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << cap) != 0
}

/// A task of another uid: the checkpointer (this root) can seize it, but reads its rlimits only
/// with CAP_SYS_RESOURCE, which this machine's root lacks.
#[test]
fn task_of_another_uid_needs_cap_sys_resource() {
    let cg = TestCgroups::new("uid");
    let id = container_id("");
    let dir = cg.dir(&format!("docker-{id}.scope"));
    let sh = Sh::start("exec sleep 1000", Some(65534));
    TestCgroups::add(&dir, sh.pid);
    let (doc, code) = preflight(&["--container", &id], &[]);
    let c = &doc["containers"][0];
    let rlimits = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["rule"] == "rlimits")
        .unwrap();
    if have_cap(CAP_SYS_RESOURCE) {
        assert_eq!(
            (rlimits["verdict"].as_str(), code),
            (Some("ok"), Some(0)),
            "{c}"
        );
    } else {
        assert_eq!(
            (c["verdict"].as_str(), code),
            (Some("blocks"), Some(1)),
            "{c}"
        );
        assert_eq!(rlimits["verdict"], "blocks");
        let reason = rlimits["reason"].as_str().unwrap();
        assert!(
            reason.contains("Can't get rlimit 0: Operation not permitted"),
            "{reason}"
        );
        assert!(reason.contains(&format!("pid {}", sh.pid)), "{reason}");
    }
    // The same process as root passes.
    let mine = Sh::start("exec sleep 1000", None);
    let dir2 = cg.dir(&format!("docker-{}.scope", container_id("")));
    TestCgroups::add(&dir2, mine.pid);
    let (doc, code) = preflight(&["--cgroup", dir2.to_str().unwrap()], &[]);
    assert_eq!(
        (doc["verdict"].as_str(), code),
        (Some("ok"), Some(0)),
        "{doc}"
    );
}

/// A container made with unshare: its own net, IPC, mount and (for its children) pid
/// namespaces, a process tree inside, and a stray process in the cgroup outside the root's tree.
/// The root execs after unsharing, as a container's init does, so its mappings are on mounts of
/// its own mount namespace.
#[test]
fn namespaces_tree_and_stray_processes_of_a_container() {
    let cg = TestCgroups::new("ns");
    let id = container_id("");
    let dir = cg.dir(&format!("cri-containerd-{id}.scope"));
    // No new pid namespace: without --fork its first child would be init of a namespace
    // nested under the root's, which CRIU refuses to dump (namespaces.c).
    let init = Sh::start(
        "exec unshare --net --ipc --mount sh -c 'sleep 1000 & exec sleep 1000'",
        None,
    );
    let child = init.children(1)[0];
    TestCgroups::add(&dir, init.pid);
    TestCgroups::add(&dir, child);
    let stray = Sh::start("exec sleep 1000", None);
    TestCgroups::add(&dir, stray.pid);

    let (doc, code) = preflight(&["--container", &id], &[]);
    let c = &doc["containers"][0];
    assert_eq!(
        (c["runtime"].as_str(), code),
        (Some("containerd"), Some(0)),
        "{c}"
    );
    assert_eq!(c["root"], init.pid);
    let pids: Vec<u64> = c["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [init.pid as u64, child as u64]);
    assert_eq!(c["left_out"], serde_json::json!([stray.pid]));
    let own: Vec<&str> = c["namespaces"]["own"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for ns in ["net", "ipc", "mnt"] {
        assert!(own.contains(&ns), "{ns} not own: {c}");
    }
}

/// With a criu on PATH and no --profile, the report says which CRIU chose the profile.
#[test]
fn the_report_says_why_this_profile() {
    let cg = TestCgroups::new("profile");
    let dir = cg.dir("why.scope");
    let sh = Sh::start("exec sleep 1000", None);
    TestCgroups::add(&dir, sh.pid);
    let out = run(&binary(), &["preflight", "--cgroup", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("");
    let criu_on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("criu").is_file()));
    if criu_on_path {
        assert!(first.contains(" is CRIU "), "{first}");
    } else {
        assert!(first.contains("no criu on PATH"), "{first}");
    }
}

fn environment(doc: &serde_json::Value, rule: &str) -> Option<serde_json::Value> {
    doc["containers"][0]["environment"]
        .as_array()?
        .iter()
        .find(|j| j["rule"] == rule)
        .cloned()
}

/// The installed CRIU is asked: where `criu check` fails (Debian 12's 3.17 on a kernel with
/// `[vvar_vclock]`), every container blocks with CRIU's own first error; where it passes, the
/// finding is ok.
#[test]
fn an_installed_criu_that_cannot_run_blocks_with_its_own_words() {
    let criu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("criu"))
        .find(|c| c.is_file())
        .expect("bootstrap installs Debian's criu: none on PATH");
    let check = std::process::Command::new(&criu)
        .arg("check")
        .output()
        .expect("criu check runs");
    let cg = TestCgroups::new("criucheck");
    let dir = cg.dir("check.scope");
    let sh = Sh::start("exec sleep 1000", None);
    TestCgroups::add(&dir, sh.pid);
    let out = run(
        &binary(),
        &[
            "preflight",
            "--json",
            "--profile",
            "criu-4",
            "--cgroup",
            dir.to_str().unwrap(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let finding = environment(&doc, "criu-check").unwrap_or_else(|| panic!("no criu-check: {doc}"));
    if check.status.success() {
        assert_eq!(finding["verdict"], "ok", "{finding}");
    } else {
        let stderr = String::from_utf8_lossy(&check.stderr);
        let first = stderr
            .lines()
            .find(|l| l.starts_with("Error"))
            .and_then(|l| l.split_once("): "))
            .map(|(_, m)| m.trim().to_string())
            .expect("a failing criu check prints an Error line");
        assert_eq!(
            (finding["verdict"].as_str(), out.status.code()),
            (Some("blocks"), Some(1)),
            "{finding}"
        );
        assert!(
            finding["reason"].as_str().unwrap().contains(&first),
            "{finding}"
        );
    }
    // `--criu` names another binary: one that is not there blocks too, never ok.
    let out = run(
        &binary(),
        &[
            "preflight",
            "--json",
            "--cgroup",
            dir.to_str().unwrap(),
            "--criu",
            "/nonexistent/criu",
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        environment(&doc, "criu-check").unwrap()["verdict"],
        "blocks",
        "{doc}"
    );
}

/// A known kernel/CRIU incompatibility is in the profile, so a host without CRIU installed
/// gets the same answer: criu-3.17 blocks on a kernel that maps `[vvar_vclock]`, criu-4 not.
/// `--profile` placed before the subcommand counts as well as after it.
#[test]
fn kernel_incompatibility_from_the_profile_without_criu_installed() {
    let vclock = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .contains("[vvar_vclock]");
    let cg = TestCgroups::new("vclock");
    let dir = cg.dir("vclock.scope");
    let sh = Sh::start("exec sleep 1000", None);
    TestCgroups::add(&dir, sh.pid);
    let cgroup = dir.to_str().unwrap();
    let out = run_env(
        &binary(),
        &[
            "--profile",
            "criu-3.17",
            "preflight",
            "--json",
            "--cgroup",
            cgroup,
        ],
        &[NO_CRIU],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        doc["profile"], "criu-3.17",
        "--profile before the subcommand: {doc}"
    );
    let rule = environment(&doc, "vdso-vvar-vclock");
    assert_eq!(rule.is_some(), vclock, "{doc}");
    if vclock {
        assert_eq!(doc["verdict"], "blocks", "{doc}");
        assert!(
            rule.unwrap()["reason"]
                .as_str()
                .unwrap()
                .contains("Unexpected rt vDSO area bounds")
        );
    }
    let (doc, _) = preflight(&["--cgroup", cgroup], &[]);
    assert!(environment(&doc, "vdso-vvar-vclock").is_none(), "{doc}");
    assert!(environment(&doc, "criu-check").is_none(), "{doc}");
}
