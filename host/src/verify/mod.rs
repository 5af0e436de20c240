//! Signature verification: one file per scheme, all behind [`Scheme`].
//!
//! A route lists the schemes it accepts; a request is authentic when any one
//! of them verifies. Verification runs on the raw body bytes, before anything
//! parses them. Each failure has a stable reason code for the 401 answer and
//! the logs; secrets never appear in either.

pub mod fal_hmac;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use axum::http::HeaderMap;

use crate::config::{Secret, VerifyConfig};

pub use fal_hmac::FalHmac;

/// What a scheme learned from a request it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The sender's delivery id, when the scheme carries one (used to drop repeats).
    pub delivery_id: Option<String>,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("required header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {0} is not valid")]
    InvalidHeader(&'static str),
    #[error("timestamp is outside the accepted window of {tolerance_secs} s")]
    StaleTimestamp { tolerance_secs: u64 },
    #[error("signature does not match")]
    BadSignature,
}

impl Rejection {
    /// A stable, machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::InvalidHeader(_) => "invalid_header",
            Rejection::StaleTimestamp { .. } => "stale_timestamp",
            Rejection::BadSignature => "bad_signature",
        }
    }
}

/// The request as a scheme sees it.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Current time, seconds since the Unix epoch (a parameter, for tests).
    pub now_unix: i64,
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self {
            headers,
            body,
            now_unix,
        }
    }

    /// A header's value, or the rejection naming it.
    pub fn header(&self, name: &'static str) -> Result<&'a str, Rejection> {
        let value = self.headers.get(name).ok_or(Rejection::MissingHeader(name))?;
        value.to_str().map_err(|_| Rejection::InvalidHeader(name))
    }
}

/// A signature scheme.
pub trait Scheme: Send + Sync {
    /// The name routes use to select it.
    fn name(&self) -> &'static str;
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection>;
}

/// The schemes one route accepts.
pub struct RouteVerifier {
    schemes: Vec<Box<dyn Scheme>>,
}

impl RouteVerifier {
    /// Builds the verifier for a route. A scheme whose secret is missing is an
    /// error, unless `insecure_dev` allows the route to run unverified.
    pub fn build(
        route: &str,
        configs: &[VerifyConfig],
        secret: impl Fn(&str) -> Option<Secret>,
        insecure_dev: bool,
    ) -> Result<Self> {
        let mut schemes: Vec<Box<dyn Scheme>> = Vec::new();
        for config in configs {
            let key = config.secret_env.as_deref().and_then(&secret);
            let Some(key) = key else {
                if insecure_dev {
                    tracing::warn!(route, scheme = %config.scheme, "no secret configured: route runs UNVERIFIED (--insecure-dev)");
                    return Ok(Self { schemes: Vec::new() });
                }
                bail!(
                    "route {route:?}: scheme {:?} needs a secret in {}; set it, or start with --insecure-dev to accept unverified webhooks",
                    config.scheme,
                    config
                        .secret_env
                        .as_deref()
                        .unwrap_or("secret_env (not configured)")
                );
            };
            schemes.push(match config.scheme.as_str() {
                "fal-hmac" => Box::new(FalHmac::new(key, config.tolerance_secs)),
                other => {
                    bail!("route {route:?}: unknown signature scheme {other:?} (known: fal-hmac)")
                }
            });
        }
        if schemes.is_empty() && !insecure_dev {
            bail!("route {route:?} has no signature scheme; add one, or start with --insecure-dev");
        }
        Ok(Self { schemes })
    }

    /// True when requests on this route are accepted without verification.
    pub fn is_open(&self) -> bool {
        self.schemes.is_empty()
    }

    /// Accepts the request if any scheme verifies it; otherwise returns the
    /// first scheme's reason.
    pub fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let mut first = None;
        for scheme in &self.schemes {
            match scheme.verify(request) {
                Ok(verified) => return Ok(verified),
                Err(rejection) => {
                    first.get_or_insert(rejection);
                }
            }
        }
        first.map_or_else(|| Ok(Verified::default()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fal(secret_env: &str) -> Vec<VerifyConfig> {
        vec![VerifyConfig {
            scheme: "fal-hmac".into(),
            secret_env: Some(secret_env.into()),
            tolerance_secs: 300,
        }]
    }

    #[test]
    fn a_route_without_its_secret_refuses_to_start_and_names_the_variable() {
        let err = RouteVerifier::build("fal", &fal("FAL_WEBHOOK_SECRET"), |_| None, false)
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(
            message.contains("FAL_WEBHOOK_SECRET") && message.contains("--insecure-dev"),
            "{message}"
        );
    }

    #[test]
    fn insecure_dev_opens_a_route_without_its_secret() {
        let verifier = RouteVerifier::build("fal", &fal("FAL_WEBHOOK_SECRET"), |_| None, true).unwrap();
        assert!(verifier.is_open());
        let headers = HeaderMap::new();
        assert_eq!(
            verifier.verify(&Request::new(&headers, b"{}")),
            Ok(Verified::default())
        );
    }

    #[test]
    fn unknown_schemes_and_schemeless_routes_are_refused() {
        let mut configs = fal("S");
        configs[0].scheme = "rot13".into();
        let err = RouteVerifier::build("r", &configs, |_| Some(Secret::new("k")), false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("rot13"));
        assert!(RouteVerifier::build("r", &[], |_| None, false).is_err());
    }

    #[test]
    fn a_configured_route_rejects_unsigned_requests() {
        let verifier = RouteVerifier::build("fal", &fal("S"), |_| Some(Secret::new("k")), false).unwrap();
        let headers = HeaderMap::new();
        let rejection = verifier.verify(&Request::new(&headers, b"{}")).unwrap_err();
        assert_eq!(rejection.code(), "missing_header");
    }
}
