//! Retention: `done` events are deleted once older than the configured age;
//! `dead` events stay until an operator replays or removes them. Runs on
//! every instance; the deletes are idempotent.

use std::time::Duration;

use super::Inbox;
use crate::config::RetentionSettings;
use crate::now_ms;

/// Starts the periodic sweep (nothing when retention is off).
pub fn spawn(inbox: Inbox, settings: RetentionSettings) {
    if settings.done_after_ms == 0 {
        return;
    }
    crate::vital::spawn("retention", async move {
        let mut every = tokio::time::interval(Duration::from_millis(settings.sweep_interval_ms.max(100)));
        loop {
            every.tick().await;
            match inbox.prune_done(now_ms() - settings.done_after_ms as i64).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "done events past retention deleted"),
                Err(e) => tracing::warn!("retention sweep failed: {e:#}"),
            }
        }
    });
}
