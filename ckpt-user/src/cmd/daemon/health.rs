//! What the event loop, the alert writer and the HTTP server share, and what `/healthz` makes of
//! it: the facts, and every reason the daemon cannot be trusted right now (then 503), each
//! measured from a time the event loop or the alert writer left here.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::metrics::Metrics;
use super::state::WorkloadStatus;

/// The event loop's counters tick every 250 ms; one this late means events wait undrained
/// (a rescan of a large host takes seconds, not this long).
pub const LOOP_LAG: Duration = Duration::from_secs(10);
/// An alert write (or the open of a FIFO) taking this long means nobody reads the output.
pub const ALERT_STALL: Duration = Duration::from_secs(5);
/// Lost events and dropped alerts keep `/healthz` failing this long after the last one.
pub const RECENT: Duration = Duration::from_secs(60);

pub struct Shared {
    pub metrics: Metrics,
    pub health: Health,
    /// Every workload and its verdict, as of the last settle.
    pub workloads: Vec<WorkloadStatus>,
    pub watch: Watch,
}

pub type SharedState = Arc<Mutex<Shared>>;

/// Locks the shared state. A thread that panicked while holding it left counts, never a half-made
/// invariant: the poison is ignored so that one bad client or alert cannot stop the daemon.
pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The facts `/healthz` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Health {
    pub backend: String,
    /// Better backends this kernel refused, and why.
    pub passed_over: Vec<String>,
    pub processes: usize,
    pub workloads: usize,
    pub events_lost: u64,
    pub reconciles: u64,
}

/// When things last happened that decide whether the daemon is healthy.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The event loop's last counters tick.
    pub loop_tick: Instant,
    pub events_lost_at: Option<Instant>,
    pub alerts_dropped_at: Option<Instant>,
    /// Since when the alert writer has been inside one write or open, if it is.
    pub alert_busy_since: Option<Instant>,
    /// Why the last alert write failed (None once one succeeds).
    pub alert_error: Option<String>,
}

/// One reason `/healthz` fails: a fixed name to alert on, and the measure behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub reason: &'static str,
    pub detail: String,
}

/// The `/healthz` document.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// `ok`, or `failing` with its reasons (HTTP 503).
    pub status: &'static str,
    pub reasons: Vec<Reason>,
    #[serde(flatten)]
    pub facts: &'a Health,
}

impl Watch {
    pub fn new(now: Instant) -> Self {
        Watch {
            loop_tick: now,
            events_lost_at: None,
            alerts_dropped_at: None,
            alert_busy_since: None,
            alert_error: None,
        }
    }

    /// Every reason the daemon is not healthy at `now`.
    pub fn reasons(&self, now: Instant) -> Vec<Reason> {
        let ago = |t: Instant| now.saturating_duration_since(t);
        let recent = |t: Option<Instant>| t.map(ago).filter(|d| *d <= RECENT);
        let mut reasons = vec![];
        let lag = ago(self.loop_tick);
        if lag > LOOP_LAG {
            reasons.push(Reason {
                reason: "event-loop-lag",
                detail: format!(
                    "the event loop last ran {:.1} s ago (limit {} s): events wait undrained",
                    lag.as_secs_f64(),
                    LOOP_LAG.as_secs()
                ),
            });
        }
        if let Some(d) = recent(self.events_lost_at) {
            reasons.push(Reason {
                reason: "events-lost",
                detail: format!(
                    "ring-buffer events lost {:.1} s ago: rescans repair the state",
                    d.as_secs_f64()
                ),
            });
        }
        if let Some(d) = self.alert_busy_since.map(ago).filter(|d| *d > ALERT_STALL) {
            reasons.push(Reason {
                reason: "alert-output-blocked",
                detail: format!(
                    "writing an alert has waited {:.1} s: nobody reads the output",
                    d.as_secs_f64()
                ),
            });
        }
        if let Some(e) = &self.alert_error {
            reasons.push(Reason {
                reason: "alert-write-failed",
                detail: format!("the last alert could not be written: {e}"),
            });
        }
        if let Some(d) = recent(self.alerts_dropped_at) {
            reasons.push(Reason {
                reason: "alerts-dropped",
                detail: format!(
                    "alerts dropped {:.1} s ago: the output is not keeping up",
                    d.as_secs_f64()
                ),
            });
        }
        reasons
    }
}

impl Shared {
    pub fn new(health: Health, now: Instant) -> Self {
        Shared {
            metrics: Metrics::default(),
            health,
            workloads: vec![],
            watch: Watch::new(now),
        }
    }

    /// The `/healthz` document as of `now`.
    pub fn report(&self, now: Instant) -> Report<'_> {
        let reasons = self.watch.reasons(now);
        Report {
            status: if reasons.is_empty() { "ok" } else { "failing" },
            reasons,
            facts: &self.health,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(w: &Watch, now: Instant) -> Vec<&'static str> {
        w.reasons(now).into_iter().map(|r| r.reason).collect()
    }

    #[test]
    fn healthy_until_something_is_measured_wrong() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        assert!(names(&w, t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            names(&w, t0 + LOOP_LAG + Duration::from_millis(1)),
            ["event-loop-lag"]
        );
        w.loop_tick = t0 + Duration::from_secs(100);
        let now = t0 + Duration::from_secs(101);
        w.events_lost_at = Some(t0 + Duration::from_secs(50));
        assert_eq!(names(&w, now), ["events-lost"]);
        w.events_lost_at = Some(t0 + Duration::from_secs(30));
        assert!(names(&w, now).is_empty(), "a minute-old loss is forgiven");
        w.alert_busy_since = Some(t0 + Duration::from_secs(97));
        assert!(names(&w, now).is_empty(), "a 4 s write is slow, not stuck");
        w.alert_busy_since = Some(t0 + Duration::from_secs(95));
        w.alert_error = Some("No space left on device (os error 28)".into());
        w.alerts_dropped_at = Some(t0 + Duration::from_secs(100));
        assert_eq!(
            names(&w, now),
            [
                "alert-output-blocked",
                "alert-write-failed",
                "alerts-dropped"
            ]
        );
    }

    #[test]
    fn the_report_says_why_in_json() {
        let t0 = Instant::now();
        let mut s = Shared::new(Health::default(), t0);
        let ok = serde_json::to_value(s.report(t0)).unwrap();
        assert_eq!(ok["status"], "ok");
        assert_eq!(ok["reasons"], serde_json::json!([]));
        s.watch.alert_error = Some("No space left on device (os error 28)".into());
        let failing = serde_json::to_value(s.report(t0)).unwrap();
        assert_eq!(failing["status"], "failing");
        assert_eq!(failing["reasons"][0]["reason"], "alert-write-failed");
        assert!(
            failing["reasons"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("No space")
        );
        assert!(failing["backend"].is_string(), "facts beside: {failing}");
    }
}
