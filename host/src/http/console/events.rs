//! The events page: the newest events, filtered by route and status, and
//! replay of every dead event (of one route, when filtered).

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{Section, back_to, failure, layout, query_value};
use super::session::Operator;
use crate::format_time as time;
use crate::http::state::AppState;
use crate::inbox::{Event, Filter, Replay, Status};
use crate::manifest::short_version as short;

#[derive(Deserialize)]
pub struct EventsQuery {
    route: Option<String>,
    status: Option<String>,
    notice: Option<String>,
}

pub async fn events(
    _: Operator,
    State(state): State<Arc<AppState>>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let route = q.route.filter(|r| !r.is_empty());
    let status = q.status.as_deref().and_then(Status::parse);
    let filter = Filter {
        status,
        route: route.as_deref(),
    };
    let list = match state.inbox.list(filter, 100).await {
        Ok(list) => list,
        Err(e) => return failure("listing events failed", &e),
    };
    let mut names: Vec<String> = state.routes.all().iter().map(|r| r.name.clone()).collect();
    names.sort();
    let body = html! {
        form method="get" action="/admin/events" class="filters" {
            label {
                "Route "
                select name="route" id="filter-route" {
                    option value="" { "any" }
                    @for name in &names {
                        option value=(name) selected[route.as_deref() == Some(name.as_str())] { (name) }
                    }
                }
            }
            " "
            label {
                "Status "
                select name="status" id="filter-status" {
                    option value="" { "any" }
                    @for s in Status::ALL {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            " "
            button type="submit" id="filter" { "Filter" }
        }
        @if status == Some(Status::Dead) && !list.is_empty() {
            form method="post" action="/admin/events/replay-dead" class="inline" {
                input type="hidden" name="route" value=(route.as_deref().unwrap_or(""));
                button type="submit" id="replay-dead" {
                    "Replay every dead event"
                    @if let Some(route) = &route { " of " (route) }
                }
            }
        }
        @if list.is_empty() {
            p class="muted" id="no-events" { "No events." }
        } @else {
            table id="events" {
                thead {
                    tr {
                        th { "event" } th { "route" } th { "delivery" } th { "status" }
                        th { "attempts" } th { "received" } th { "version" } th { "last error" }
                    }
                }
                tbody { @for e in &list { (event_row(e)) } }
            }
        }
    };
    layout("Events", Section::Events, q.notice.as_deref(), body).into_response()
}

fn event_row(e: &Event) -> Markup {
    let error: String = e.last_error.as_deref().unwrap_or("").chars().take(120).collect();
    html! {
        tr data-event=(e.id) {
            td { a href={"/admin/events/" (e.id)} { code { (e.id) } } }
            td { (e.route) }
            td { code { (e.delivery_id) } }
            td class={"status status-" (e.status.as_str())} { (e.status.as_str()) }
            td { (e.attempts) }
            td { (time(e.received_at_ms)) }
            td { code { (short(e.plugin_version.as_deref().unwrap_or("-"))) } }
            td class="error-text" { (error) }
        }
    }
}

#[derive(Deserialize)]
pub struct ReplayDead {
    #[serde(default)]
    route: String,
}

pub async fn replay_dead(
    _: Operator,
    State(state): State<Arc<AppState>>,
    Form(form): Form<ReplayDead>,
) -> Response {
    let route = Some(form.route.as_str()).filter(|r| !r.is_empty());
    match state.replay(Replay::Dead { route }).await {
        Ok(n) => {
            let path = match route {
                Some(r) => format!("/admin/events?route={}", query_value(r)),
                None => "/admin/events".to_string(),
            };
            back_to(&path, &format!("Replayed {n} dead event(s)."))
        }
        Err(e) => failure("replay failed", &e),
    }
}
