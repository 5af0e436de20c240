//! The dashboard: inbox depth by status and the last minute's traffic (all
//! instances: read from the shared inbox), kept live by the console's
//! script from `/admin/stats`, the plugins loaded on this instance, and the
//! provider handshakes it answered (counted, never stored).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::json;

use super::page::{Notice, Section, failure, layout};
use super::session::Operator;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::inbox::Status;
use crate::manifest::short_version as short;

/// The live numbers, as JSON.
pub async fn stats(_: Operator, State(state): State<Arc<AppState>>) -> Response {
    match state.inbox.stats(crate::now_ms() - 60_000).await {
        Ok(stats) => {
            let mut body = json!({
                "instance": state.instance_id,
                "received_per_min": stats.received_since,
                "done_per_min": stats.done_since,
                "done_estimated": stats.done_estimated,
            });
            for status in Status::ALL {
                body[status.as_str()] = stats.count(status).into();
            }
            Json(body).into_response()
        }
        Err(e) => ApiError::unavailable("counting events failed", &e).into_response(),
    }
}

pub async fn dashboard(_: Operator, State(state): State<Arc<AppState>>, Query(q): Query<Notice>) -> Response {
    let stats = match state.inbox.stats(crate::now_ms() - 60_000).await {
        Ok(stats) => stats,
        Err(e) => return failure("counting events failed", &e),
    };
    let mut loaded = state.plugins.versions();
    loaded.sort();
    let handshakes = state.handshakes.snapshot();
    let body = html! {
        section class="cards" data-live="/admin/stats" {
            @for status in Status::ALL {
                @let name = status.as_str();
                a class={"card status-" (name)} href={"/admin/events?status=" (name)} {
                    span class="label" { (name) }
                    span class="value" data-stat=(name) {
                        @if status == Status::Done && stats.done_estimated { "≈ " }
                        (stats.count(status))
                    }
                }
            }
            div class="card" {
                span class="label" { "received / min" }
                span class="value" data-stat="received_per_min" { (stats.received_since) }
            }
            div class="card" {
                span class="label" { "done / min" }
                span class="value" data-stat="done_per_min" { (stats.done_since) }
            }
        }
        p class="muted" { "Live: refreshed every 2 s. Instance " code { (state.instance_id) } "." }
        h2 { "Plugins on this instance" }
        table {
            thead { tr { th { "plugin" } th { "version" } } }
            tbody {
                @for (name, version) in &loaded {
                    tr {
                        td { a href={"/admin/plugins#plugin-" (name)} { (name) } }
                        td { code { (short(version)) } }
                    }
                }
            }
        }
        h2 { "Handshakes answered on this instance" }
        @if handshakes.is_empty() {
            p class="muted" { "None since this instance started. Handshakes are answered at once and never stored as events." }
        } @else {
            table id="handshakes" {
                thead { tr { th { "route" } th { "provider" } th { "handshake" } th { "answered" } } }
                tbody {
                    @for (route, provider, name, count) in &handshakes {
                        tr {
                            td { code { (route) } }
                            td { (provider) }
                            td { code { (name) } }
                            td { (count) }
                        }
                    }
                }
            }
        }
    };
    layout("Dashboard", Section::Dashboard, q.notice.as_deref(), body).into_response()
}
