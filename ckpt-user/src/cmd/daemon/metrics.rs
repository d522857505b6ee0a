//! Prometheus metrics of the daemon (prometheus-client: the maintained Rust client, encodes
//! the text format).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub processes: Family<Labels, Gauge>,
    pub events: Family<Labels, Counter>,
    pub events_lost: Counter,
    pub events_filtered: Counter,
    pub socket_watches: Family<Labels, Counter>,
    pub reconciles: Family<Labels, Counter>,
    pub reconcile_seconds: Histogram,
    pub backend: Family<Labels, Gauge>,
    pub alerts: Family<Labels, Counter>,
    pub alerts_suppressed: Family<Labels, Counter>,
    pub alerts_dropped: Family<Labels, Counter>,
    pub http_connections: Gauge,
    pub http_closed: Family<Labels, Counter>,
    pub workload_verdict: Family<Labels, Gauge>,
    pub workloads: Family<Labels, Gauge>,
    pub workload_series_dropped: Counter,
    pub last_rescan: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ckpt_watch");
        let processes = Family::<Labels, Gauge>::default();
        let events = Family::<Labels, Counter>::default();
        let events_lost = Counter::default();
        let events_filtered = Counter::default();
        let socket_watches = Family::<Labels, Counter>::default();
        let reconciles = Family::<Labels, Counter>::default();
        let reconcile_seconds = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let backend = Family::<Labels, Gauge>::default();
        let alerts = Family::<Labels, Counter>::default();
        registry.register("processes", "Processes by verdict", processes.clone());
        registry.register(
            "events",
            "Ring-buffer events received, by kind",
            events.clone(),
        );
        registry.register(
            "events_lost",
            "Events lost: the ring buffer, or the daemon's backlog of events read from it, had no room for them, or the kernel skipped an event program already running on that CPU",
            events_lost.clone(),
        );
        registry.register(
            "events_filtered",
            "fd installs dropped in the kernel: the profile proves them ok whatever their state (TCP sockets: in their present state, reported when they leave it)",
            events_filtered.clone(),
        );
        registry.register(
            "socket_watches",
            "Watches of TCP sockets in a state their kind is ok in, by outcome: started (the kernel reports the socket when it leaves that state), refused (the map of watched sockets was full: the socket is judged unknown)",
            socket_watches.clone(),
        );
        registry.register(
            "reconciles",
            "Full iterator rescans, by reason",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of full rescans",
            reconcile_seconds.clone(),
        );
        registry.register(
            "backend",
            "The install-event backend in use (1)",
            backend.clone(),
        );
        registry.register("alerts", "Alerts written, by event", alerts.clone());
        let alerts_suppressed = Family::<Labels, Counter>::default();
        registry.register(
            "alerts_suppressed",
            "Alerts over --max-alerts-per-minute, logged but not written, by event",
            alerts_suppressed.clone(),
        );
        let alerts_dropped = Family::<Labels, Counter>::default();
        registry.register(
            "alerts_dropped",
            "Alerts not written, by reason: queue-full (the output fell behind), write-failed",
            alerts_dropped.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "http_connections",
            "HTTP connections open",
            http_connections.clone(),
        );
        let http_closed = Family::<Labels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "HTTP connections closed unanswered, by reason: refused and evicted (over the cap), \
             header-timeout, deadline",
            http_closed.clone(),
        );
        let workload_verdict = Family::<Labels, Gauge>::default();
        registry.register(
            "workload_verdict",
            "1 for the settled verdict of each container and systemd unit",
            workload_verdict.clone(),
        );
        let workloads = Family::<Labels, Gauge>::default();
        registry.register(
            "workloads",
            "Workloads by kind and settled verdict",
            workloads.clone(),
        );
        let workload_series_dropped = Counter::default();
        registry.register(
            "workload_series_dropped",
            "Workloads left out of ckpt_watch_workload_verdict by --max-workload-series",
            workload_series_dropped.clone(),
        );
        let last_rescan = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_rescan_timestamp_seconds",
            "Unix time of the last full rescan",
            last_rescan.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("commit", env!("CKPT_GIT_COMMIT").to_string()),
            ])
            .set(1);
        registry.register(
            "build_info",
            "The version and git commit this binary was built from (1)",
            build_info,
        );
        Self {
            registry,
            processes,
            events,
            events_lost,
            events_filtered,
            socket_watches,
            reconciles,
            reconcile_seconds,
            backend,
            alerts,
            alerts_suppressed,
            alerts_dropped,
            http_connections,
            http_closed,
            workload_verdict,
            workloads,
            workload_series_dropped,
            last_rescan,
        }
    }
}

pub fn label(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_string())]
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_text_format() {
        let m = Metrics::default();
        m.processes
            .get_or_create(&label("verdict", "blocks"))
            .set(2);
        m.events_lost.inc_by(3);
        let text = m.render();
        assert!(
            text.contains("ckpt_watch_processes{verdict=\"blocks\"} 2"),
            "{text}"
        );
        assert!(text.contains("ckpt_watch_events_lost_total 3"), "{text}");
        assert!(
            text.contains(&format!(
                "ckpt_watch_build_info{{version=\"{}\",commit=",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
