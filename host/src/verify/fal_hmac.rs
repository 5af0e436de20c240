//! `fal-hmac`: FAL's webhook headers and canonical message, signed with
//! HMAC-SHA256 under a shared secret (`FAL_WEBHOOK_SECRET`).
//!
//! Headers: `X-Fal-Webhook-Request-Id`, `-User-Id`, `-Timestamp` (Unix
//! seconds), `-Signature`. The signed message is
//! `request_id \n user_id \n timestamp \n hex(sha256(body))`, header values
//! exactly as received. The signature is the lowercase hex HMAC; it is
//! compared in constant time. The request id is the delivery id.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{Rejection, Request, Scheme, Verified};
use crate::config::Secret;

pub const REQUEST_ID: &str = "x-fal-webhook-request-id";
pub const USER_ID: &str = "x-fal-webhook-user-id";
pub const TIMESTAMP: &str = "x-fal-webhook-timestamp";
pub const SIGNATURE: &str = "x-fal-webhook-signature";

pub struct FalHmac {
    key: Secret,
    tolerance_secs: u64,
}

impl FalHmac {
    pub fn new(key: Secret, tolerance_secs: u64) -> Self {
        Self { key, tolerance_secs }
    }
}

/// FAL's canonical message for these header values and body.
pub fn canonical_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "{request_id}\n{user_id}\n{timestamp}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

fn mac(key: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length")
}

/// The `X-Fal-Webhook-Signature` value for a message (used by `send` and tests).
pub fn sign(key: &str, message: &str) -> String {
    let mut mac = mac(key);
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl Scheme for FalHmac {
    fn name(&self) -> &'static str {
        "fal-hmac"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let request_id = request.header(REQUEST_ID)?;
        let user_id = request.header(USER_ID)?;
        let timestamp = request.header(TIMESTAMP)?;
        let signature = request.header(SIGNATURE)?;
        if request_id.is_empty() {
            return Err(Rejection::InvalidHeader(REQUEST_ID));
        }
        let sent: i64 = timestamp
            .parse()
            .map_err(|_| Rejection::InvalidHeader(TIMESTAMP))?;
        if request.now_unix.abs_diff(sent) > self.tolerance_secs {
            return Err(Rejection::StaleTimestamp {
                tolerance_secs: self.tolerance_secs,
            });
        }
        let signature = hex::decode(signature).map_err(|_| Rejection::InvalidHeader(SIGNATURE))?;
        let mut mac = mac(self.key.expose());
        mac.update(canonical_message(request_id, user_id, timestamp, request.body).as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| Rejection::BadSignature)?;
        Ok(Verified {
            delivery_id: Some(request_id.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    const NOW: i64 = 1_700_000_000;

    fn headers(key: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let ts = ts.to_string();
        let sig = sign(key, &canonical_message("req-1", "user-1", &ts, body));
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("req-1"));
        h.insert(USER_ID, HeaderValue::from_static("user-1"));
        h.insert(TIMESTAMP, HeaderValue::from_str(&ts).unwrap());
        h.insert(SIGNATURE, HeaderValue::from_str(&sig).unwrap());
        h
    }

    fn check(h: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let scheme = FalHmac::new(Secret::new("s3cret"), 300);
        scheme.verify(&Request {
            headers: h,
            body,
            now_unix: NOW,
        })
    }

    #[test]
    fn canonical_message_matches_fal_layout() {
        let m = canonical_message("r", "u", "1", b"");
        assert_eq!(
            m,
            "r\nu\n1\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn accepts_a_good_signature_and_returns_the_request_id() {
        let v = check(&headers("s3cret", NOW - 10, b"{}"), b"{}").unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn rejects_wrong_key_changed_body_and_stale_or_future_timestamps() {
        assert_eq!(
            check(&headers("other", NOW, b"{}"), b"{}"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&headers("s3cret", NOW, b"{}"), b"{ }"),
            Err(Rejection::BadSignature)
        );
        let stale = Rejection::StaleTimestamp { tolerance_secs: 300 };
        assert_eq!(
            check(&headers("s3cret", NOW - 301, b"{}"), b"{}"),
            Err(stale.clone())
        );
        assert_eq!(check(&headers("s3cret", NOW + 301, b"{}"), b"{}"), Err(stale));
        assert!(check(&headers("s3cret", NOW + 300, b"{}"), b"{}").is_ok());
    }

    #[test]
    fn rejects_missing_and_malformed_headers() {
        for name in [REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE] {
            let mut h = headers("s3cret", NOW, b"{}");
            h.remove(name);
            assert_eq!(check(&h, b"{}"), Err(Rejection::MissingHeader(name)));
        }
        let mut h = headers("s3cret", NOW, b"{}");
        h.insert(SIGNATURE, HeaderValue::from_static("zz"));
        assert_eq!(check(&h, b"{}"), Err(Rejection::InvalidHeader(SIGNATURE)));
        h.insert(TIMESTAMP, HeaderValue::from_static("yesterday"));
        assert_eq!(check(&h, b"{}"), Err(Rejection::InvalidHeader(TIMESTAMP)));
    }
}
