//! The admin console: a few server-rendered pages under `/admin/` for the
//! operators (behind `ADMIN_TOKEN`, like the admin API), one file each: the
//! inbox live ([`dashboard`]), events with filters ([`events`]), one event
//! in detail with replay ([`event`]), plugins with activate and roll back
//! ([`plugins`]); signing in ([`login`], [`session`]). Pages are `maud`
//! templates in the frame of [`page`], escaped by default. Assets are
//! served by the binary; nothing is loaded from elsewhere.

mod dashboard;
mod event;
mod events;
mod login;
mod page;
mod plugins;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use crate::http::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(dashboard::dashboard))
        .route("/admin/login", get(login::login_form).post(login::login))
        .route("/admin/logout", post(login::logout))
        .route("/admin/stats", get(dashboard::stats))
        .route("/admin/events", get(events::events))
        .route("/admin/events/replay-dead", post(events::replay_dead))
        .route("/admin/events/{id}", get(event::event))
        .route("/admin/events/{id}/replay", post(event::replay_one))
        .route("/admin/plugins", get(plugins::plugins))
        .route("/admin/plugins/{name}/activate", post(plugins::activate))
        .route("/admin/plugins/{name}/rollback", post(plugins::rollback))
        .route("/admin/assets/console.css", get(css))
        .route("/admin/assets/console.js", get(js))
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("console.js"),
    )
}
