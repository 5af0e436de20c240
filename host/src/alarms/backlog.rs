//! The backlog monitor: how long the oldest due event has waited for a
//! worker, and how far behind processing is, as gauges; and the
//! `backlog.too_old` operational webhook when the first passes the
//! threshold (`[alerts] backlog_age_secs`), then `backlog.recovered`.

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::{Alarm, Alarms};
use crate::config::AlertSettings;
use crate::inbox::{Backlog, Inbox};
use crate::telemetry;

/// Sets the backlog gauges from `backlog`, read at `now_ms`.
pub fn record_gauges(backlog: &Backlog, now_ms: i64) {
    metrics::gauge!(telemetry::OLDEST_DUE_AGE).set(backlog.oldest_due_age_secs(now_ms));
    metrics::gauge!(telemetry::PROCESSING_LAG).set(backlog.processing_lag_secs(now_ms));
}

/// Starts the monitor (watched: see [`crate::vital`]); it ends when
/// `stop` turns true.
pub fn spawn(inbox: Inbox, alarms: Alarms, settings: AlertSettings, mut stop: watch::Receiver<bool>) {
    crate::vital::spawn("backlog monitor", async move {
        let mut every = tokio::time::interval(Duration::from_millis(settings.check_interval_ms.max(100)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The due time of the oldest event the alarm was raised for, while it stands.
        let mut raised: Option<i64> = None;
        while !*stop.borrow() {
            tokio::select! {
                _ = every.tick() => {}
                changed = stop.changed() => if changed.is_err() { break } else { continue },
            }
            let now = crate::now_ms();
            let backlog = match inbox.backlog_ages(now).await {
                Ok(backlog) => backlog,
                Err(e) => {
                    tracing::warn!("checking the backlog failed: {e:#}");
                    continue;
                }
            };
            record_gauges(&backlog, now);
            let age = backlog.oldest_due_age_secs(now);
            let too_old = age >= settings.backlog_age_secs as f64;
            match (too_old, raised, backlog.oldest_due_at_ms) {
                (true, None, Some(due)) => {
                    tracing::error!(
                        age_secs = age,
                        runnable = backlog.runnable,
                        "the backlog is too old"
                    );
                    alarms.raise(Alarm {
                        id: format!("backlog.too_old:{due}"),
                        kind: "backlog.too_old",
                        data: json!({
                            "oldest_due_age_secs": age,
                            "threshold_secs": settings.backlog_age_secs,
                            "runnable": backlog.runnable,
                        }),
                    });
                    raised = Some(due);
                }
                (false, Some(due), _) => {
                    tracing::info!(age_secs = age, "the backlog is young again");
                    alarms.raise(Alarm {
                        id: format!("backlog.recovered:{due}"),
                        kind: "backlog.recovered",
                        data: json!({ "oldest_due_age_secs": age, "threshold_secs": settings.backlog_age_secs }),
                    });
                    raised = None;
                }
                _ => {}
            }
        }
    });
}
