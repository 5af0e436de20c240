//! The HTTP edge: webhook intake and health. Each file ends in a `router`.

mod admin;
mod admin_plugins;
mod error;
mod health;
pub mod request_id;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use tokio::sync::Notify;

use crate::inbox::Inbox;
use crate::plugins::PluginSet;
use crate::routes::RouteTable;

pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub inbox: Arc<dyn Inbox>,
    /// Stores deliveries with group commit.
    pub intake: crate::inbox::intake::IntakeWriter,
    pub routes: Arc<RouteTable>,
    pub plugins: Arc<PluginSet>,
    /// The plugin store and this instance's loader, for the admin API.
    pub plugin_sync: Arc<crate::plugins::sync::PluginSync>,
    /// Wakes the worker when an event is stored.
    pub wake: Arc<Notify>,
    pub instance_id: String,
    pub body_limit: usize,
    /// The admin API's token; none leaves the API unmounted.
    pub admin_token: Option<crate::config::Secret>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(webhooks::router(&state.routes))
        .merge(health::router())
        .merge(admin::router())
        .merge(admin_plugins::router())
        .fallback(|| async { ApiError::not_found("no such path") })
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
