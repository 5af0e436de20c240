//! Scheduled runs in the admin API (same bearer token):
//! `GET /admin/v1/schedules` (each schedule's lease, next run and failures,
//! with its plugin's declared interval) and `GET /admin/v1/schedules/runs`
//! (`?plugin=&limit=`: the newest recorded runs).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::Admin;
use super::error::ApiError;
use super::state::AppState;
use crate::schedule;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/schedules", get(list))
        .route("/admin/v1/schedules/runs", get(runs))
}

async fn list(_: Admin, State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let states = schedule::states(state.inbox.db())
        .await
        .map_err(|e| ApiError::unavailable("reading the schedules failed", &e))?;
    let loaded = state.plugins.snapshot();
    let schedules: Vec<Value> = states
        .into_iter()
        .map(|s| {
            let declared = loaded
                .get(&s.plugin)
                .and_then(|p| p.schedules.iter().find(|d| d.name == s.schedule).cloned());
            let mut value = serde_json::to_value(&s).expect("schedule states serialise");
            value["every_secs"] = declared.as_ref().map(|d| d.every_secs).into();
            value["active"] = declared.is_some().into();
            value
        })
        .collect();
    Ok(Json(json!({ "schedules": schedules })))
}

#[derive(Deserialize)]
struct RunsQuery {
    plugin: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

async fn runs(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let runs = schedule::runs(state.inbox.db(), q.plugin.as_deref(), q.limit.min(1000))
        .await
        .map_err(|e| ApiError::unavailable("reading the runs failed", &e))?;
    Ok(Json(json!({ "runs": runs })))
}
