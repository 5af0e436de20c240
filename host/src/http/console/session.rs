//! Signing in to the console: the operator types `ADMIN_TOKEN` once and gets
//! a cookie holding an expiry and an HMAC of it under the token. Any
//! instance can check it without a shared session store, and changing the
//! token signs everyone out.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::error::ApiError;
use crate::http::state::AppState;

pub const COOKIE: &str = "webhook_console";
/// How long a sign-in lasts.
const LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// A fresh cookie value for `token`, valid from `now_ms` for [`LIFETIME_MS`].
pub fn issue(token: &Secret, now_ms: i64) -> String {
    let expiry = now_ms + LIFETIME_MS;
    format!("v1.{expiry}.{}", mac(token, expiry))
}

/// Whether `value` is a cookie [`issue`] made with `token` that has not expired.
pub fn is_valid(token: &Secret, value: &str, now_ms: i64) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some("v1"), Some(expiry), Some(given)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(expiry) = expiry.parse::<i64>() else {
        return false;
    };
    expiry > now_ms && bool::from(mac(token, expiry).as_bytes().ct_eq(given.as_bytes()))
}

fn mac(token: &Secret, expiry: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("any key length");
    mac.update(b"webhook-host console v1.");
    mac.update(expiry.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Set-Cookie` value for a sign-in (`Secure` when the request came over
/// HTTPS through the load balancer) or, with `None`, for signing out.
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(value) => format!(
            "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            LIFETIME_MS / 1000
        ),
        None => format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether the client reached the load balancer over HTTPS.
pub fn came_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Proof of a signed-in operator. Without one, pages redirect to the
/// sign-in form; without `ADMIN_TOKEN` the console does not exist (404).
pub struct Operator;

impl FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Response> {
        let Some(token) = &state.admin_token else {
            return Err(ApiError::not_found("no such path").into_response());
        };
        let signed_in = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE && is_valid(token, value, crate::now_ms()));
        if signed_in {
            Ok(Operator)
        } else {
            Err(Redirect::to("/admin/login").into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_valid_for_its_token_until_it_expires() {
        let token = Secret::new("operator-token");
        let cookie = issue(&token, 1_000);
        assert!(is_valid(&token, &cookie, 2_000));
        assert!(!is_valid(&token, &cookie, 1_000 + LIFETIME_MS), "expired");
        assert!(
            !is_valid(&Secret::new("another-token"), &cookie, 2_000),
            "other token"
        );
        let forged_expiry = cookie.replacen(&(1_000 + LIFETIME_MS).to_string(), "99999999999999", 1);
        assert!(!is_valid(&token, &forged_expiry, 2_000), "expiry changed");
        for junk in ["", "v1", "v1.abc.def", "v2.99999999999999.00", "operator-token"] {
            assert!(!is_valid(&token, junk, 2_000), "{junk:?}");
        }
    }
}
