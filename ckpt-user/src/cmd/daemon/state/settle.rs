//! When a workload's change becomes an alert: it must hold for the settle time, changes in
//! between coalesce into the net one, and a global rate limit caps what is written.

use std::time::Duration;

use serde::Serialize;

use crate::classify::Verdict;
use crate::scope::workload::Kind;

/// Which workload an alert is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadRef {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub root: u32,
}

/// The member, and its fd or check, that decides a workload's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decider {
    pub pid: u32,
    pub comm: String,
    /// None for a mapping or a check of the task itself.
    pub fd: Option<u32>,
    pub kind: String,
    pub what: String,
    pub reason: String,
}

/// A workload whose verdict changed and held.
#[derive(Clone, Debug)]
pub struct Change {
    pub event: &'static str,
    pub workload: WorkloadRef,
    pub verdict: Verdict,
    /// The verdict its previous alert told (or that it was ok), None for a workload new to
    /// the daemon.
    pub previous: Option<Verdict>,
    pub decider: Option<Decider>,
    pub options: Vec<String>,
}

pub fn event_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Blocks => "became-blocking",
        Verdict::Needs => "needs-options",
        Verdict::Unknown => "unknown",
        Verdict::Ok => "became-ok",
    }
}

/// One judgement of a workload.
#[derive(Clone, Debug)]
pub struct Observed {
    pub workload: WorkloadRef,
    pub verdict: Verdict,
    pub decider: Option<Decider>,
    /// The decider is a member of another workload nested inside this one's dump, judged in
    /// its own dump there: that workload tells of it, not every workload around it.
    pub nested: bool,
    pub options: Vec<String>,
}

/// A workload's verdicts over time.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub last: Observed,
    /// When `last.verdict` was first observed.
    since: Duration,
    /// The verdict that last held for the settle time (None: none yet).
    pub settled: Option<Verdict>,
    /// What the alerts so far have told of it (ok unless one said otherwise).
    told: Option<Verdict>,
}

impl Tracked {
    pub fn new(first: Observed, now: Duration) -> Self {
        Self {
            last: first,
            since: now,
            settled: None,
            told: None,
        }
    }

    /// Records a judgement. True while it differs from the settled verdict (or none has
    /// settled yet): the workload waits to settle.
    pub fn observe(&mut self, o: Observed, now: Duration) -> bool {
        if o.verdict != self.last.verdict {
            self.since = now;
        }
        self.last = o;
        self.settled != Some(self.last.verdict)
    }

    pub fn held(&self, now: Duration, settle: Duration) -> bool {
        now.saturating_sub(self.since) >= settle
    }

    /// The verdict has held: it settles, and says whether that is news to alert on. An ok
    /// workload never seen otherwise is no news, nor a verdict a nested workload decides.
    pub fn settle(&mut self) -> Option<Change> {
        let o = &self.last;
        self.settled = Some(o.verdict);
        let told = self.told.unwrap_or(Verdict::Ok);
        let news = match o.verdict {
            Verdict::Ok => told != Verdict::Ok,
            v => !o.nested && told != v,
        };
        let previous = self.told;
        if news || o.verdict == Verdict::Ok {
            self.told = Some(o.verdict);
        }
        news.then(|| Change {
            event: event_name(o.verdict),
            workload: o.workload.clone(),
            verdict: o.verdict,
            previous,
            decider: o.decider.clone(),
            options: o.options.clone(),
        })
    }
}

/// A token bucket: `per_minute` alerts a minute on average, as many at once.
#[derive(Clone, Debug)]
pub struct RateLimit {
    per_minute: u32,
    tokens: f64,
    at: Duration,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            tokens: per_minute as f64,
            at: Duration::ZERO,
        }
    }

    /// Takes one token at `now`; false when there is none.
    pub fn take(&mut self, now: Duration) -> bool {
        let refill = now.saturating_sub(self.at).as_secs_f64() * self.per_minute as f64 / 60.0;
        self.tokens = (self.tokens + refill).min(self.per_minute as f64);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
