//! Sync routes (`mode = "sync"`): a delivery is stored as on any route,
//! then run at once by this instance, and the handler's `ok(some(bytes))`
//! is the HTTP answer, if the attempt ends within the route's deadline.
//!
//! Nothing is lost to the hurry: the delivery is committed before it runs,
//! stored with its first due time past the deadline (so no worker takes it
//! from under the request), and leased while it runs. If the attempt fails
//! or outlasts the deadline, the answer is 202 and the event goes on as any
//! other — retried with backoff, or finished by the attempt still running;
//! if this instance dies, the lease (or the due time) runs out and another
//! takes the event over.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::AppState;
use crate::routes::{Route, SyncAnswer};
use crate::worker::Outcome;

/// The answer to the stored event `event_id` of sync route `route`.
pub async fn answer(state: &AppState, route: &Route, sync: &SyncAnswer, event_id: &str) -> Response {
    let pending = |why: &str| {
        let body = json!({ "status": "accepted", "event_id": event_id, "answer": "pending", "message": why });
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    let lease_ms = state.worker.settings.lease_ms as i64;
    let event = match state
        .inbox
        .claim_one(event_id, &state.instance_id, lease_ms)
        .await
    {
        Ok(Some(event)) => event,
        Ok(None) => return pending("stored; another instance is running it"),
        Err(e) => {
            tracing::warn!(route = %route.name, event_id, "claiming a sync delivery failed: {e:#}");
            return pending("stored; it runs shortly");
        }
    };
    let running = state.worker.run_now(event);
    let outcome = match tokio::time::timeout(sync.deadline, running).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            tracing::error!(route = %route.name, event_id, "a sync attempt stopped: {e}");
            return pending("stored; it runs again later");
        }
        Err(_) => {
            metrics::counter!(crate::telemetry::SYNC_LATE, "route" => route.name.clone()).increment(1);
            tracing::warn!(
                route = %route.name, event_id, deadline_ms = sync.deadline.as_millis() as u64,
                "the handler did not answer within the route's deadline; the attempt goes on"
            );
            return pending("stored; the handler did not answer in time and goes on");
        }
    };
    match outcome {
        Outcome::Done(Some(bytes)) => {
            ([(header::CONTENT_TYPE, sync.content_type.clone())], bytes).into_response()
        }
        Outcome::Done(None) => {
            let body = json!({ "status": "accepted", "event_id": event_id });
            (StatusCode::OK, Json(body)).into_response()
        }
        Outcome::Failed { dead: true, .. } => {
            // The plugin's message stays in the event (the console shows it).
            let body = json!({
                "status": "rejected", "error": "handler_refused", "event_id": event_id,
                "message": "the route's handler refused this delivery",
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        Outcome::Failed { dead: false, .. } => pending("stored; the handler failed and it runs again later"),
        Outcome::LeaseLost => pending("stored; another instance took it over"),
    }
}
