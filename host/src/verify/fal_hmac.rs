//! `fal-hmac`: FAL's webhook headers and canonical message, signed with
//! HMAC-SHA256 under a shared secret (`FAL_WEBHOOK_SECRET`), for relays,
//! tests and setups without FAL's JWKS.
//!
//! Headers: `X-Fal-Webhook-Request-Id`, `-User-Id`, `-Timestamp` (Unix
//! seconds), `-Signature`. The signed message is
//! `request_id \n user_id \n timestamp \n hex(sha256(body))`, header values
//! exactly as received. The signature is the lowercase hex HMAC. The request
//! id is the delivery id. Run by the declarative engine as the `fal-hmac`
//! preset (`host/providers/fal-hmac.toml`).

use sha2::{Digest, Sha256};

use super::scheme::hmac_sha256;

pub const REQUEST_ID: &str = "x-fal-webhook-request-id";
pub const USER_ID: &str = "x-fal-webhook-user-id";
pub const TIMESTAMP: &str = "x-fal-webhook-timestamp";
pub const SIGNATURE: &str = "x-fal-webhook-signature";

/// FAL's canonical message for these header values and body.
pub fn canonical_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "{request_id}\n{user_id}\n{timestamp}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

/// The `X-Fal-Webhook-Signature` value for a message (used by `send` and tests).
pub fn sign(key: &str, message: &str) -> String {
    hex::encode(hmac_sha256(key.as_bytes(), &[message.as_bytes()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Rejection, Request, Scheme, Verified};
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

    async fn check(h: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let scheme = super::super::preset_scheme("fal-hmac", &["previous", "s3cret"], 300);
        scheme.verify(&Request::at(h, body, NOW)).await
    }

    #[test]
    fn canonical_message_matches_fal_layout() {
        let m = canonical_message("r", "u", "1", b"");
        assert_eq!(
            m,
            "r\nu\n1\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[tokio::test]
    async fn accepts_a_good_signature_under_any_route_secret_and_returns_the_request_id() {
        let v = check(&headers("s3cret", NOW - 10, b"{}"), b"{}").await.unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("req-1"));
        assert!(check(&headers("previous", NOW, b"{}"), b"{}").await.is_ok());
    }

    #[tokio::test]
    async fn rejects_wrong_key_changed_body_and_stale_or_future_timestamps() {
        let none = Err(Rejection::NoMatchingSignature);
        assert_eq!(check(&headers("other", NOW, b"{}"), b"{}").await, none);
        assert_eq!(check(&headers("s3cret", NOW, b"{}"), b"{ }").await, none);
        let out = Rejection::TimestampOutOfRange { tolerance_secs: 300 };
        assert_eq!(
            check(&headers("s3cret", NOW - 301, b"{}"), b"{}").await,
            Err(out.clone())
        );
        assert_eq!(check(&headers("s3cret", NOW + 301, b"{}"), b"{}").await, Err(out));
        assert!(check(&headers("s3cret", NOW + 300, b"{}"), b"{}").await.is_ok());
    }

    #[tokio::test]
    async fn rejects_missing_and_malformed_headers() {
        for name in [REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE] {
            let mut h = headers("s3cret", NOW, b"{}");
            h.remove(name);
            assert_eq!(check(&h, b"{}").await, Err(Rejection::MissingHeader(name)));
        }
        let mut h = headers("s3cret", NOW, b"{}");
        h.insert(SIGNATURE, HeaderValue::from_static("zz"));
        assert_eq!(check(&h, b"{}").await, Err(Rejection::BadEncoding(SIGNATURE)));
        h.insert(SIGNATURE, HeaderValue::from_static("abcd"));
        assert_eq!(
            check(&h, b"{}").await,
            Err(Rejection::BadEncoding(SIGNATURE)),
            "truncated"
        );
        h.insert(TIMESTAMP, HeaderValue::from_static("yesterday"));
        assert_eq!(check(&h, b"{}").await, Err(Rejection::BadEncoding(TIMESTAMP)));
    }
}
