//! The HTTP edge: webhook intake, health, metrics, the admin API and
//! console. Each file ends in a `router`; [`router`] merges them under the
//! observe layer (request span, request id, metrics), and [`server`] serves
//! it with the edge's connection and time limits.
//!
//! Handlers reach the rest of the host through [`state::AppState`].

mod admin;
mod admin_plugins;
mod admin_schedules;
mod console;
pub mod error;
mod handshakes;
pub mod headers;
mod health;
pub mod json;
pub mod observe;
mod prometheus;
pub mod server;
pub mod state;
mod sync_routes;
mod webhooks;

use std::sync::Arc;

use axum::Router;

use self::error::ApiError;
use self::state::AppState;

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
