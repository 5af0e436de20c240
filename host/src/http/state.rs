//! What every HTTP handler can reach.

use std::sync::Arc;

use crate::config::Secret;
use crate::inbox::intake::IntakeWriter;
use crate::inbox::{Inbox, Replay};
use crate::plugins::PluginSet;
use crate::plugins::sync::PluginSync;
use crate::routes::RouteTable;
use crate::runtime::Runtime;
use tokio::sync::Notify;

/// What every handler can reach.
pub struct AppState {
    pub inbox: Inbox,
    /// Stores deliveries with group commit (and wakes the worker per batch).
    pub intake: IntakeWriter,
    pub routes: Arc<RouteTable>,
    pub plugins: Arc<PluginSet>,
    /// The wasmtime runtime (for its instance pool's gauge).
    pub runtime: Arc<Runtime>,
    /// The plugin store and this instance's loader, for the admin API.
    pub plugin_sync: Arc<PluginSync>,
    /// Wakes the worker (after a replay).
    pub wake: Arc<Notify>,
    pub instance_id: String,
    pub body_limit: usize,
    /// Deepest nesting of arrays and objects a JSON body may have.
    pub json_max_depth: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The admin API's token; none leaves the API unmounted.
    pub admin_token: Option<Secret>,
    /// Handshakes answered on this instance (the console shows them).
    pub handshakes: crate::telemetry::HandshakeCounts,
    /// Runs a sync route's delivery at once (the worker's own attempt).
    pub worker: Arc<crate::worker::Worker>,
    /// Runs the routes' responder plugins.
    pub gate: Arc<crate::plugins::gate::Gate>,
}

impl AppState {
    /// Replays events (admin API and console): counted, logged, and the
    /// worker woken.
    pub async fn replay(&self, which: Replay<'_>) -> anyhow::Result<u64> {
        let replayed = self.inbox.replay(which).await?;
        if replayed > 0 {
            metrics::counter!(crate::telemetry::REPLAYS).increment(replayed);
            tracing::info!(?which, replayed, "events replayed by an operator");
            self.wake.notify_one();
        }
        Ok(replayed)
    }
}
