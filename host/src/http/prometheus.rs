//! `GET /metrics`: every metric in Prometheus' text format. The inbox depth,
//! the backlog's ages, dead tasks and the instance pool are read at scrape time; the rest is recorded where
//! it happens (names in [`crate::telemetry`]). Keep this path to the
//! operators' network at the load balancer.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::state::AppState;
use crate::inbox::Status;
use crate::telemetry;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let Some(handle) = telemetry::prometheus() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response();
    };
    match state.inbox.stats(crate::now_ms()).await {
        Ok(stats) => {
            for status in Status::ALL {
                metrics::gauge!(telemetry::INBOX_EVENTS, "status" => status.as_str())
                    .set(stats.count(status) as f64);
            }
        }
        Err(e) => tracing::warn!("metrics: counting the inbox failed: {e:#}"),
    }
    let now = crate::now_ms();
    match state.inbox.backlog_ages(now).await {
        Ok(backlog) => crate::alarms::backlog::record_gauges(&backlog, now),
        Err(e) => tracing::warn!("metrics: measuring the backlog failed: {e:#}"),
    }
    metrics::gauge!(telemetry::DEAD_TASKS).set(crate::vital::dead().len() as f64);
    let (in_use, max) = state.runtime.instances();
    metrics::gauge!(telemetry::INSTANCES_IN_USE).set(in_use as f64);
    metrics::gauge!(telemetry::INSTANCES_MAX).set(max as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}
