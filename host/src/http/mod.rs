//! The HTTP edge: webhook intake and health. Each file ends in a `router`.

mod admin;
mod admin_plugins;
mod admin_schedules;
mod console;
mod error;
mod health;
pub mod observe;
mod prometheus;
pub mod server;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use tokio::sync::Notify;

use crate::inbox::Inbox;
use crate::plugins::PluginSet;
use crate::routes::RouteTable;

pub use console::format_time;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub inbox: Arc<dyn Inbox>,
    /// Stores deliveries with group commit.
    pub intake: crate::inbox::intake::IntakeWriter,
    pub routes: Arc<RouteTable>,
    pub plugins: Arc<PluginSet>,
    /// The wasmtime runtime (for its instance pool's gauge).
    pub runtime: Arc<crate::runtime::Runtime>,
    /// The plugin store and this instance's loader, for the admin API.
    pub plugin_sync: Arc<crate::plugins::sync::PluginSync>,
    /// Wakes the worker when an event is stored.
    pub wake: Arc<Notify>,
    pub instance_id: String,
    pub body_limit: usize,
    /// Deepest nesting of arrays and objects a JSON body may have.
    pub json_max_depth: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The host's own tables (plugin store, schedules), for the admin API.
    pub db: crate::plugins::store::StoreDb,
    /// The admin API's token; none leaves the API unmounted.
    pub admin_token: Option<crate::config::Secret>,
}

impl AppState {
    /// Replays events (admin API and console): counted, logged, and the
    /// worker woken.
    pub async fn replay(&self, which: crate::inbox::Replay<'_>) -> anyhow::Result<u64> {
        let replayed = self.inbox.replay(which).await?;
        if replayed > 0 {
            metrics::counter!(crate::telemetry::REPLAYS).increment(replayed);
            tracing::info!(?which, replayed, "events replayed by an operator");
            self.wake.notify_one();
        }
        Ok(replayed)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(webhooks::router(&state.routes))
        .merge(health::router())
        .merge(prometheus::router())
        .merge(admin::router())
        .merge(admin_plugins::router())
        .merge(admin_schedules::router())
        .merge(console::router())
        .fallback(|| async { ApiError::not_found("no such path") })
        .layer(axum::middleware::from_fn(observe::layer))
        .with_state(state)
}
