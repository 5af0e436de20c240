//! `GET /health`: readiness with checks (database, plugins of every route);
//! 503 when one fails. `GET /health/live`: the process answers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(|| async { Json(json!({ "status": "ok" })) }))
}

async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let database = match state.inbox.ping().await {
        Ok(()) => json!({ "status": "ok" }),
        Err(e) => {
            tracing::error!("health: database check failed: {e:#}");
            json!({ "status": "fail", "error": "database does not answer" })
        }
    };
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
    let plugins_ok = missing.is_empty();
    let plugins = json!({
        "status": if plugins_ok { "ok" } else { "fail" },
        "loaded": loaded,
        "missing": missing,
    });
    let healthy = database["status"] == "ok" && plugins_ok;
    let body = json!({
        "status": if healthy { "ok" } else { "fail" },
        "instance_id": state.instance_id,
        "version": crate::VERSION,
        "checks": { "database": database, "plugins": plugins },
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
