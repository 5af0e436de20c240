//! `standard-webhooks`: the Standard Webhooks specification.
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds), and
//! `webhook-signature`: space-separated `v1,<base64>` (HMAC-SHA256) and/or
//! `v1a,<base64>` (Ed25519) entries; any one matching accepts, which is how
//! senders rotate keys. The signed content is `{id}.{timestamp}.{raw body}`.
//! Keys: `whsec_<base64>` secrets (the decoded bytes are the HMAC key) and
//! `whpk_<base64>` Ed25519 public keys; a route may list several of each.
//! The delivery id is `webhook-id`. Run by the declarative engine as the
//! `standard-webhooks` preset (`host/providers/standard-webhooks.toml`).

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::scheme::hmac_sha256;

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

/// A `v1,<base64>` entry for `secret` (`whsec_…`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret))?;
    let t = timestamp.to_string();
    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Rejection, Request, Scheme, Verified};
    use axum::http::{HeaderMap, HeaderValue};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ed25519_dalek::{Signer, SigningKey};

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID_VALUE: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ID, HeaderValue::from_static(ID_VALUE));
        h.insert(TIMESTAMP, HeaderValue::from_str(&TS.to_string()).unwrap());
        h.insert(SIGNATURE, HeaderValue::from_str(signature).unwrap());
        h
    }

    async fn check(keys: &[&str], signature: &str, now: i64) -> Result<Verified, Rejection> {
        let scheme = super::super::preset_scheme("standard-webhooks", keys, 300);
        let headers = headers(signature);
        scheme.verify(&Request::at(&headers, BODY, now)).await
    }

    /// The specification's published vector.
    #[tokio::test]
    async fn the_published_vector_verifies() {
        assert_eq!(sign(SECRET, ID_VALUE, TS, BODY).unwrap(), EXPECTED);
        let verified = check(&[SECRET], EXPECTED, TS).await.unwrap();
        assert_eq!(verified.delivery_id.as_deref(), Some(ID_VALUE));
    }

    #[tokio::test]
    async fn rotation_several_signatures_and_several_secrets() {
        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let both = format!("v1,{} {EXPECTED}", STANDARD.encode([0u8; 32]));
        assert!(
            check(&[SECRET], &both, TS).await.is_ok(),
            "any signature in the header may match"
        );
        assert!(
            check(&[other, SECRET], EXPECTED, TS).await.is_ok(),
            "any secret of the route may match"
        );
        assert_eq!(
            check(&[other], EXPECTED, TS).await,
            Err(Rejection::NoMatchingSignature)
        );
    }

    #[tokio::test]
    async fn v1a_ed25519_signatures_verify_against_whpk_keys() {
        let signing = SigningKey::from_bytes(&[9u8; 32]);
        let public = format!("whpk_{}", STANDARD.encode(signing.verifying_key().to_bytes()));
        let content = [ID_VALUE.as_bytes(), b".", TS.to_string().as_bytes(), b".", BODY].concat();
        let signature = format!("v1a,{}", STANDARD.encode(signing.sign(&content).to_bytes()));
        assert!(check(&[&public], &signature, TS).await.is_ok());
        let wrong = SigningKey::from_bytes(&[8u8; 32]);
        let wrong_public = format!("whpk_{}", STANDARD.encode(wrong.verifying_key().to_bytes()));
        assert_eq!(
            check(&[&wrong_public], &signature, TS).await,
            Err(Rejection::NoMatchingSignature)
        );
    }

    #[tokio::test]
    async fn stale_and_unparseable_signatures_are_refused() {
        let out = Rejection::TimestampOutOfRange { tolerance_secs: 300 };
        assert_eq!(check(&[SECRET], EXPECTED, TS + 301).await, Err(out));
        assert_eq!(
            check(&[SECRET], "v1,%%%", TS).await,
            Err(Rejection::BadEncoding(SIGNATURE))
        );
        assert_eq!(
            check(&[SECRET], "nonsense", TS).await,
            Err(Rejection::BadEncoding(SIGNATURE))
        );
    }
}
