//! The admin console: a few server-rendered pages under `/admin/` for the
//! operators (behind `ADMIN_TOKEN`, like the admin API): the inbox live,
//! events with filters, one event in detail with replay, replay of every
//! dead event, plugins with activate and roll back. Assets are served by
//! the binary; nothing is loaded from elsewhere.

mod page;
mod session;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::inbox::{Event, Filter, Replay, Status};
use crate::plugins::short_version as short;
pub use page::time as format_time;
use page::{Section, esc, layout, query_value, time};
use session::Operator;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(dashboard))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/stats", get(stats))
        .route("/admin/events", get(events))
        .route("/admin/events/replay-dead", post(replay_dead))
        .route("/admin/events/{id}", get(event))
        .route("/admin/events/{id}/replay", post(replay_one))
        .route("/admin/plugins", get(plugins))
        .route("/admin/plugins/{name}/activate", post(activate))
        .route("/admin/plugins/{name}/rollback", post(rollback))
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

/// `?notice=…`: what the last action did, shown once on the page it led to.
#[derive(Deserialize, Default)]
struct Notice {
    notice: Option<String>,
}

/// Sends the browser to `path` with a notice (303: the next request is a GET).
fn back_to(path: &str, notice: &str) -> Response {
    let (path, fragment) = match path.split_once('#') {
        Some((path, fragment)) => (path, format!("#{fragment}")),
        None => (path, String::new()),
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!(
        "{path}{separator}notice={}{fragment}",
        query_value(notice)
    ))
    .into_response()
}

fn failure(what: &str, error: &anyhow::Error) -> Response {
    tracing::error!("console: {what}: {error:#}");
    let body = format!(
        r#"<p class="error">{}: {}</p>"#,
        esc(what),
        esc(&format!("{error:#}"))
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        layout("Error", Section::Dashboard, None, &body),
    )
        .into_response()
}

// --- signing in ---

async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    if state.admin_token.is_none() {
        return ApiError::not_found("no such path").into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let problem = problem
        .map(|p| format!(r#"<p class="error" role="alert">{}</p>"#, esc(p)))
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · webhook-host</title><link rel="stylesheet" href="/admin/assets/console.css"></head>
<body class="login"><main>
<h1>webhook-host</h1>
{problem}
<form method="post" action="/admin/login">
<label>Admin token <input type="password" name="token" id="token" autocomplete="current-password" required autofocus></label>
<button type="submit" id="sign-in">Sign in</button>
</form>
</main></body></html>
"#
    );
    (status, Html(html)).into_response()
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, Form(form): Form<Login>) -> Response {
    let Some(token) = &state.admin_token else {
        return ApiError::not_found("no such path").into_response();
    };
    if !bool::from(form.token.as_bytes().ct_eq(token.expose().as_bytes())) {
        tracing::warn!("console: a sign-in with a wrong token");
        return login_page(StatusCode::UNAUTHORIZED, Some("That token is not right."));
    }
    let cookie = session::issue(token, crate::now_ms());
    let set = session::set_cookie(Some(&cookie), session::came_over_https(&headers));
    tracing::info!("console: operator signed in");
    ([(header::SET_COOKIE, set)], Redirect::to("/admin/")).into_response()
}

async fn logout(headers: HeaderMap) -> Response {
    let set = session::set_cookie(None, session::came_over_https(&headers));
    ([(header::SET_COOKIE, set)], Redirect::to("/admin/login")).into_response()
}

// --- dashboard ---

/// The live numbers: inbox depth by status and the last minute's traffic
/// (all instances: it is read from the shared inbox).
async fn stats(_: Operator, State(state): State<Arc<AppState>>) -> Response {
    match state.inbox.stats(crate::now_ms() - 60_000).await {
        Ok(stats) => {
            let mut body = json!({
                "instance": state.instance_id,
                "received_per_min": stats.received_since,
                "done_per_min": stats.done_since,
            });
            for status in Status::ALL {
                body[status.as_str()] = stats.count(status).into();
            }
            Json(body).into_response()
        }
        Err(e) => ApiError::unavailable("counting events failed", &e).into_response(),
    }
}

async fn dashboard(_: Operator, State(state): State<Arc<AppState>>, Query(q): Query<Notice>) -> Response {
    let stats = match state.inbox.stats(crate::now_ms() - 60_000).await {
        Ok(stats) => stats,
        Err(e) => return failure("counting events failed", &e),
    };
    let mut body = String::from(r#"<section class="cards" data-live="/admin/stats">"#);
    for status in Status::ALL {
        let name = status.as_str();
        let _ = write!(
            body,
            r#"<a class="card status-{name}" href="/admin/events?status={name}"><span class="label">{name}</span><span class="value" data-stat="{name}">{}</span></a>"#,
            stats.count(status)
        );
    }
    let _ = write!(
        body,
        r#"<div class="card"><span class="label">received / min</span><span class="value" data-stat="received_per_min">{}</span></div>
<div class="card"><span class="label">done / min</span><span class="value" data-stat="done_per_min">{}</span></div>
</section>
<p class="muted">Live: refreshed every 2 s. Instance <code>{}</code>.</p>
<h2>Plugins on this instance</h2>
<table><thead><tr><th>plugin</th><th>version</th></tr></thead><tbody>"#,
        stats.received_since,
        stats.done_since,
        esc(&state.instance_id)
    );
    let mut loaded = state.plugins.versions();
    loaded.sort();
    for (name, version) in loaded {
        let _ = write!(
            body,
            r#"<tr><td><a href="/admin/plugins#plugin-{n}">{n}</a></td><td><code>{}</code></td></tr>"#,
            esc(short(&version)),
            n = esc(&name),
        );
    }
    body.push_str("</tbody></table>");
    layout("Dashboard", Section::Dashboard, q.notice.as_deref(), &body).into_response()
}

// --- events ---

#[derive(Deserialize)]
struct EventsQuery {
    route: Option<String>,
    status: Option<String>,
    notice: Option<String>,
}

async fn events(_: Operator, State(state): State<Arc<AppState>>, Query(q): Query<EventsQuery>) -> Response {
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
    let mut body = String::from(
        r#"<form method="get" action="/admin/events" class="filters"><label>Route <select name="route" id="filter-route"><option value="">any</option>"#,
    );
    let mut names: Vec<String> = state.routes.all().iter().map(|r| r.name.clone()).collect();
    names.sort();
    for name in &names {
        let selected = if route.as_deref() == Some(name.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<option value="{n}"{selected}>{n}</option>"#,
            n = esc(name)
        );
    }
    body.push_str(r#"</select></label> <label>Status <select name="status" id="filter-status"><option value="">any</option>"#);
    for s in Status::ALL {
        let selected = if status == Some(s) { " selected" } else { "" };
        let _ = write!(
            body,
            r#"<option value="{n}"{selected}>{n}</option>"#,
            n = s.as_str()
        );
    }
    body.push_str(r#"</select></label> <button type="submit" id="filter">Filter</button></form>"#);
    if status == Some(Status::Dead) && !list.is_empty() {
        let _ = write!(
            body,
            r#"<form method="post" action="/admin/events/replay-dead" class="inline"><input type="hidden" name="route" value="{}"><button type="submit" id="replay-dead">Replay every dead event{}</button></form>"#,
            esc(route.as_deref().unwrap_or("")),
            route
                .as_deref()
                .map(|r| format!(" of {}", esc(r)))
                .unwrap_or_default()
        );
    }
    if list.is_empty() {
        body.push_str(r#"<p class="muted" id="no-events">No events.</p>"#);
    } else {
        body.push_str(r#"<table id="events"><thead><tr><th>event</th><th>route</th><th>delivery</th><th>status</th><th>attempts</th><th>received</th><th>version</th><th>last error</th></tr></thead><tbody>"#);
        for e in &list {
            body.push_str(&event_row(e));
        }
        body.push_str("</tbody></table>");
    }
    layout("Events", Section::Events, q.notice.as_deref(), &body).into_response()
}

fn event_row(e: &Event) -> String {
    let error: String = e.last_error.as_deref().unwrap_or("").chars().take(120).collect();
    format!(
        r#"<tr data-event="{id}"><td><a href="/admin/events/{id}"><code>{id}</code></a></td><td>{route}</td><td><code>{delivery}</code></td><td class="status status-{status}">{status}</td><td>{attempts}</td><td>{received}</td><td><code>{version}</code></td><td class="error-text">{error}</td></tr>"#,
        id = esc(&e.id),
        route = esc(&e.route),
        delivery = esc(&e.delivery_id),
        status = e.status.as_str(),
        attempts = e.attempts,
        received = time(e.received_at_ms),
        version = esc(short(e.plugin_version.as_deref().unwrap_or("-"))),
        error = esc(&error),
    )
}

/// Header names whose values are credentials or signatures: shown redacted.
fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth",
        "cookie",
        "secret",
        "signature",
        "token",
        "api-key",
        "apikey",
        "password",
    ]
    .iter()
    .any(|part| name.contains(part))
}

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

async fn event(
    _: Operator,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<Notice>,
) -> Response {
    let e = match state.inbox.get(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            let body = format!(r#"<p class="error">No event {}.</p>"#, esc(&id));
            return (
                StatusCode::NOT_FOUND,
                layout("Event", Section::Events, None, &body),
            )
                .into_response();
        }
        Err(e) => return failure("reading the event failed", &e),
    };
    let optional_time = |ms: Option<i64>| ms.map(time).unwrap_or_else(|| "-".into());
    let mut body = format!(
        r#"<dl class="event" data-event="{id}">
<dt>event</dt><dd><code>{id}</code></dd>
<dt>route</dt><dd><a href="/admin/events?route={route_q}">{route}</a></dd>
<dt>delivery</dt><dd><code>{delivery}</code></dd>
<dt>status</dt><dd class="status status-{status}" id="event-status">{status}</dd>
<dt>attempts</dt><dd id="event-attempts">{attempts}</dd>
<dt>received</dt><dd>{received}</dd>
<dt>next attempt</dt><dd>{next}</dd>
<dt>finished</dt><dd>{finished}</dd>
<dt>plugin</dt><dd>{plugin}</dd>
<dt>version</dt><dd><code id="event-version">{version}</code></dd>
<dt>lease</dt><dd>{lease}</dd>
</dl>"#,
        id = esc(&e.id),
        route = esc(&e.route),
        route_q = query_value(&e.route),
        delivery = esc(&e.delivery_id),
        status = e.status.as_str(),
        attempts = e.attempts,
        received = time(e.received_at_ms),
        next = if e.status == Status::Pending {
            time(e.next_attempt_at_ms)
        } else {
            "-".into()
        },
        finished = optional_time(e.finished_at_ms),
        plugin = esc(e.plugin.as_deref().unwrap_or("-")),
        version = esc(e.plugin_version.as_deref().unwrap_or("-")),
        lease = esc(e.lease_owner.as_deref().unwrap_or("-")),
    );
    if let Some(error) = &e.last_error {
        let _ = write!(
            body,
            r#"<h2>Last error</h2><pre class="error-text" id="event-error">{}</pre>"#,
            esc(error)
        );
    }
    if e.status != Status::Processing {
        let _ = write!(
            body,
            r#"<form method="post" action="/admin/events/{}/replay"><button type="submit" id="replay">Replay from the first attempt</button></form>"#,
            esc(&e.id)
        );
    }
    body.push_str("<h2>Headers</h2><table><tbody>");
    for (name, value) in &e.headers {
        let value = if is_sensitive(name) {
            "[redacted]".to_string()
        } else {
            esc(value)
        };
        let _ = write!(
            body,
            "<tr><th>{}</th><td><code>{value}</code></td></tr>",
            esc(name)
        );
    }
    body.push_str("</tbody></table>");
    if !e.query.is_empty() {
        body.push_str("<h2>Query</h2><table><tbody>");
        for (name, value) in &e.query {
            let _ = write!(
                body,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                esc(name),
                esc(value)
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        r#"<h2>Body <span class="muted">({} bytes)</span></h2><pre id="event-body">{}</pre>"#,
        e.body.len(),
        esc(&body_preview(&e.body))
    );
    layout("Event", Section::Events, q.notice.as_deref(), &body).into_response()
}

async fn replay_one(_: Operator, State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
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

#[derive(Deserialize)]
struct ReplayDead {
    #[serde(default)]
    route: String,
}

async fn replay_dead(
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

// --- plugins ---

async fn plugins(_: Operator, State(state): State<Arc<AppState>>, Query(q): Query<Notice>) -> Response {
    let versions = match state.plugin_sync.store.versions(None).await {
        Ok(versions) => versions,
        Err(e) => return failure("reading the plugin store failed", &e),
    };
    let loaded = state.plugins.snapshot();
    let mut names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    names.dedup();
    let mut body = String::new();
    if names.is_empty() {
        body.push_str(r#"<p class="muted">No plugins deployed.</p>"#);
    }
    for name in names {
        let mut of: Vec<_> = versions.iter().filter(|v| v.name == name).collect();
        of.sort_by_key(|v| std::cmp::Reverse(v.created_at_ms));
        let active = of.iter().find(|v| v.active).map(|v| v.version.as_str());
        let here = loaded.get(name).map(|p| p.version.clone());
        let _ = write!(
            body,
            r#"<section class="plugin" id="plugin-{n}" data-plugin="{n}">
<h2>{n}</h2>
<p>Active: <code class="active-version">{active}</code> · loaded on this instance: <code>{here}</code></p>
<form method="post" action="/admin/plugins/{n}/rollback" class="inline"><button type="submit" class="rollback">Roll back to the previous version</button></form>
<table><thead><tr><th>version</th><th>deployed</th><th>by</th><th></th></tr></thead><tbody>"#,
            n = esc(name),
            active = esc(active.map(short).unwrap_or("-")),
            here = esc(here.as_deref().map(short).unwrap_or("-")),
        );
        for v in of {
            let action = if v.active {
                r#"<strong>active</strong>"#.to_string()
            } else {
                format!(
                    r#"<form method="post" action="/admin/plugins/{}/activate" class="inline"><input type="hidden" name="version" value="{}"><button type="submit" class="activate">Activate</button></form>"#,
                    esc(name),
                    esc(&v.version)
                )
            };
            let _ = write!(
                body,
                r#"<tr data-version="{}"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{action}</td></tr>"#,
                esc(&v.version),
                esc(short(&v.version)),
                time(v.created_at_ms),
                esc(&v.created_by),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    layout("Plugins", Section::Plugins, q.notice.as_deref(), &body).into_response()
}

#[derive(Deserialize)]
struct Activate {
    version: String,
}

async fn activate(
    _: Operator,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Form(form): Form<Activate>,
) -> Response {
    let outcome = state
        .plugin_sync
        .store
        .activate(&name, &form.version, "console")
        .await;
    plugin_changed(&state, &name, outcome, "activated").await
}

async fn rollback(_: Operator, State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let outcome = state.plugin_sync.store.rollback(&name, "console").await;
    plugin_changed(&state, &name, outcome, "rolled back to").await
}

/// After an activation or a rollback: swap it in here, log it, and go back
/// to the plugins page saying what happened.
async fn plugin_changed(
    state: &AppState,
    name: &str,
    outcome: anyhow::Result<String>,
    did: &str,
) -> Response {
    let notice = match outcome {
        Ok(version) => {
            super::admin_plugins::swap_here(state).await;
            tracing::info!(plugin = %name, version = short(&version), by = "console", "plugin {did} version");
            format!("{name} {did} {}.", short(&version))
        }
        Err(e) => format!("{name}: {e:#}"),
    };
    back_to(&format!("/admin/plugins#plugin-{name}"), &notice)
}
