//! The admin API under `/admin/v1`: list and show events, replay them.
//!
//! Mounted only when `ADMIN_TOKEN` is set; every request must carry
//! `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time). Keep
//! these paths closed to the outside at the load balancer as well.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;
use crate::inbox::{Filter, Replay, Status};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/events", get(list))
        .route("/admin/v1/events/replay", post(replay_dead))
        .route("/admin/v1/events/{id}", get(show))
        .route("/admin/v1/events/{id}/replay", post(replay_one))
}

/// Proof that the request carries the admin token.
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let Some(token) = &state.admin_token else {
            return Err(ApiError::not_found("no such path"));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            ))
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    route: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

fn status(text: Option<&str>) -> Result<Option<Status>, ApiError> {
    text.map(|s| {
        Status::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!("unknown status {s:?}"),
            )
        })
    })
    .transpose()
}

async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let events = state
        .inbox
        .list(
            Filter {
                status: status(q.status.as_deref())?,
                route: q.route.as_deref(),
            },
            q.limit.min(1000),
        )
        .await
        .map_err(|e| ApiError::unavailable("listing events failed", &e))?;
    Ok(Json(json!({ "events": events })))
}

async fn show(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let event = state
        .inbox
        .get(&id)
        .await
        .map_err(|e| ApiError::unavailable("reading the event failed", &e))?;
    let event = event.ok_or_else(|| ApiError::not_found(format!("no event {id}")))?;
    let mut value = serde_json::to_value(&event).expect("events serialise");
    value["body"] = String::from_utf8_lossy(&event.body).into_owned().into();
    Ok(Json(value))
}

async fn replay_one(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let replayed = state
        .replay(Replay::One(&id))
        .await
        .map_err(|e| ApiError::unavailable("replay failed", &e))?;
    if replayed == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_replayable",
            format!("no event {id} that can be replayed"),
        ));
    }
    Ok(Json(json!({ "replayed": replayed })))
}

#[derive(Deserialize)]
struct ReplayQuery {
    status: String,
    route: Option<String>,
}

async fn replay_dead(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(q): Query<ReplayQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.status != "dead" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_status",
            "only status=dead can be replayed in bulk",
        ));
    }
    let which = Replay::Dead {
        route: q.route.as_deref(),
    };
    let replayed = state
        .replay(which)
        .await
        .map_err(|e| ApiError::unavailable("replay failed", &e))?;
    Ok(Json(json!({ "replayed": replayed })))
}
