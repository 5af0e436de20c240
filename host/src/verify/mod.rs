//! Signature verification: one file per scheme, all behind [`Scheme`].
//!
//! A route lists the schemes it accepts; a request is authentic when any one
//! of them verifies. Verification runs on the raw body bytes, before anything
//! parses them. Each failure has a stable reason code for the answer, the
//! logs and the metrics; secrets and expected signatures never appear in any
//! of them. Every comparison of a signature is constant-time.
//!
//! | scheme | headers | key |
//! |---|---|---|
//! | `fal-ed25519` | `X-Fal-Webhook-*` | FAL's JWKS (Ed25519), cached |
//! | `fal-hmac` | `X-Fal-Webhook-*` | shared secret |
//! | `standard-webhooks` | `webhook-id/-timestamp/-signature` | `whsec_` / `whpk_` |
//! | `github` | `X-Hub-Signature-256` | shared secret |
//! | `stripe` | `Stripe-Signature` | `whsec_…` as bytes |

pub mod fal_ed25519;
pub mod fal_hmac;
pub mod github;
pub mod jwks;
pub mod sign;
pub mod standard_webhooks;
pub mod stripe;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Secret, VerifyConfig};

/// A route's keys for one scheme; several while a sender rotates them.
pub type Keys = Arc<[Secret]>;

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
    #[error("header {0} is not in the expected format")]
    BadEncoding(&'static str),
    #[error("the signed timestamp is more than {tolerance_secs} s away from now")]
    TimestampOutOfRange { tolerance_secs: u64 },
    #[error("no signature matches")]
    NoMatchingSignature,
    #[error("the keys to verify this request cannot be fetched right now")]
    KeysUnavailable,
}

impl Rejection {
    /// A stable, machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::BadEncoding(_) => "bad_encoding",
            Rejection::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Rejection::NoMatchingSignature => "no_matching_signature",
            Rejection::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// The request as a scheme sees it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Current time, seconds since the Unix epoch (a parameter, for tests).
    pub now_unix: i64,
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            headers,
            body,
            now_unix: unix_now(),
        }
    }

    /// A header's value, or the rejection naming it.
    pub fn header(&self, name: &'static str) -> Result<&'a str, Rejection> {
        let value = self.headers.get(name).ok_or(Rejection::MissingHeader(name))?;
        value.to_str().map_err(|_| Rejection::BadEncoding(name))
    }

    /// A header's value if present and readable.
    pub fn optional_header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Parses a Unix-seconds timestamp from `header` and checks it is within
/// `tolerance_secs` of `now`, in either direction.
pub fn check_timestamp(
    value: &str,
    header: &'static str,
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, Rejection> {
    let sent: i64 = value.trim().parse().map_err(|_| Rejection::BadEncoding(header))?;
    if now.abs_diff(sent) > tolerance_secs {
        return Err(Rejection::TimestampOutOfRange { tolerance_secs });
    }
    Ok(sent)
}

/// HMAC-SHA256 of the concatenated `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of an expected and a given signature.
pub fn signature_matches(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

/// A signature scheme.
#[async_trait::async_trait]
pub trait Scheme: Send + Sync {
    /// The name routes use to select it.
    fn name(&self) -> &'static str;
    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection>;
}

/// Every header some scheme reads, for the property tests and fuzzing.
#[doc(hidden)]
pub const SIGNATURE_HEADERS: [&str; 10] = [
    fal_hmac::REQUEST_ID,
    fal_hmac::USER_ID,
    fal_hmac::TIMESTAMP,
    fal_hmac::SIGNATURE,
    standard_webhooks::ID,
    standard_webhooks::TIMESTAMP,
    standard_webhooks::SIGNATURE,
    github::SIGNATURE,
    github::DELIVERY,
    stripe::SIGNATURE,
];

/// Every scheme, keyed with `secret` (the HMAC schemes) and `public`
/// (Ed25519, in a key cache that never fetches), with `tolerance_secs`. For
/// the property tests, benchmarks and fuzzing, which exercise every parser.
#[doc(hidden)]
pub fn every_scheme(
    secret: &str,
    public: ed25519_dalek::VerifyingKey,
    tolerance_secs: u64,
) -> Vec<Box<dyn Scheme>> {
    let keys = || -> Keys { vec![Secret::new(secret)].into() };
    vec![
        Box::new(fal_hmac::FalHmac::new(keys(), tolerance_secs)),
        Box::new(fal_ed25519::FalEd25519::new(
            jwks::KeyCache::offline(vec![public]),
            tolerance_secs,
        )),
        Box::new(
            standard_webhooks::StandardWebhooks::new(&keys(), tolerance_secs)
                .expect("every_scheme takes a whsec_ secret"),
        ),
        Box::new(github::GitHub::new(keys())),
        Box::new(stripe::Stripe::new(keys(), tolerance_secs)),
    ]
}

/// What building a route's schemes needs from the host.
pub struct BuildContext<'a> {
    /// Looks up an environment secret by variable name (resolved at start).
    pub env_secret: &'a dyn Fn(&str) -> Option<Secret>,
    /// Where schemes may keep state across restarts (the JWKS cache).
    pub data_dir: &'a Path,
    /// Lets a route whose keys are missing run unverified.
    pub insecure_dev: bool,
}

/// The schemes one route accepts.
pub struct RouteVerifier {
    schemes: Vec<Box<dyn Scheme>>,
}

impl RouteVerifier {
    /// Builds the verifier for a route. A scheme whose keys are missing is an
    /// error, unless `insecure_dev` lets the route run without it; a route left
    /// with no scheme at all is then open (and logged as such).
    pub fn build(route: &str, configs: &[VerifyConfig], context: &BuildContext<'_>) -> Result<Self> {
        let mut schemes: Vec<Box<dyn Scheme>> = Vec::new();
        for config in configs {
            let keys = config.resolve_keys(context.env_secret)?;
            let needs_keys = config.scheme != "fal-ed25519";
            if needs_keys && keys.is_empty() {
                if config.optional {
                    tracing::info!(route, scheme = %config.scheme, "optional scheme has no key; not used");
                    continue;
                }
                if context.insecure_dev {
                    tracing::warn!(route, scheme = %config.scheme, "no key configured: scheme skipped (--insecure-dev)");
                    continue;
                }
                bail!(
                    "route {route:?}: scheme {:?} needs a key ({}); set it, or start with --insecure-dev to accept unverified webhooks",
                    config.scheme,
                    config.key_sources()
                );
            }
            let keys: Keys = keys.into();
            let tolerance = config.tolerance_secs;
            schemes.push(match config.scheme.as_str() {
                "fal-hmac" => Box::new(fal_hmac::FalHmac::new(keys, tolerance)),
                "fal-ed25519" => Box::new(fal_ed25519::FalEd25519::new(
                    jwks::KeyCache::new(jwks::JwksSettings::from_config(config, context.data_dir)),
                    tolerance,
                )),
                "standard-webhooks" => Box::new(
                    standard_webhooks::StandardWebhooks::new(&keys, tolerance)
                        .map_err(|e| anyhow::anyhow!("route {route:?}: {e}"))?,
                ),
                "github" => Box::new(github::GitHub::new(keys)),
                "stripe" => Box::new(stripe::Stripe::new(keys, tolerance)),
                other => bail!(
                    "route {route:?}: unknown signature scheme {other:?} (known: fal-ed25519, fal-hmac, standard-webhooks, github, stripe)"
                ),
            });
        }
        if schemes.is_empty() {
            if !context.insecure_dev {
                bail!("route {route:?} has no signature scheme; add one, or start with --insecure-dev");
            }
            tracing::warn!(route, "route runs UNVERIFIED (--insecure-dev)");
        }
        Ok(Self { schemes })
    }

    /// True when requests on this route are accepted without verification.
    pub fn is_open(&self) -> bool {
        self.schemes.is_empty()
    }

    /// Accepts the request if any scheme verifies it. Otherwise returns
    /// `KeysUnavailable` if any scheme could not get its keys (the request may
    /// well be genuine), else the first scheme's reason.
    pub async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let mut rejection: Option<Rejection> = None;
        for scheme in &self.schemes {
            match scheme.verify(request).await {
                Ok(verified) => return Ok(verified),
                Err(Rejection::KeysUnavailable) => rejection = Some(Rejection::KeysUnavailable),
                Err(other) => {
                    rejection.get_or_insert(other);
                }
            }
        }
        rejection.map_or_else(|| Ok(Verified::default()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fal(secret_env: &str) -> Vec<VerifyConfig> {
        vec![VerifyConfig::new("fal-hmac").with_secret_env(secret_env)]
    }

    fn context<'a>(secret: &'a dyn Fn(&str) -> Option<Secret>, insecure_dev: bool) -> BuildContext<'a> {
        BuildContext {
            env_secret: secret,
            data_dir: Path::new("/nonexistent"),
            insecure_dev,
        }
    }

    #[test]
    fn a_route_without_its_secret_refuses_to_start_and_names_the_variable() {
        let err = RouteVerifier::build("fal", &fal("FAL_WEBHOOK_SECRET"), &context(&|_| None, false))
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(
            message.contains("FAL_WEBHOOK_SECRET") && message.contains("--insecure-dev"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn insecure_dev_opens_a_route_without_its_secret() {
        let verifier =
            RouteVerifier::build("fal", &fal("FAL_WEBHOOK_SECRET"), &context(&|_| None, true)).unwrap();
        assert!(verifier.is_open());
        let headers = HeaderMap::new();
        assert_eq!(
            verifier.verify(&Request::new(&headers, b"{}")).await,
            Ok(Verified::default())
        );
    }

    #[test]
    fn unknown_schemes_and_schemeless_routes_are_refused() {
        let configs = vec![VerifyConfig::new("rot13").with_secret_env("S")];
        let key = |_: &str| Some(Secret::new("k"));
        let err = RouteVerifier::build("r", &configs, &context(&key, false))
            .err()
            .unwrap();
        assert!(err.to_string().contains("rot13"));
        assert!(RouteVerifier::build("r", &[], &context(&|_| None, false)).is_err());
    }

    #[tokio::test]
    async fn a_configured_route_rejects_unsigned_requests() {
        let key = |_: &str| Some(Secret::new("k"));
        let verifier = RouteVerifier::build("fal", &fal("S"), &context(&key, false)).unwrap();
        let headers = HeaderMap::new();
        let rejection = verifier.verify(&Request::new(&headers, b"{}")).await.unwrap_err();
        assert_eq!(rejection.code(), "missing_header");
    }

    #[test]
    fn signatures_compare_by_value_and_length() {
        assert!(signature_matches(b"abc", b"abc"));
        assert!(!signature_matches(b"abc", b"abd"));
        assert!(!signature_matches(b"abc", b"ab"));
        assert!(!signature_matches(b"", b"a"));
    }
}

#[cfg(test)]
mod props;
