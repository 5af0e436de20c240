//! What every request gets: a span carrying the request id nginx passes in
//! `X-Request-ID` (or one made here), so every log line of a request can be
//! found from the id the load balancer logged; the id back in the response's
//! `X-Request-ID`; and a count and duration in the metrics.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use metrics::{Counter, Histogram};
use tracing::Instrument;

use crate::routes::Route;
use crate::telemetry;

pub const HEADER: &str = "x-request-id";

/// The request id this edge decided (the one passed in, when acceptable,
/// else one made here), put on the request for the handlers: intake stores
/// it with the event, so the worker's span carries it too.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A webhook route, put on its responses by the intake handler: its name
/// is the `route` label of the request metrics.
#[derive(Clone)]
pub struct RouteLabel(pub Arc<Route>);

/// Wraps the rest of the stack in a `request` span and counts the answer.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    );
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    let route = match response.extensions().get::<RouteLabel>() {
        Some(RouteLabel(route)) => route.name.as_str(),
        None => matched.as_ref().map_or("unmatched", MatchedPath::as_str),
    };
    record(route, response.status(), started.elapsed());
    response
}

/// One route's request metrics for one status.
struct Handles {
    status: StatusCode,
    requests: Counter,
    duration: Histogram,
}

/// Handles kept by route label, so that an answered request neither builds
/// nor hashes a labelled key (two allocations per label each time). Route
/// labels are route names and matched paths, never a client's path, so
/// this stays as small as the route table times the statuses it answers.
static HANDLES: LazyLock<RwLock<HashMap<String, Vec<Handles>>>> = LazyLock::new(Default::default);

/// Counts an answer and its duration under `route` and `status`.
fn record(route: &str, status: StatusCode, elapsed: Duration) {
    let kept = telemetry::prometheus_installed();
    if kept {
        let handles = HANDLES.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = handles
            .get(route)
            .and_then(|all| all.iter().find(|h| h.status == status))
        {
            h.requests.increment(1);
            h.duration.record(elapsed);
            return;
        }
    }
    let h = Handles {
        status,
        requests: metrics::counter!(
            telemetry::HTTP_REQUESTS,
            "route" => route.to_owned(),
            "status" => status.as_str().to_owned(),
        ),
        duration: metrics::histogram!(telemetry::HTTP_DURATION, "route" => route.to_owned()),
    };
    h.requests.increment(1);
    h.duration.record(elapsed);
    // Kept only while the process's own recorder is the one recording (a
    // test's local recorder would otherwise keep its handles).
    if kept {
        let mut handles = HANDLES.write().unwrap_or_else(|e| e.into_inner());
        let all = handles.entry(route.to_owned()).or_default();
        if !all.iter().any(|kept| kept.status == status) {
            all.push(h);
        }
    }
}

/// A passed-in id is kept only if it is short and plain, so that a client
/// cannot put line breaks or megabytes into the log through it.
fn is_acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(is_acceptable("3f2c9a1e0b7d4c55a1e2b3c4d5e6f708"));
        assert!(is_acceptable("req-1.2:3_x"));
        assert!(!is_acceptable(""));
        assert!(!is_acceptable("a b"));
        assert!(!is_acceptable("id\nforged log line"));
        assert!(!is_acceptable(&"x".repeat(129)));
    }
}
