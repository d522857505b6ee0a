//! What a guest reports to the host: one JSON object per line on its second serial port.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// The guest itself, first.
    Guest {
        release: String,
        /// The install-event backends the daemon suite runs with, in order.
        backends: Vec<String>,
        /// The filesystem the zoo's files live on (`ext4` with the scratch disk).
        zoo_fs: String,
    },
    /// One fd's ops table named both ways: by the live scan (data symbol first) and by the
    /// same snapshot replayed with its data symbols removed (member functions only).
    Resolve {
        case: String,
        fd: u32,
        what: String,
        live: String,
        members: String,
        /// Whether the live scan named it by a data symbol (it was in kallsyms as data).
        by_data_symbol: bool,
        /// What the case's fd must be named on every kernel, if the suite pins it.
        expected: Option<Vec<String>>,
    },
    /// Debian's CRIU 3.17 and ckpt-watch's `criu-3.17` verdict on one case.
    Oracle {
        case: String,
        /// `dumps`, `needs <options>` or `fails`.
        criu: String,
        /// CRIU's first error line of the plain dump.
        error: String,
        verdict: String,
        options: Vec<String>,
        /// Why ckpt-watch said what it said (its items that are not ok).
        reasons: Vec<String>,
        agree: bool,
    },
    /// One runc container checkpointed for real (`runc checkpoint`, CRIU 3.17 underneath)
    /// and ckpt-watch's `preflight --engine runc --profile criu-3.17` verdict on it.
    Container {
        scenario: String,
        /// `dumps`, `needs <options>` or `fails`.
        runc: String,
        /// The options that made it pass could only be given in /etc/criu/runc.conf (runc's
        /// command line has no flag for them).
        via_config: bool,
        /// CRIU's first error line of the plain checkpoint (runc's own when CRIU said none).
        error: String,
        verdict: String,
        options: Vec<String>,
        reasons: Vec<String>,
        /// The option sets tried after the plain checkpoint that failed too (`with OPTIONS:
        /// first error`): ckpt-watch's proposals, then the catch-all.
        failed: Vec<String>,
        agree: bool,
    },
    /// One dump by Debian's CRIU 3.17 with `ckpt-watch criu-hook` as its action script.
    Hook {
        case: String,
        /// Whether CRIU's dump passed.
        dumped: bool,
        /// The hook's verdict line in CRIU's log.
        verdict: String,
        /// CRIU's first error line when the dump failed.
        error: String,
        /// CRIU seized a task before the hook judged: the guard came too late.
        seized_before_verdict: bool,
        /// The dump stopped exactly when the hook said blocks or needs, before any seizing.
        agree: bool,
    },
    /// One test of the daemon suite, with one install-event backend forced.
    Daemon {
        backend: String,
        test: String,
        passed: bool,
        /// A failed test's output, last lines.
        output: String,
    },
    /// A case this kernel cannot create (fdzoo exit 77).
    Skip { case: String, why: String },
    /// The harness could not run a case: a failure.
    Error { case: String, what: String },
    /// How long one suite took in the guest (the zoo's cases, the containers, the daemon
    /// suite with one backend): where a CI run's minutes go.
    Took { suite: String, secs: u64 },
}

impl Record {
    /// One line for the serial port.
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("records serialise") + "\n"
    }
}
