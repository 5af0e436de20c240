//! One event in detail: its state, last error, headers (credentials and
//! signatures redacted), query and body; replay from the first attempt.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::page::{Notice, Section, back_to, failure, layout, query_value};
use super::session::Operator;
use crate::format_time as time;
use crate::http::headers::is_sensitive;
use crate::http::state::AppState;
use crate::inbox::{Replay, Status};

/// How much of a body the detail page shows.
const BODY_PREVIEW_BYTES: usize = 16 * 1024;

fn body_preview(body: &[u8]) -> String {
    if body.len() <= BODY_PREVIEW_BYTES
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && let Ok(pretty) = serde_json::to_string_pretty(&value)
    {
        return pretty;
    }
    let shown = &body[..body.len().min(BODY_PREVIEW_BYTES)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if body.len() > shown.len() {
        let _ = write!(text, "\n… {} more bytes", body.len() - shown.len());
    }
    text
}

pub async fn event(
    _: Operator,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<Notice>,
) -> Response {
    let e = match state.inbox.get(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            let body = html! { p class="error" { "No event " (id) "." } };
            return (
                StatusCode::NOT_FOUND,
                layout("Event", Section::Events, None, body),
            )
                .into_response();
        }
        Err(e) => return failure("reading the event failed", &e),
    };
    let optional_time = |ms: Option<i64>| ms.map(time).unwrap_or_else(|| "-".into());
    let next = if e.status == Status::Pending {
        time(e.next_attempt_at_ms)
    } else {
        "-".into()
    };
    let body = html! {
        dl class="event" data-event=(e.id) {
            dt { "event" } dd { code { (e.id) } }
            dt { "route" } dd { a href={"/admin/events?route=" (query_value(&e.route))} { (e.route) } }
            dt { "delivery" } dd { code { (e.delivery_id) } }
            dt { "status" } dd class={"status status-" (e.status.as_str())} id="event-status" { (e.status.as_str()) }
            dt { "attempts" } dd id="event-attempts" { (e.attempts) }
            dt { "received" } dd { (time(e.received_at_ms)) }
            dt { "next attempt" } dd { (next) }
            dt { "finished" } dd { (optional_time(e.finished_at_ms)) }
            dt { "plugin" } dd { (e.plugin.as_deref().unwrap_or("-")) }
            dt { "version" } dd { code id="event-version" { (e.plugin_version.as_deref().unwrap_or("-")) } }
            dt { "lease" } dd { (e.lease_owner.as_deref().unwrap_or("-")) }
            dt { "request" } dd { code { (e.request_id.as_deref().unwrap_or("-")) } }
            @if let Some(key) = &e.order_key {
                dt { "in line by" } dd { code id="event-order-key" { (key) } }
            }
            @if let Some(task) = &e.task {
                dt { "follow-up" } dd { code id="event-task" { (task) } }
                dt { "queued by" } dd {
                    @match e.parent_id.as_deref() {
                        Some(parent) if parent.starts_with("evt_") => {
                            a id="event-parent" href={"/admin/events/" (query_value(parent))} { code { (parent) } }
                        }
                        Some(parent) => code id="event-parent" { (parent) },
                        None => "-",
                    }
                }
            }
        }
        @if let Some(error) = &e.last_error {
            h2 { "Last error" }
            pre class="error-text" id="event-error" { (error) }
        }
        @if e.status != Status::Processing {
            form method="post" action={"/admin/events/" (e.id) "/replay"} {
                button type="submit" id="replay" { "Replay from the first attempt" }
            }
        }
        h2 { "Headers" }
        table {
            tbody {
                @for (name, value) in &e.headers {
                    tr {
                        th { (name) }
                        td { code { @if is_sensitive(name) { "[redacted]" } @else { (value) } } }
                    }
                }
            }
        }
        @if !e.query.is_empty() {
            h2 { "Query" }
            table { tbody { @for (name, value) in &e.query { tr { th { (name) } td { code { (value) } } } } } }
        }
        h2 { "Body " span class="muted" { "(" (e.body.len()) " bytes)" } }
        pre id="event-body" { (body_preview(&e.body)) }
    };
    layout("Event", Section::Events, q.notice.as_deref(), body).into_response()
}

pub async fn replay_one(_: Operator, State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let path = format!("/admin/events/{}", query_value(&id));
    match state.replay(Replay::One(&id)).await {
        Ok(0) => back_to(
            &path,
            "This event cannot be replayed now (it is being processed).",
        ),
        Ok(_) => back_to(&path, "Replayed: the event runs again from its first attempt."),
        Err(e) => failure("replay failed", &e),
    }
}
