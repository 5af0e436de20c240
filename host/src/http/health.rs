//! `GET /health`: readiness with checks; `GET /health/live`: the process
//! answers.
//!
//! 503 (`fail`) when the instance cannot take deliveries: the database
//! does not answer, a route's plugin is not loaded, or a background task
//! has died (the process then stops, see [`crate::vital`]). 200 with
//! `degraded` when only processing is hurt: object storage or Redis does
//! not answer, or a route's fetched keys (JWKS) have expired. Deliveries
//! are still stored then, and an instance taken out of rotation for it
//! would only move the same fault to the other one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::state::AppState;

/// Longest a dependency may take to answer a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(|| async { Json(json!({ "status": "ok" })) }))
}

/// `{"status": "ok"}`, or `fail` with why (logged as `what`).
async fn check(what: &str, backend: Option<&str>, probe: impl Future<Output = anyhow::Result<()>>) -> Value {
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let mut answer = match outcome {
        Ok(()) => json!({ "status": "ok" }),
        Err(e) => {
            tracing::error!("health: the {what} check failed: {e}");
            json!({ "status": "fail", "error": format!("{what} does not answer") })
        }
    };
    if let Some(backend) = backend {
        answer["backend"] = json!(backend);
    }
    answer
}

async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let services = state.runtime.services();
    let (database, storage, kv) = tokio::join!(
        check("database", None, state.inbox.ping()),
        check("storage", Some(services.blob.backend()), services.blob.check()),
        check("kv", Some(services.kv.backend()), services.kv.ping()),
    );
    let plugins = plugins(&state);
    let dead = crate::vital::dead();
    let tasks = json!({
        "status": if dead.is_empty() { "ok" } else { "fail" },
        "dead": dead,
    });
    let keys = keys(&state);
    let failed = [&database, &plugins, &tasks].iter().any(|c| c["status"] != "ok");
    let degraded = [&storage, &kv, &keys].iter().any(|c| c["status"] != "ok");
    let body = json!({
        "status": if failed { "fail" } else if degraded { "degraded" } else { "ok" },
        "instance_id": state.instance_id,
        "version": crate::VERSION,
        "checks": {
            "database": database,
            "plugins": plugins,
            "tasks": tasks,
            "storage": storage,
            "kv": kv,
            "keys": keys,
        },
    });
    let status = if failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}

/// The loaded plugins, and the routes' plugins that are not.
fn plugins(state: &AppState) -> Value {
    let loaded: Vec<Value> = state
        .plugins
        .versions()
        .into_iter()
        .map(|(name, version)| json!({ "name": name, "version": version }))
        .collect();
    let mut missing: Vec<String> = state
        .routes
        .all()
        .iter()
        .filter(|route| state.plugins.get(&route.plugin).is_none())
        .map(|route| route.plugin.clone())
        .collect();
    missing.sort();
    missing.dedup();
    json!({
        "status": if missing.is_empty() { "ok" } else { "fail" },
        "loaded": loaded,
        "missing": missing,
    })
}

/// Each route's fetched keys (JWKS): `ok` unless some have expired.
fn keys(state: &AppState) -> Value {
    let mut routes: Vec<Value> = Vec::new();
    let mut expired = false;
    for route in state.routes.all() {
        for (scheme, status) in route.verifier.fetched_keys() {
            expired |= status.state == "expired";
            routes.push(json!({ "route": route.name, "scheme": scheme, "keys": status }));
        }
    }
    routes.sort_by(|a, b| a["route"].as_str().cmp(&b["route"].as_str()));
    json!({ "status": if expired { "fail" } else { "ok" }, "routes": routes })
}
