//! Webhook intake: `POST /hooks/{route}` and each route's fixed path.
//!
//! The order of checks: route → content type (415) → body size (413) →
//! signature (401) → JSON (400) → store. The answer is 200 only after the
//! event's row is committed; a repeat delivery answers 200 `duplicate`.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::config::BodyKind;
use crate::inbox::{Insert, NewEvent};
use crate::routes::{Route, RouteTable};
use crate::verify;

/// Headers never stored: they carry credentials, not webhook data.
const NOT_STORED: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub fn router(routes: &RouteTable) -> Router<Arc<AppState>> {
    let mut router = Router::new().route(
        "/hooks/{route}",
        post(
            |State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request| async move {
                receive(&state, &name, request).await
            },
        ),
    );
    for route in routes.iter() {
        if let Some(path) = &route.path {
            let name = route.name.clone();
            router = router.route(
                path,
                post(
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
    match accept(state, name, request).await {
        Ok(response) => response,
        Err(error) => {
            if error.status == StatusCode::UNAUTHORIZED {
                tracing::warn!(
                    route = name,
                    reason = error.code,
                    "webhook rejected: {}",
                    error.message
                );
            }
            error.into_response()
        }
    }
}

async fn accept(state: &AppState, name: &str, request: Request) -> Result<Response, ApiError> {
    let route = state
        .routes
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no route named {name:?}")))?;
    let (parts, body) = request.into_parts();
    if route.body == BodyKind::Json && !is_json(&parts.headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ));
    }
    let body = read_body(body, &parts.headers, state.body_limit).await?;
    let verified = route
        .verifier
        .verify(&verify::Request::new(&parts.headers, &body))
        .map_err(|rejection| {
            ApiError::new(StatusCode::UNAUTHORIZED, rejection.code(), rejection.to_string())
        })?;
    if route.body == BodyKind::Json {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not valid JSON: {e}"),
            )
        })?;
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string()))?;
    let delivery_id = verified
        .delivery_id
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&body))));
    let event = NewEvent {
        route: route.name.clone(),
        delivery_id,
        received_at_ms: crate::now_ms(),
        headers: stored_headers(&parts.headers),
        query,
        body: body.to_vec(),
    };
    let answer = match state.inbox.insert(event).await {
        Ok(Insert::Accepted { event_id }) => {
            state.wake.notify_one();
            log_accepted(&route, &event_id);
            json!({ "status": "accepted", "event_id": event_id })
        }
        Ok(Insert::Duplicate { event_id }) => {
            tracing::info!(route = %route.name, %event_id, "duplicate delivery; already stored");
            json!({ "status": "duplicate", "event_id": event_id })
        }
        Err(e) => return Err(ApiError::unavailable("the event could not be stored", &e)),
    };
    Ok((StatusCode::OK, Json(answer)).into_response())
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

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("reading the body failed: {e}"),
            )
        }
    })
}

fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
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
    fn credentials_are_not_stored() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("x-fal-webhook-request-id", HeaderValue::from_static("r"));
        let stored = stored_headers(&h);
        assert_eq!(
            stored,
            vec![("x-fal-webhook-request-id".to_string(), "r".to_string())]
        );
    }
}
