//! Install-event backends, best first: fentry on `fd_install` (sees every new fd, SCM_RIGHTS
//! and ioctl-made ones too), kprobe on the same, else the exits of fd-creating syscalls. The
//! closing syscalls and the lifecycle tracepoints are attached whatever the backend.

use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{BtfTracePoint, FEntry, KProbe};

use super::syscalls;
use crate::probe::{ProbeError, error_chain, program_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Backend {
    pub const BEST_FIRST: [Backend; 3] = [Backend::Fentry, Backend::Kprobe, Backend::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Fentry => "fentry",
            Backend::Kprobe => "kprobe",
            Backend::Tracepoint => "tracepoint",
        }
    }
}

/// The backend in use, and why the better ones were passed over.
#[derive(Clone, Debug)]
pub struct Attached {
    pub backend: Backend,
    pub passed_over: Vec<(Backend, String)>,
}

/// Attached whatever the backend: closes, the lifecycle, TCP sockets leaving the states they
/// were dropped in, and their end.
const LIFECYCLE: [(&str, &str); 6] = [
    ("ckpt_sys_exit", "sys_exit"),
    ("ckpt_fork", "sched_process_fork"),
    ("ckpt_exec", "sched_process_exec"),
    ("ckpt_exit", "sched_process_exit"),
    ("ckpt_sock_state", "inet_sock_set_state"),
    ("ckpt_tcp_destroy", "tcp_destroy_sock"),
];

fn attach_tp_btf(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    name: &'static str,
    event: &str,
) -> Result<(), ProbeError> {
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(program_error(name))?;
    prog.load(event, btf).map_err(program_error(name))?;
    prog.attach().map_err(program_error(name))?;
    Ok(())
}

fn attach_install(ebpf: &mut Ebpf, btf: &aya::Btf, backend: Backend) -> Result<(), String> {
    const FUNCTION: &str = "fd_install";
    match backend {
        Backend::Fentry => {
            let prog: &mut FEntry = ebpf
                .program_mut("ckpt_fd_install_fentry")
                .ok_or("fentry program missing")?
                .try_into()
                .map_err(|e| error_chain(&e))?;
            prog.load(FUNCTION, btf).map_err(|e| error_chain(&e))?;
            prog.attach().map_err(|e| error_chain(&e))?;
        }
        Backend::Kprobe => {
            let prog: &mut KProbe = ebpf
                .program_mut("ckpt_fd_install_kprobe")
                .ok_or("kprobe program missing")?
                .try_into()
                .map_err(|e| error_chain(&e))?;
            prog.load().map_err(|e| error_chain(&e))?;
            prog.attach(FUNCTION, 0).map_err(|e| error_chain(&e))?;
        }
        // Rides on the sys_exit program attached for closes.
        Backend::Tracepoint => {}
    }
    Ok(())
}

/// Attaches the lifecycle programs and the best install backend among `candidates`, and tells
/// the sys_exit program which syscalls to watch.
pub fn attach(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    candidates: &[Backend],
) -> Result<Attached, ProbeError> {
    for (name, event) in LIFECYCLE {
        attach_tp_btf(ebpf, btf, name, event)?;
    }
    let mut passed_over = vec![];
    let backend = candidates
        .iter()
        .copied()
        .find(|&b| match attach_install(ebpf, btf, b) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(backend = b.name(), "backend unavailable: {why}");
                passed_over.push((b, why));
                false
            }
        })
        .ok_or_else(|| {
            ProbeError::NoBackend(
                passed_over
                    .iter()
                    .map(|(b, w)| format!("{}: {w}", b.name()))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    let mut kinds: Array<_, u16> = Array::try_from(
        ebpf.map_mut("SYSCALL_KIND")
            .ok_or_else(|| ProbeError::Load("map SYSCALL_KIND missing".into()))?,
    )
    .map_err(|e| ProbeError::Load(error_chain(&e)))?;
    for (nr, both) in syscalls::kinds(backend != Backend::Tracepoint) {
        kinds
            .set(nr, both, 0)
            .map_err(|e| ProbeError::Load(error_chain(&e)))?;
    }
    Ok(Attached {
        backend,
        passed_over,
    })
}
