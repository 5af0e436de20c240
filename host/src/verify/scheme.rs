//! What every signature scheme shares: the request as a scheme sees it,
//! what it answers ([`Verified`] or a [`Rejection`] with a stable reason),
//! the [`Scheme`] trait, and the building blocks (HMAC-SHA256, SHA-256,
//! constant-time comparison). A leaf: the engine's files import this and
//! nothing above it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How a signature's bytes are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
    /// URL-safe base64, padded or not.
    Base64url,
}

impl Encoding {
    /// `bytes` written in this encoding (base64url without padding).
    pub fn encode(self, bytes: &[u8]) -> String {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => STANDARD.encode(bytes),
            Encoding::Base64url => URL_SAFE_NO_PAD.encode(bytes),
        }
    }
}

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
    #[error("required field {0} is missing")]
    MissingField(&'static str),
    #[error("header {0} is not in the expected format")]
    BadEncoding(&'static str),
    #[error("the signed timestamp is more than {tolerance_secs} s away from now")]
    TimestampOutOfRange { tolerance_secs: u64 },
    #[error("no signature matches")]
    NoMatchingSignature,
    #[error("the keys to verify this request cannot be fetched right now")]
    KeysUnavailable,
    /// No cached key verifies a request signed after the keys were fetched,
    /// and the rate limit holds back the refresh that may find a new one.
    #[error("no cached key matches and the key refresh is rate-limited; retry in {retry_after_secs} s")]
    KeysRefreshing { retry_after_secs: u64 },
    /// The route's verifier plugin says the request is not authentic.
    #[error("the route's verifier refused it: {0}")]
    PluginRejected(String),
    /// The route's verifier plugin could not decide: it said so, trapped,
    /// or ran out of time or memory.
    #[error("the route's verifier could not decide: {0}")]
    VerifierFailed(String),
}

impl Rejection {
    /// Whether the request may well be genuine and should be sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Rejection::KeysUnavailable | Rejection::KeysRefreshing { .. } | Rejection::VerifierFailed(_)
        )
    }

    /// A stable, machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::MissingField(_) => "missing_field",
            Rejection::BadEncoding(_) => "bad_encoding",
            Rejection::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Rejection::NoMatchingSignature => "no_matching_signature",
            Rejection::KeysUnavailable => "keys_unavailable",
            Rejection::KeysRefreshing { .. } => "keys_refreshing",
            Rejection::PluginRejected(_) => "plugin_rejected",
            Rejection::VerifierFailed(_) => "verifier_failed",
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
    /// The request's method and its query string (without `?`), for
    /// schemes that sign them.
    pub method: &'a str,
    pub query: &'a str,
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self::at(headers, body, unix_now())
    }

    /// The request as of `now_unix` (tests and replays of recorded requests).
    pub fn at(headers: &'a HeaderMap, body: &'a [u8], now_unix: i64) -> Self {
        Self {
            headers,
            body,
            now_unix,
            method: "POST",
            query: "",
        }
    }

    /// The same request with its method and query string.
    pub fn with_target(self, method: &'a str, query: &'a str) -> Self {
        Self {
            method,
            query,
            ..self
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

/// HMAC-SHA256 of the concatenated `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(Sha256::digest(bytes))
}

/// Constant-time equality of an expected and a given signature.
pub fn signature_matches(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

/// A key cache's state for `/health`: `ok` (keys younger than the
/// longest accepted age), `expired` (older: verification waits for a
/// fetch), or `not_fetched` (none yet; the first delivery fetches them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    pub state: &'static str,
    pub keys: usize,
    pub age_secs: Option<u64>,
}

/// A signature scheme.
#[async_trait::async_trait]
pub trait Scheme: Send + Sync {
    /// The name routes use to select it.
    fn name(&self) -> &'static str;
    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection>;
    /// The keys it fetches (a JWKS), for `/health`; none for fixed keys.
    fn fetched_keys(&self) -> Option<KeyStatus> {
        None
    }
}

/// The DER inside a PEM block (`-----BEGIN …-----`); the first block.
pub fn pem_body(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "));
    lines.next().context("not PEM (no BEGIN line)")?;
    let body: String = lines.take_while(|l| !l.starts_with("-----END ")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the PEM block is not base64")
}
