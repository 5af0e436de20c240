//! What every signature scheme shares: the request as a scheme sees it,
//! what it answers ([`Verified`] or a [`Rejection`] with a stable reason),
//! the [`Scheme`] trait, what building one is given ([`SchemeConfig`]),
//! and the building blocks (timestamps, HMAC-SHA256, constant-time
//! comparison). A leaf: each scheme's file imports this and nothing else
//! of the room.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
}

impl Rejection {
    /// A stable, machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::MissingField(_) => "missing_field",
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

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(Sha256::digest(bytes))
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

/// What building one scheme for one route is given.
pub struct SchemeConfig<'a> {
    /// The route's keys for it (empty for schemes that fetch their own).
    pub keys: Keys,
    /// The route's `verify` entry.
    pub config: &'a VerifyConfig,
    /// Where schemes may keep state across restarts (the JWKS cache).
    pub data_dir: &'a Path,
}

impl SchemeConfig<'_> {
    /// The scheme's own options from its route entry, read as `T` (which
    /// denies unknown fields, so a misspelt or foreign option is refused by
    /// name); none given reads as `T`'s defaults.
    pub fn options<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        T::deserialize(toml::Value::Table(self.config.options.clone()))
            .map_err(|e| anyhow::anyhow!("scheme {:?}: {e}", self.config.scheme))
    }
}

/// The options of a scheme that has none.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// Builds a scheme from a route's entry, or says why it cannot.
pub type Build = fn(&SchemeConfig<'_>) -> anyhow::Result<Box<dyn Scheme>>;
