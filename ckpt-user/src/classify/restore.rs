//! The restore side of a dump option: what `criu restore` will need once a dump was made with
//! it (criu/cr-restore.c and the restorers it calls). A `needs` verdict answers "will the dump
//! pass"; this answers "and what then".

/// What restoring a dump made with `option` will need, one sentence starting with
/// `restore will need` or `restore needs nothing more`.
pub fn restore_need(option: &str) -> String {
    let (name, arg) = split(option);
    match name {
        // criu/sk-tcp.c restore_one_tcp(): the socket is rebuilt in TCP repair mode, bound to
        // the addresses it had; criu/sk-inet.c refuses an established image without the flag.
        "--tcp-established" => "restore will need --tcp-established, the same local IP \
            addresses on the restoring host, and the peers still holding their ends"
            .into(),
        // criu/sk-inet.c: sockets dumped with --tcp-close are restored closed.
        "--tcp-close" => "restore needs nothing more: the connections come back closed (the \
            application sees them reset)"
            .into(),
        // criu/sk-inet.c: connections not yet accepted are not in the images.
        "--skip-in-flight" => "restore needs nothing more, but connections not yet accepted \
            are lost: their clients must reconnect"
            .into(),
        // criu/sk-unix.c: a socket marked external is reconnected by name with --ext-unix-sk,
        // or its peer handed over with --inherit-fd.
        "--external" if arg.starts_with("unix[") => format!(
            "restore will need the peer given back: --inherit-fd fd[N]:socket:[{}] \
             (a socket connected to the same peer), or --ext-unix-sk with the peer's name \
             bound again",
            inner(arg)
        ),
        "--ext-unix-sk" => "restore will need --ext-unix-sk and the peer's name bound again \
            (CRIU reconnects the socket to it)"
            .into(),
        // criu/tty.c: the session's terminal is not in the images; restore takes criu's own.
        "--shell-job" => "restore will need --shell-job, run from a terminal the restored \
            tasks can inherit (criu's own stdin becomes their controlling tty)"
            .into(),
        "--external" if arg.starts_with("tty[") => format!(
            "restore will need --inherit-fd fd[N]:tty[{}] giving a terminal back for the pty \
             slave",
            inner(arg)
        ),
        // criu/tty.c: the master is recreated and handed to the caller (runc --console-socket).
        "--orphan-pts-master" => "restore will need --orphan-pts-master and a caller that takes \
            the new pty master (runc's --console-socket)"
            .into(),
        // criu/file-lock.c prepare_file_locks(): the locks are taken again at restore.
        "--file-locks" => "restore will need --file-locks, and no other process holding a \
            conflicting lock on those files"
            .into(),
        // criu/files-reg.c: the dump leaves a hard link (link_remap.N) beside the file, which
        // restore opens and removes.
        "--link-remap" => "restore will need the link_remap.N file the dump left beside the \
            file: the same filesystem, its directory existing and writable"
            .into(),
        // criu/files-reg.c open_remap_ghost(): the file's data is in the images.
        "--ghost-limit" => "restore needs nothing more: the deleted file's data is in the \
            images, recreated in its directory, which must exist"
            .into(),
        // criu/fsnotify.c: the watch is added again by the path found at dump time.
        "--irmap-scan-path" => {
            format!("restore will need {arg} to exist (the watch is added again by path)")
        }
        _ => format!("restore will need {option} too"),
    }
}

/// `--external unix[5]` → (`--external`, `unix[5]`); `--shell-job` → (`--shell-job`, ``).
fn split(option: &str) -> (&str, &str) {
    option.split_once(' ').unwrap_or((option, ""))
}

/// `unix[5]` → `5`.
fn inner(arg: &str) -> &str {
    arg.split_once('[')
        .and_then(|(_, r)| r.strip_suffix(']'))
        .unwrap_or(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_a_profile_proposes_has_its_restore_side() {
        for option in [
            "--tcp-established",
            "--tcp-close",
            "--skip-in-flight",
            "--external unix[4711]",
            "--ext-unix-sk",
            "--shell-job",
            "--external tty[8800:1a]",
            "--orphan-pts-master",
            "--file-locks",
            "--link-remap",
            "--ghost-limit 2M",
            "--irmap-scan-path /srv/data",
        ] {
            let text = restore_need(option);
            assert!(text.starts_with("restore "), "{option}: {text}");
            assert!(
                !text.ends_with("too"),
                "{option} falls to the default: {text}"
            );
        }
        assert!(restore_need("--external unix[4711]").contains("socket:[4711]"));
        assert!(restore_need("--external tty[8800:1a]").contains("tty[8800:1a]"));
        assert!(restore_need("--irmap-scan-path /srv/data").contains("/srv/data"));
        assert_eq!(
            restore_need("--manage-cgroups"),
            "restore will need --manage-cgroups too"
        );
    }
}
