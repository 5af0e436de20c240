//! Answering a provider's handshake on a webhook route: the route's
//! verifier says which handshake a request is (its presets declare them);
//! the intake verifies a signed one first, exactly as an event (a bad
//! signature is 401, as Discord probes); the answer is written from the request, a
//! confirmation URL is fetched through the outbound guard. Nothing is
//! stored: handshakes are counted (the metric and the console's table).

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::error::ApiError;
use super::state::AppState;
use crate::caps::http::{HttpGrant, HttpPolicy};
use crate::routes::Route;
use crate::verify::handshake::{Answer, Confirm, Handshake};
use crate::verify::{self, Request};

/// The answer to `handshake` of `route` (verified already when it is signed).
pub async fn answer(
    state: &AppState,
    route: &Route,
    handshake: &Handshake,
    request: &Request<'_>,
) -> Result<Response, ApiError> {
    let answer = handshake.answer(request).map_err(|refused| {
        tracing::warn!(route = %route.name, handshake = handshake.name, "handshake refused: {refused}");
        let status = match refused {
            verify::handshake::Refused::WrongToken(_) | verify::handshake::Refused::NoToken(_) => {
                StatusCode::FORBIDDEN
            }
            verify::handshake::Refused::Missing(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "handshake_refused", refused.to_string())
    })?;
    if let Some(confirm) = &answer.confirm {
        confirm_url(state, confirm).await.map_err(|why| {
            tracing::warn!(route = %route.name, handshake = handshake.name, "confirmation failed: {why}");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "confirmation_failed",
                format!("confirming the subscription failed: {why}"),
            )
        })?;
    }
    answered(state, route, handshake.provider, handshake.name);
    Ok(response(answer))
}

/// Counts an answered handshake (the metric and the console's table) and logs it.
fn answered(state: &AppState, route: &Route, provider: &str, handshake: &'static str) {
    metrics::counter!(
        crate::telemetry::HANDSHAKES,
        "route" => route.name.clone(),
        "provider" => provider.to_string(),
        "handshake" => handshake,
    )
    .increment(1);
    state.handshakes.add(&route.name, provider, handshake);
    tracing::info!(route = %route.name, provider, handshake, "handshake answered");
}

/// The answer of `route`'s responder plugin to `request`, if it gives one
/// (counted as the handshake `respond`); a responder that fails answers 503.
pub async fn ask_responder(
    state: &AppState,
    route: &Route,
    plugin: &str,
    request: &Request<'_>,
) -> Result<Option<Response>, ApiError> {
    let answer = state
        .gate
        .respond(plugin, &route.name, request)
        .await
        .map_err(|why| {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "responder_failed",
                format!("the route's responder could not answer: {why}"),
            );
            error.retry_after = Some(30);
            error
        })?;
    let Some(answer) = answer else {
        return Ok(None);
    };
    answered(state, route, &format!("plugin:{plugin}"), "respond");
    Ok(Some(response(Answer {
        status: answer.status,
        headers: answer.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        body: answer.body,
        confirm: None,
    })))
}

/// GETs the confirmation URL through the outbound guard: allowed for its
/// own host only (which the handshake's patterns admitted), public
/// addresses only unless the preset allows private ones (tests).
async fn confirm_url(state: &AppState, confirm: &Confirm) -> Result<(), String> {
    let url = reqwest::Url::parse(&confirm.url).map_err(|e| e.to_string())?;
    let origin = format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(443)
    );
    let services = state.runtime.services();
    let grant = HttpGrant {
        allow: vec![origin],
        allow_private: confirm.allow_private,
        ..HttpGrant::default()
    };
    let policy = HttpPolicy::new(Some(&grant), &services.outbound).map_err(|e| e.to_string())?;
    policy.check_url(&url).map_err(|refusal| refusal.to_string())?;
    let response = services
        .http
        .client(&policy)
        .get(url)
        .timeout(policy.timeout)
        .send()
        .await
        .map_err(crate::caps::http::client::error_chain)?;
    if !response.status().is_success() {
        return Err(format!("the provider answered {}", response.status()));
    }
    Ok(())
}

fn response(answer: Answer) -> Response {
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    for (name, value) in answer.headers {
        // Values come from the request's own headers, body or query: one
        // that is not a valid header value is left out rather than sent.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
