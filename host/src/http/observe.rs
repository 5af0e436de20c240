//! What every request gets: a span carrying the request id nginx passes in
//! `X-Request-ID` (or one made here), so every log line of a request can be
//! found from the id the load balancer logged; the id back in the response's
//! `X-Request-ID`; and a count and duration in the metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;

use crate::telemetry;

pub const HEADER: &str = "x-request-id";

/// The request id this edge decided (the one passed in, when acceptable,
/// else one made here), put on the request for the handlers: intake stores
/// it with the event, so the worker's span carries it too.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A webhook route's name, put on its responses by the intake handler: the
/// `route` label of the request metrics.
#[derive(Clone)]
pub struct RouteLabel(pub String);

/// Wraps the rest of the stack in a `request` span and counts the answer.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
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
        Some(RouteLabel(name)) => name.clone(),
        None => matched.unwrap_or_else(|| "unmatched".into()),
    };
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "route" => route.clone(),
        "status" => response.status().as_str().to_owned(),
    )
    .increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, "route" => route).record(started.elapsed());
    response
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
