//! Every parser of input from outside ckpt-watch (files a user names, text the kernel shows for
//! processes others control) meets arbitrary and near-valid text: it never panics, answers in
//! bounded time with output bounded by its input, and its errors are one line.

use std::collections::HashSet;
use std::fmt::Display;
use std::time::{Duration, Instant};

use ckpt_user::checkpointer::config_file;
use ckpt_user::checkpointer::given::{Given, Source};
use ckpt_user::classify::{BUILTIN_PROFILES, parse_profile};
use ckpt_user::kernel::kallsyms::Symbols;
use ckpt_user::scope::{cgroups, container_id, fsnotify, map_files, procfs, workload};
use ckpt_user::snapshot::Snapshot;
use proptest::prelude::*;

/// Few cases per property, so the suite stays fast (CI runs it on every change); a deeper run
/// sets `PROPTEST_CASES`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f`, which must answer quickly whatever its input.
fn quick<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
    out
}

#[track_caller]
fn one_line(e: impl Display) {
    let s = e.to_string();
    assert!(
        !s.chars().any(char::is_control),
        "not one printable line: {s:?}"
    );
}

/// Text to splice in: printable ASCII, any characters, control characters, and the few that
/// parsers of these formats treat specially.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,16}",
        "\\PC{0,6}",
        "[\\x00-\\x1f\\x7f\\u{85}\\u{2028}]{1,3}",
        Just("\n".to_string()),
        Just("\u{3000}".to_string()),
        Just(" - ".to_string()),
        Just(")".to_string()),
        Just("\"".to_string()),
        Just("{[(".repeat(40)),
    ]
}

fn boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `sample` with a few spans replaced by junk: near-valid input, where a parser has the most
/// paths to get wrong.
fn mutated(sample: &'static str) -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), 0usize..40, junk());
    prop::collection::vec(edit, 1..5).prop_map(move |edits| {
        let mut s = sample.to_string();
        for (at, len, insert) in edits {
            let start = boundary(&s, at.index(s.len() + 1));
            let end = boundary(&s, (start + len).min(s.len()));
            s.replace_range(start..end, &insert);
        }
        s
    })
}

/// Near-valid or arbitrary text.
fn text(sample: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![3 => mutated(sample), 1 => "\\PC{0,200}", 1 => any::<String>()]
}

const MOUNTINFO: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
60 1 0:55 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a:/b,nfs_export=on
61 1 254:0 /home /home\\040dir rw - ext4 /dev/vda rw
";

const STATUS: &str = "Name:\tfdzoo\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t7\n\
TracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\nNSpid:\t42\nNSpgid:\t42\t1\nNSsid:\t40\t1\n";

const STAT: &str = "42 (fd zoo) S 7 42 40 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 100";

const CGROUP: &str = "12:pids:/docker/abc\n9:name=systemd:/system.slice/x.service\n\
0::/system.slice/docker-3f4e2a1b9c0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f.scope\n";

const CGROUP_PATH: &str = "/kubepods.slice/kubepods-besteffort.slice/\
kubepods-besteffort-pod0b6e3c2a_1d4f_4a5b_9c8d_7e6f5a4b3c2d.slice/\
cri-containerd-3f4e2a1b9c0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f.scope/\
lxc.payload.box/user.slice/x.service";

const FDINFO: &str = "pos:\t0\nflags:\t00\nmnt_id:\t17\n\
inotify wd:2 ino:3c4a7 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n\
fanotify ino:10 sdev:800001 mflags:0 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:00\n";

const KALLSYMS: &str = "ffffffff81000000 T _stext\nffffffff81234560 t pipe_release\n\
ffffffffc0a01000 t foo_open\t[foo]\nffffffff82000000 D ext4_file_operations\n0000000000000000 A irq_stack\n";

const CRIU_CONF: &str = "# defaults\ntcp-established\nghost-limit 100M  # big\n\
manage-cgroups=full\nlsm-profile \"apparmor:my profile\"\nno-link-remap\nexternal unix[42]\n";

const WITH: &str =
    "--tcp-established --ghost-limit 2M --external=unix[5] --ext-unix-sk --no-file-locks";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mountinfo(text in text(MOUNTINFO)) {
        let lines = text.lines().count();
        prop_assert!(quick(|| cgroups::parse_mountinfo(&text)).len() <= lines);
        prop_assert!(quick(|| map_files::mount_types(&text)).len() <= lines);
        let fss = quick(|| fsnotify::filesystems(&text));
        prop_assert!(fss.values().map(|f| f.mount_points.len()).sum::<usize>() <= lines);
    }

    #[test]
    fn fdinfo(text in text(FDINFO)) {
        prop_assert!(quick(|| fsnotify::parse_marks(&text)).len() <= text.lines().count());
        quick(|| map_files::fdinfo_mnt_id(&text));
    }

    #[test]
    fn proc_status_stat_and_cgroup(status in text(STATUS), stat in text(STAT), cg in text(CGROUP)) {
        let info = quick(|| procfs::parse_status(42, &status));
        prop_assert!(info.comm.len() <= status.len());
        quick(|| procfs::parse_kind(42, &status, &stat));
        let paths = quick(|| procfs::parse_cgroups(&cg));
        prop_assert!(paths.len() <= cg.lines().count());
    }

    #[test]
    fn cgroup_paths_and_container_ids(path in text(CGROUP_PATH)) {
        if let Some((name, dir)) = quick(|| container_id::from_path(&path)) {
            prop_assert!(dir.len() <= path.len() + 1 && name.id.len() <= path.len());
            let _ = name.short_id();
        }
        if let Some(name) = quick(|| container_id::from_dir(&path)) {
            let _ = name.short_id();
        }
        for part in path.split('/') {
            quick(|| container_id::pod_uid(part));
        }
        if let Some((unit_path, unit)) = quick(|| workload::unit_of(&path)) {
            prop_assert!(unit_path.len() <= path.len() + 1 && unit.len() <= path.len());
        }
    }

    #[test]
    fn kallsyms(text in text(KALLSYMS)) {
        let wanted: HashSet<u64> = [0xffffffff81234560, 0xffffffffc0a01000, 0xffffffff82000000].into();
        match quick(|| Symbols::lookup(text.as_bytes(), &wanted)) {
            Ok(s) => prop_assert!(s.entries().len() <= text.lines().count()),
            Err(e) => one_line(e),
        }
        let names = HashSet::from(["pipe_release", "foo_open"]);
        match quick(|| Symbols::lookup_functions(text.as_bytes(), &names)) {
            Ok(s) => prop_assert!(s.entries().len() <= text.lines().count()),
            Err(e) => one_line(e),
        }
    }

    #[test]
    fn criu_config_files(text in text(CRIU_CONF)) {
        match quick(|| config_file::parse(&text, "t.conf")) {
            Ok(lines) => prop_assert!(lines.len() <= text.lines().count()),
            Err(e) => one_line(e),
        }
    }

    #[test]
    fn with_options(text in text(WITH)) {
        match quick(|| Given::parse(&text, Source::With)) {
            Ok(g) => prop_assert!(g.options().len() <= text.split_whitespace().count()),
            Err(e) => one_line(e),
        }
    }

    #[test]
    fn profiles(text in text(BUILTIN_PROFILES[1].1)) {
        if let Err(e) = quick(|| parse_profile(&text, "t.toml")) {
            one_line(e);
        }
    }

    #[test]
    fn snapshots(text in text(SNAPSHOT), bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        for input in [text.as_bytes(), &bytes] {
            match quick(|| Snapshot::parse(input)) {
                Ok(s) => prop_assert!(s.files.len() + s.procs.len() <= input.len()),
                Err(e) => one_line(e),
            }
        }
    }
}

/// A small snapshot in the saved format: one file, one process, what was scanned.
const SNAPSHOT: &str = r#"{"scanned":{"host":"h","kernel":"6.18","time":"2025-01-01T00:00:00Z","filter":{"pid":7},"profile":"criu-4","criu":null},
"files":[{"pid":7,"fd":3,"mapping":null,"f_op":18446744071600628672,"file_type":"chr","mode":8630,
"rdev":{"major":1,"minor":3},"dev":{"major":0,"minor":6},"ino":3,"size":0,"allocated":0,"nlink":1,
"fs_type":"devtmpfs","fs_magic":16914836,"name":"null","f_flags":32770,"unlinked":false,
"mount_visible":true,"mnt_id":24,"locked":false,"socket":null,"pidfd_target":null,"tty_index":null,"inode_known":true}],
"ops":{"18446744071600628672":[0,0,0,0,0,0,0,0,0,0,0,0,0,0]},"symbols":[],"data_symbols":0,
"procs":{"7":{"pid":7,"ppid":1,"comm":"x","sid":7,"pgid":7,"tracer_pid":0,"netns":null,"ipcns":null}},
"own_netns":null,"own_ipcns":null}"#;

/// The sample is a snapshot the current code reads: mutations start from valid input.
#[test]
fn the_snapshot_sample_is_valid() {
    let snap = Snapshot::parse(SNAPSHOT.as_bytes()).expect("the sample parses");
    assert_eq!((snap.files.len(), snap.procs.len()), (1, 1));
}
