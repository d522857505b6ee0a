//! runc inside the guest, as the engines drive it: an OCI bundle whose rootfs is an overlay
//! mount (the image's lower layer on the ext4 scratch disk, as container storage is),
//! `runc run -d` with pipes for stdio (or a pty, received over a console socket), `runc exec
//! -d`, `runc checkpoint --leave-running`, and `runc delete --force`.

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The files of the image (busybox, fdzoo, fdctl and their libraries), one guest path a line,
/// written by the host into the initramfs.
pub const IMAGE_MANIFEST: &str = "/etc/container-image";
/// The container storage: the image's lower layer, each container's upper and work
/// directories, and the host directories bound into containers.
pub const STORAGE: &str = "/srv/zoo/ctr";
/// Bundles (config.json and the rootfs mount point), as engines keep them under /run.
const BUNDLES: &str = "/run/ctr";
const CHECKPOINT: &str = "/tmp/ctr-checkpoint";
/// runc gives CRIU this file (unless the container's annotations name another): the only
/// way to pass options runc's command line lacks.
const RUNC_CONF: &str = "/etc/criu/runc.conf";
/// How long a container may take to say it is ready (TCG is slow, but not this slow).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Every capability runc 1.1 knows: the helpers need CAP_PERFMON for perf_event_open under
/// Debian's perf_event_paranoid=3, and nothing here is about privileges.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What one container is made of.
pub struct Spec {
    pub args: Vec<String>,
    pub terminal: bool,
    /// Namespaces it shares with the host (left out of config.json, as `--network host` does).
    pub host_namespaces: &'static [&'static str],
    /// (host path, container path) bind mounts.
    pub binds: &'static [(&'static str, &'static str)],
    /// (path, major, minor) character devices, created and allowed as `--device` does.
    pub devices: &'static [(&'static str, u32, u32)],
}

/// Builds the image's lower layer from the files the manifest lists (once per guest).
pub fn prepare_image() -> anyhow::Result<()> {
    let lower = Path::new(STORAGE).join("lower");
    let manifest = std::fs::read_to_string(IMAGE_MANIFEST).context(IMAGE_MANIFEST)?;
    for file in manifest.lines().filter(|l| !l.is_empty()) {
        let to = lower.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().context("image path")?)?;
        std::fs::copy(file, &to).with_context(|| format!("copying {file}"))?;
    }
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet))?;
    }
    for dir in ["proc", "dev", "sys", "tmp", "zoo"] {
        std::fs::create_dir_all(lower.join(dir))?;
    }
    Ok(())
}

/// A running container and the host's ends of its stdio: held open for as long as it runs.
pub struct Container {
    pub name: String,
    /// The 64-hex id its cgroup path (`/docker/<id>`) names.
    pub id: String,
    stdin: Option<std::io::PipeWriter>,
    /// The read end of its stdout pipe, or its pty master.
    stdout: OwnedFd,
    stderr: Option<std::io::PipeReader>,
    /// The host's ends of the stdio of processes `runc exec` started.
    exec_stdio: Vec<OwnedFd>,
    /// Last: removed once the container's fds above are closed.
    _bundle: Bundle,
}

/// What a container's first line said.
pub enum Started {
    Ready(Container),
    /// The helper cannot make its case on this kernel (fdzoo's UNSUPPORTED line).
    Unsupported(String),
}

impl Container {
    /// Creates and starts container `name` detached, and waits for its first line: `READY`
    /// (or fdctl's `ready`).
    pub fn start(name: &str, spec: &Spec) -> anyhow::Result<Started> {
        let id = container_id(name);
        let bundle = Bundle::create(name, &id, spec)?;
        // `runc run -d` hands its own stdio to the container; with a terminal it hands over
        // the pty master instead, and its stdio are runc's alone.
        let (status, stdout, stdin, stderr) = if spec.terminal {
            (None, bundle.run_with_console()?, None, None)
        } else {
            let (in_r, in_w) = std::io::pipe()?;
            let (out_r, out_w) = std::io::pipe()?;
            let (err_r, err_w) = std::io::pipe()?;
            let status = Command::new("runc")
                .args(["run", "-d", "--bundle"])
                .arg(&bundle.dir)
                .arg(name)
                .stdin(in_r)
                .stdout(out_w)
                .stderr(err_w)
                .status()
                .context("running runc run")?;
            (Some(status), OwnedFd::from(out_r), Some(in_w), Some(err_r))
        };
        let container = Container {
            name: name.into(),
            id,
            stdin,
            stdout,
            stderr,
            exec_stdio: Vec::new(),
            _bundle: bundle,
        };
        if let Some(status) = status.filter(|s| !s.success()) {
            bail!("runc run {name} failed ({status}): {}", container.stderr());
        }
        let line = match read_line(&container.stdout, READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => bail!("{name}: {e:#}; stderr: {}", container.stderr()),
        };
        if let Some(why) = line.strip_prefix("UNSUPPORTED ") {
            return Ok(Started::Unsupported(why.into()));
        }
        if !line.to_ascii_lowercase().starts_with("ready") {
            bail!("{name} said {line:?}; stderr: {}", container.stderr());
        }
        Ok(Started::Ready(container))
    }

    /// Sends one command line to the container's stdin (fdctl) and waits for its answer.
    pub fn command(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin pipe")?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        let answer = read_line(&self.stdout, READY_TIMEOUT)?;
        if answer.starts_with("error") {
            bail!("{}: `{line}` answered {answer:?}", self.name);
        }
        Ok(())
    }

    /// `runc exec -d NAME ARGS...`: one more process in the container, beside its init.
    pub fn exec(&mut self, args: &[&str]) -> anyhow::Result<()> {
        let (in_r, in_w) = std::io::pipe()?;
        let (out_r, out_w) = std::io::pipe()?;
        let out = Command::new("runc")
            .args(["exec", "-d", &self.name])
            .args(args)
            .stdin(in_r)
            .stdout(out_w.try_clone()?)
            .stderr(out_w)
            .status()
            .context("running runc exec")?;
        if !out.success() {
            bail!("runc exec {} failed ({out})", self.name);
        }
        self.exec_stdio
            .extend([OwnedFd::from(in_w), OwnedFd::from(out_r)]);
        Ok(())
    }

    /// `runc checkpoint --leave-running` with runc's `flags` and, when there are any, CRIU
    /// options in runc.conf. (passed, first error line).
    pub fn checkpoint(
        &self,
        flags: &[String],
        config: &[String],
    ) -> anyhow::Result<(bool, String)> {
        let (images, work) = (format!("{CHECKPOINT}/images"), format!("{CHECKPOINT}/work"));
        let _ = std::fs::remove_dir_all(CHECKPOINT);
        std::fs::create_dir_all(CHECKPOINT)?;
        if !config.is_empty() {
            std::fs::create_dir_all("/etc/criu")?;
            std::fs::write(RUNC_CONF, config.join("\n") + "\n")?;
        }
        let out = Command::new("runc")
            .args(["checkpoint", "--leave-running", "--image-path", &images])
            .args(["--work-path", &work])
            .args(flags)
            .arg(&self.name)
            .stdin(Stdio::null())
            .output()
            .context("running runc checkpoint");
        // The file and its directory go (if empty): the guest had neither.
        let _ = std::fs::remove_file(RUNC_CONF);
        let _ = std::fs::remove_dir("/etc/criu");
        let out = out?;
        // Lossy: CRIU logs paths and names as the kernel gives them, not always UTF-8.
        let log = match out.status.success() {
            true => None,
            false => Some(std::fs::read(format!("{work}/dump.log")).unwrap_or_default()),
        };
        let _ = std::fs::remove_dir_all(CHECKPOINT);
        let Some(log) = log else {
            return Ok((true, String::new()));
        };
        // CRIU's first telling error; else (CRIU died without one) its log's last line; else
        // (runc failed before CRIU ran) runc's last word.
        let last = |text: &str| {
            let line = text.lines().rfind(|l| !l.trim().is_empty());
            line.unwrap_or_default().trim().to_string()
        };
        let log = String::from_utf8_lossy(&log);
        let error = [
            super::oracle::first_error(&log),
            last(&log),
            last(&String::from_utf8_lossy(&out.stderr)),
        ];
        Ok((
            false,
            error
                .into_iter()
                .find(|e| !e.is_empty())
                .unwrap_or_default(),
        ))
    }

    /// What the container (or runc, for it) wrote to stderr so far.
    fn stderr(&self) -> String {
        let Some(pipe) = &self.stderr else {
            return String::new();
        };
        // SAFETY: F_SETFL on our own pipe end: reading must not wait for a writer.
        unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &*pipe, &mut text);
        String::from_utf8_lossy(&text).trim().to_string()
    }
}

/// A bundle, its overlay rootfs and, once started, the container: all removed on drop.
struct Bundle {
    name: String,
    dir: PathBuf,
    layer: PathBuf,
}

impl Bundle {
    fn create(name: &str, id: &str, spec: &Spec) -> anyhow::Result<Self> {
        let dir = Path::new(BUNDLES).join(name);
        let layer = Path::new(STORAGE).join(name);
        let bundle = Bundle {
            name: name.into(),
            dir,
            layer,
        };
        let rootfs = bundle.dir.join("rootfs");
        let (upper, work) = (bundle.layer.join("upper"), bundle.layer.join("work"));
        for d in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(d)?;
        }
        let options = format!(
            "lowerdir={STORAGE}/lower,upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        checked(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(&rootfs),
        )?;
        std::fs::write(
            bundle.dir.join("config.json"),
            serde_json::to_vec_pretty(&config(spec, id))?,
        )?;
        Ok(bundle)
    }

    /// `runc run -d --console-socket`: runc sends the pty master it made over the socket.
    fn run_with_console(&self) -> anyhow::Result<OwnedFd> {
        let socket = self.dir.join("console.sock");
        let listener = UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let mut runc = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(&self.dir)
            .arg("--console-socket")
            .arg(&socket)
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running runc run")?;
        let started = Instant::now();
        let received = loop {
            match listener.accept() {
                Ok((stream, _)) => break receive_fd(&stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => break Err(e).context("accepting runc's console connection"),
            }
            if runc.try_wait()?.is_some() || started.elapsed() > READY_TIMEOUT {
                break Err(anyhow::anyhow!("runc sent no console"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = runc.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        match received {
            Ok(master) if out.status.success() => Ok(master),
            Ok(_) => bail!("runc run {} ({}): {}", self.name, out.status, stderr.trim()),
            Err(e) => bail!(
                "{e:#}; runc run {} ({}): {}",
                self.name,
                out.status,
                stderr.trim()
            ),
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Errors are ignored: whatever part of the container exists goes.
        let quiet = |cmd: &mut Command| {
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        quiet(Command::new("runc").args(["delete", "--force", &self.name]));
        quiet(Command::new("umount").arg(self.dir.join("rootfs")));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.layer);
    }
}

/// Runs a command that must succeed; its stderr is the error.
fn checked(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A 64-hex id that reads as its name: the name's bytes in hex, zero-padded.
pub fn container_id(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<64.64}")
}

/// config.json: what `runc spec` writes, made the way Docker and Podman run a container (a
/// writable root, every namespace unless shared with the host, a cgroup namespace), with a
/// cgroup path ckpt-watch recognises as Docker's (cgroupfs driver).
fn config(spec: &Spec, id: &str) -> Value {
    let namespaces: Vec<Value> = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        .into_iter()
        .filter(|ns| !spec.host_namespaces.contains(ns))
        .map(|ns| json!({ "type": ns }))
        .collect();
    let mount = |destination: &str, kind: &str, source: &str, options: &[&str]| json!({ "destination": destination, "type": kind, "source": source, "options": options });
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    mounts.extend(
        spec.binds
            .iter()
            .map(|(source, destination)| mount(destination, "bind", source, &["rbind", "rw"])),
    );
    let devices: Vec<Value> = spec
        .devices
        .iter()
        .map(|(path, major, minor)| {
            json!({ "path": path, "type": "c", "major": major, "minor": minor,
                    "fileMode": 0o666, "uid": 0, "gid": 0 })
        })
        .collect();
    let mut allowed = vec![json!({ "allow": false, "access": "rwm" })];
    allowed.extend(spec.devices.iter().map(|(_, major, minor)| {
        json!({ "allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm" })
    }));
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": spec.terminal,
            "user": { "uid": 0, "gid": 0 },
            "args": spec.args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "noNewPrivileges": true,
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "ctr",
        "mounts": mounts,
        "linux": {
            "cgroupsPath": format!("/docker/{id}"),
            "namespaces": namespaces,
            "devices": devices,
            "resources": { "devices": allowed },
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    })
}

/// One line from `fd` (a pipe or a pty master), without its line end; waits at most
/// `timeout`. Read a byte at a time: nothing after the line may be consumed.
fn read_line(fd: &OwnedFd, timeout: Duration) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut line = Vec::new();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as i32) };
        if ready == 0 {
            bail!(
                "no line within {timeout:?} (so far {:?})",
                String::from_utf8_lossy(&line)
            );
        }
        let mut byte = 0u8;
        // SAFETY: reads one byte into a valid buffer.
        match unsafe { libc::read(fd.as_raw_fd(), (&raw mut byte).cast(), 1) } {
            1 if byte == b'\n' => break,
            1 => line.push(byte),
            0 => bail!(
                "closed before a full line ({:?})",
                String::from_utf8_lossy(&line)
            ),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    bail!("reading the container's output: {e}");
                }
            }
        }
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches('\r')
        .to_string())
}

/// The one fd a SCM_RIGHTS message on `stream` carries (runc's console socket protocol).
fn receive_fd(stream: &UnixStream) -> anyhow::Result<OwnedFd> {
    // CMSG_SPACE(sizeof(int)) on 64-bit Linux; runc's message also carries the pty's name.
    let mut control = [0u8; 24];
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; its pointers are set to the buffers above, which
    // outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: recvmsg into the buffers `msg` points to; the fd is read from the first cmsg.
    unsafe {
        if libc::recvmsg(stream.as_fd().as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error()).context("receiving the console");
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            bail!("runc's console message carried no fd");
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
