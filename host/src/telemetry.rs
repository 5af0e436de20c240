//! Logging and metrics.
//!
//! Logs: `tracing` to stderr, level from `LOG_LEVEL`, JSON lines when
//! `LOG_FORMAT=json`. Requests and events run in spans (`request`, `event`)
//! whose fields every line inside carries.
//!
//! Metrics: recorded through the `metrics` facade at the call sites, under
//! the names below, and rendered in Prometheus' text format by
//! `GET /metrics` from the recorder [`prometheus`] installs.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// Requests answered, by `route` (a webhook route's name, or the matched
/// path) and `status`.
pub const HTTP_REQUESTS: &str = "webhook_http_requests_total";
/// Time from request to response, by `route`.
pub const HTTP_DURATION: &str = "webhook_http_request_duration_seconds";
/// Deliveries refused by signature verification, by `route` and `reason`.
pub const VERIFY_FAILURES: &str = "webhook_verification_failures_total";
/// Sync-route deliveries whose handler did not answer within the route's deadline, by `route`.
pub const SYNC_LATE: &str = "webhook_sync_answers_late_total";
/// Provider handshakes answered (not stored), by `route`, `provider` and `handshake`.
pub const HANDSHAKES: &str = "webhook_handshakes_total";
/// Stored events by `status` (the whole inbox, read when scraped).
pub const INBOX_EVENTS: &str = "webhook_inbox_events";
/// Event attempts by `route`, `plugin` and `outcome`: `done`, `retry` (failed,
/// will run again) or `dead`.
pub const EVENT_ATTEMPTS: &str = "webhook_event_attempts_total";
/// One attempt's processing time, by `plugin`, `version` and `outcome`.
pub const EVENT_DURATION: &str = "webhook_event_duration_seconds";
/// Failed plugin calls by `plugin` and `kind`: `trap`, `timeout`,
/// `memory_limit`, `fatal`, `retry`, `invalid`.
pub const PLUGIN_FAILURES: &str = "webhook_plugin_failures_total";
/// Events replayed by an operator.
pub const REPLAYS: &str = "webhook_event_replays_total";
/// Live plugin instances, and the most there may be (the pool's size).
pub const INSTANCES_IN_USE: &str = "webhook_plugin_instances_in_use";
pub const INSTANCES_MAX: &str = "webhook_plugin_instances_max";
/// Outbound requests a plugin's grant refused, by `plugin` and `reason`.
pub const OUTBOUND_REFUSED: &str = "webhook_outbound_refused_total";
/// FAL JWKS fetches by `result` (`ok`, `error`).
pub const JWKS_FETCHES: &str = "webhook_jwks_fetches_total";
/// Requests and connections the HTTP edge turned away, by `reason`:
/// `header_timeout` (408), `body_timeout` (408), `request_timeout` (503),
/// `connection_limit` (503), `overloaded` (503), `head_400`, `head_414`,
/// `head_431` (malformed, over-long or oversized request heads).
pub const HTTP_REJECTIONS: &str = "webhook_http_rejections_total";

/// Handshakes answered on this instance since it started, by route,
/// provider and handshake.
#[derive(Default)]
pub struct HandshakeCounts(std::sync::Mutex<std::collections::BTreeMap<(String, String, &'static str), u64>>);

impl HandshakeCounts {
    pub fn add(&self, route: &str, provider: &str, handshake: &'static str) {
        let mut counts = self.0.lock().expect("not poisoned");
        let key = (route.to_string(), provider.to_string(), handshake);
        *counts.entry(key).or_default() += 1;
    }

    /// (route, provider, handshake, answered), sorted.
    pub fn snapshot(&self) -> Vec<(String, String, &'static str, u64)> {
        let counts = self.0.lock().expect("not poisoned");
        counts
            .iter()
            .map(|((route, provider, name), n)| (route.clone(), provider.clone(), *name, *n))
            .collect()
    }
}

/// Counts one request or connection turned away at the edge.
pub fn count_rejection(reason: &'static str) {
    metrics::counter!(HTTP_REJECTIONS, "reason" => reason).increment(1);
}

/// How long the oldest due event has waited for a worker, in seconds (0
/// when none waits): grows when processing stalls.
pub const OLDEST_DUE_AGE: &str = "webhook_oldest_due_event_age_seconds";
/// How long ago the oldest running or due event arrived, in seconds.
pub const PROCESSING_LAG: &str = "webhook_processing_lag_seconds";
/// Background tasks that died in this process (then `/health` fails and
/// the process stops).
pub const DEAD_TASKS: &str = "webhook_dead_background_tasks";

/// Always 1, labelled with the host's `version`.
pub const BUILD_INFO: &str = "webhook_host_build_info";

/// Bucket bounds, in seconds, of the duration histograms.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The recorder [`prometheus`] installed, once it has been asked for.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Whether metrics go to this process's Prometheus recorder (so that a
/// handle registered now stays the one `/metrics` reads).
pub fn prometheus_installed() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

/// The process's Prometheus recorder, installed on first call; `None` when
/// another recorder was installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(SECONDS).ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            let upkeep = handle.clone();
            // Drains histogram samples into their buckets even when nobody scrapes.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "Requests answered, by route and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from request to response, by route"
    );
    describe_counter!(
        VERIFY_FAILURES,
        "Deliveries refused by signature verification, by route and reason"
    );
    describe_counter!(
        SYNC_LATE,
        "Sync-route deliveries answered 202 because the handler did not answer within the deadline, by route"
    );
    describe_counter!(
        HANDSHAKES,
        "Provider handshakes answered without storing an event, by route, provider and handshake"
    );
    describe_gauge!(INBOX_EVENTS, "Stored events by status");
    describe_counter!(
        EVENT_ATTEMPTS,
        "Event attempts by route, plugin and outcome (done, retry, dead)"
    );
    describe_histogram!(
        EVENT_DURATION,
        Unit::Seconds,
        "Processing time of one attempt, by plugin, version and outcome"
    );
    describe_counter!(
        PLUGIN_FAILURES,
        "Failed plugin calls by plugin and kind (trap, timeout, memory_limit, fatal, retry, invalid)"
    );
    describe_counter!(REPLAYS, "Events replayed by an operator");
    describe_gauge!(INSTANCES_IN_USE, "Live plugin instances");
    describe_gauge!(INSTANCES_MAX, "The plugin instance pool's size");
    describe_counter!(
        OUTBOUND_REFUSED,
        "Outbound requests refused by a plugin's grant, by plugin and reason"
    );
    describe_counter!(JWKS_FETCHES, "FAL JWKS fetches by result");
    describe_gauge!(BUILD_INFO, "Always 1, labelled with the host's version");
    metrics::gauge!(BUILD_INFO, "version" => crate::VERSION).set(1.0);
}

/// A metrics recorder for unit tests that keeps every counter increment as
/// `name{label=value,…} +n`, so a test can assert what was counted.
#[cfg(test)]
pub mod counted {
    /// Records counter increments with their labels.
    #[derive(Default)]
    pub struct Recorded(pub std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    struct Increment(metrics::Key, std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl metrics::CounterFn for Increment {
        fn increment(&self, value: u64) {
            let labels: Vec<String> = self
                .0
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            self.1
                .lock()
                .unwrap()
                .push(format!("{}{{{}}} +{value}", self.0.name(), labels.join(",")));
        }
        fn absolute(&self, _: u64) {}
    }

    impl metrics::Recorder for Recorded {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
            metrics::Counter::from_arc(std::sync::Arc::new(Increment(key.clone(), self.0.clone())))
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }
}
