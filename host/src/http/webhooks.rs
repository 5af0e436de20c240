//! Webhook intake: `POST /hooks/{route}` and each route's fixed path.
//!
//! The order of checks: route (looked up once) → content type (415) → body
//! size (413) → signature (401) → JSON (400: one pass checks validity and
//! depth and picks up a `json:` delivery id) → store. The answer is 200
//! only after the event's row is committed; a repeat delivery answers 200
//! `duplicate`. The intake writer wakes the worker once per stored batch.
//!
//! On a route whose providers declare handshakes, the body is read first
//! and a request that is a handshake (GET and HEAD ones too) is answered
//! by [`super::handshakes`] without storing anything; every other request
//! goes on as above. Other methods are 405.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::time::Duration;

use super::error::ApiError;
use super::headers::NOT_STORED;
use super::json::{self, JsonError};
use super::observe::{RequestId, RouteLabel};
use super::state::AppState;
use crate::config::{BodyKind, DeliveryIdSource, OrderKey};
use crate::inbox::intake::IntakeError;
use crate::inbox::{Insert, NewEvent, StoredPairs};
use crate::routes::{Route, RouteTable};
use crate::verify;

pub fn router(routes: &RouteTable) -> Router<Arc<AppState>> {
    let mut router = Router::new().route(
        "/hooks/{route}",
        any(
            |State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request| async move {
                receive(&state, &name, request).await
            },
        ),
    );
    for route in routes.configured() {
        if let Some(path) = &route.path {
            let name = route.name.clone();
            router = router.route(
                path,
                any(
                    move |State(state): State<Arc<AppState>>, request: Request| async move {
                        receive(&state, &name, request).await
                    },
                ),
            );
        }
    }
    router
}

async fn receive(state: &AppState, name: &str, request: Request) -> Response {
    let Some(route) = state.routes.get(name) else {
        return ApiError::not_found(format!("no route named {name:?}")).into_response();
    };
    let mut response = match accept(state, &route, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // The metrics label: a configured route's name, never an arbitrary path.
    response.extensions_mut().insert(RouteLabel(route));
    response
}

/// Headers that carry a sender's delivery id, for logging a rejection.
const CLAIMED_IDS: [&str; 3] = ["x-fal-webhook-request-id", "webhook-id", "x-github-delivery"];

/// Counts and logs (once, at warn) a request that did not verify.
fn record_rejection(route: &str, provider: &str, headers: &HeaderMap, rejection: &verify::Rejection) {
    metrics::counter!(
        crate::telemetry::VERIFY_FAILURES,
        "route" => route.to_string(),
        "provider" => provider.to_string(),
        "reason" => rejection.code(),
    )
    .increment(1);
    let claimed = CLAIMED_IDS
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()));
    tracing::warn!(
        route,
        provider,
        reason = rejection.code(),
        delivery_id = %claimed.unwrap_or("-"),
        "webhook not verified: {rejection}"
    );
}

/// The id that drops repeats, from the route's configured source; `from_json`
/// is what the JSON pass found at a `json:` path.
fn delivery_id(route: &Route, verified: verify::Verified, from_json: Option<String>, body: &[u8]) -> String {
    let chosen = match &route.delivery_id {
        DeliveryIdSource::Scheme => verified.delivery_id,
        DeliveryIdSource::Sha256 => None,
        DeliveryIdSource::JsonField(_) => from_json.or(verified.delivery_id),
    };
    chosen.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))))
}

/// Longest ordering key stored as written; longer ones are stored as
/// their sha256, so that the index of keys stays small.
const MAX_ORDER_KEY: usize = 128;

/// The value that puts this delivery in line on an ordered route: none when
/// the delivery lacks it (it then runs unordered, as on any route).
fn order_key(key: &OrderKey, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let value = match key {
        OrderKey::Header(name) => headers.get(name)?.to_str().ok()?.trim().to_string(),
        OrderKey::Json(path) => json::scan(body, usize::MAX, Some(path)).ok().flatten()?,
    };
    match value.len() {
        0 => None,
        n if n > MAX_ORDER_KEY => Some(format!("sha256:{}", hex::encode(Sha256::digest(&value)))),
        _ => Some(value),
    }
}

async fn accept(state: &AppState, route: &Route, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let handshakes = route.verifier.has_handshakes() || route.responder.is_some();
    if !handshakes {
        check_event_request(route, &parts)?;
    }
    let body = read_body(body, &parts.headers, state.body_limit, state.body_timeout).await?;
    let request = verify::Request::new(&parts.headers, &body)
        .with_target(parts.method.as_str(), parts.uri.query().unwrap_or(""));
    if handshakes {
        if let Some(responder) = &route.responder
            && let Some(answer) = super::handshakes::ask_responder(state, route, responder, &request).await?
        {
            return Ok(answer);
        }
        if let Some(handshake) = route.verifier.handshake(&parts.method, &request) {
            if handshake.signed {
                verify(route, &parts.headers, &request).await?;
            }
            return super::handshakes::answer(state, route, handshake, &request).await;
        }
        check_event_request(route, &parts)?;
    }
    let verified = verify(route, &parts.headers, &request).await?;
    let from_json = match route.body {
        BodyKind::Json => {
            let id_path = match &route.delivery_id {
                DeliveryIdSource::JsonField(path) => Some(path.as_slice()),
                _ => None,
            };
            json::scan(&body, state.json_max_depth, id_path).map_err(|e: JsonError| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
            })?
        }
        // A body that need not be JSON may still name its id in JSON.
        BodyKind::Any => match &route.delivery_id {
            DeliveryIdSource::JsonField(path) => json::scan(&body, usize::MAX, Some(path)).ok().flatten(),
            _ => None,
        },
    };
    let query: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string()))?;
    let delivery_id = delivery_id(route, verified, from_json, &body);
    let order_key = route
        .order_key
        .as_ref()
        .and_then(|key| order_key(key, &parts.headers, &body));
    let request_id = parts.extensions.remove::<RequestId>().map(|id| id.0);
    let received_at_ms = crate::now_ms();
    // A sync delivery is this instance's to run first: no worker claims it
    // before its deadline has passed (then any does, should this one die).
    let due_at_ms = match &route.sync {
        Some(sync) => received_at_ms + sync.deadline.as_millis() as i64,
        None => received_at_ms,
    };
    let event = NewEvent {
        route: route.name.clone(),
        delivery_id,
        received_at_ms,
        due_at_ms,
        headers: stored_headers(&parts.headers),
        query: StoredPairs::new(query),
        body,
        request_id,
        order_key,
    };
    let answer = match state.intake.insert(event).await {
        Ok(Insert::Accepted { event_id }) => {
            log_accepted(route, &event_id);
            if let Some(sync) = &route.sync {
                return Ok(super::sync_routes::answer(state, route, sync, &event_id).await);
            }
            Answer::new("accepted", event_id)
        }
        Ok(Insert::Duplicate { event_id }) => {
            tracing::info!(route = %route.name, %event_id, "duplicate delivery; already stored");
            Answer::new("duplicate", event_id)
        }
        Err(IntakeError::Overloaded(why)) => return Err(ApiError::overloaded(why)),
        Err(IntakeError::Failed(e)) => {
            return Err(ApiError::unavailable("the event could not be stored", &e));
        }
    };
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// What a stored delivery is answered with (serialised straight to the
/// body, no JSON tree built first).
#[derive(serde::Serialize)]
struct Answer {
    status: &'static str,
    event_id: String,
}

impl Answer {
    fn new(status: &'static str, event_id: String) -> Self {
        Self { status, event_id }
    }
}

/// Verifies `request` by the route's schemes; a rejection is counted and logged.
async fn verify(
    route: &Route,
    headers: &HeaderMap,
    request: &verify::Request<'_>,
) -> Result<verify::Verified, ApiError> {
    route.verifier.verify(request).await.map_err(|rejection| {
        record_rejection(&route.name, route.verifier.label(), headers, &rejection);
        ApiError::unverified(&rejection)
    })
}

/// Refuses what cannot be an event: a method other than POST (405), a
/// body that is not JSON on a JSON route (415).
fn check_event_request(route: &Route, parts: &axum::http::request::Parts) -> Result<(), ApiError> {
    if parts.method != axum::http::Method::POST {
        let mut error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not a webhook delivery; send POST", parts.method),
        );
        error.allow = Some("POST");
        return Err(error);
    }
    if route.body == BodyKind::Json && !is_json(&parts.headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ));
    }
    Ok(())
}

fn log_accepted(route: &Route, event_id: &str) {
    tracing::info!(route = %route.name, %event_id, verified = !route.verifier.is_open(), "webhook accepted");
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// How much of an oversized body is read and thrown away before answering
/// 413, so that a client still sending gets the answer instead of a reset.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut collected = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut stream = body.into_data_stream();
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else {
            crate::telemetry::count_rejection("body_timeout");
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} ms", timeout.as_millis()),
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("reading the body failed: {e}"),
            )
        })?;
        if collected.len() + chunk.len() > limit {
            let mut seen = collected.len() + chunk.len();
            let drain = async {
                while let Some(Ok(chunk)) = stream.next().await {
                    seen += chunk.len();
                    if seen > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("body exceeds {limit} bytes"),
            ));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected)
}

/// The headers kept with a delivery, written as stored straight from the
/// request's map (a value that is not UTF-8 is kept lossily).
fn stored_headers(headers: &HeaderMap) -> StoredPairs {
    StoredPairs::new(
        headers
            .iter()
            .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes()))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/cloudevents+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&h), ok, "{value}");
        }
    }

    #[test]
    fn every_rejection_is_counted_by_route_and_reason() {
        let recorder = crate::telemetry::counted::Recorded::default();
        let seen = recorder.0.clone();
        metrics::with_local_recorder(&recorder, || {
            record_rejection(
                "fal",
                "fal-ed25519+fal-hmac",
                &HeaderMap::new(),
                &verify::Rejection::NoMatchingSignature,
            );
            record_rejection(
                "gh",
                "github",
                &HeaderMap::new(),
                &verify::Rejection::MissingHeader("x-hub-signature-256"),
            );
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "webhook_verification_failures_total{route=fal,provider=fal-ed25519+fal-hmac,reason=no_matching_signature} +1",
                "webhook_verification_failures_total{route=gh,provider=github,reason=missing_header} +1",
            ]
        );
    }

    #[test]
    fn credentials_are_not_stored() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("x-fal-webhook-request-id", HeaderValue::from_static("r"));
        let stored = stored_headers(&h);
        assert_eq!(stored.as_str(), r#"[["x-fal-webhook-request-id","r"]]"#);
    }
}
