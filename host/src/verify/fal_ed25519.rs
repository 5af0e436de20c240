//! `fal-ed25519`: FAL's own signatures. The canonical message of
//! [`fal_hmac`](super::fal_hmac) signed with Ed25519; the signature header is
//! the hex of the 64-byte signature; any key of FAL's JWKS that verifies
//! accepts. Keys come from [`KeyCache`]. Run by the declarative engine as
//! the `fal` preset (`host/providers/fal.toml`).

use super::catalogue;
use super::declarative::Declarative;
use super::jwks::KeyCache;

/// FAL's scheme with `keys`, checking timestamps against `tolerance_secs`.
pub fn new(keys: KeyCache, tolerance_secs: u64) -> Declarative {
    let preset = catalogue::builtin("fal").expect("the fal preset is built in");
    Declarative::with_key_cache(preset, keys, tolerance_secs).expect("the fal preset takes a JWKS")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::fal_hmac::{REQUEST_ID, SIGNATURE, TIMESTAMP, USER_ID, canonical_message};
    use crate::verify::jwks::JwksSettings;
    use crate::verify::{Rejection, Request, Scheme};
    use axum::http::{HeaderMap, HeaderValue};
    use ed25519_dalek::{Signer, SigningKey};
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000;

    fn scheme(keys: Vec<ed25519_dalek::VerifyingKey>) -> Declarative {
        let settings = JwksSettings {
            urls: vec!["http://127.0.0.1:9/unreachable".into()],
            cache_file: std::env::temp_dir().join("webhook-host-test-never-written.json"),
            max_age: Duration::from_secs(86_400),
            refresh_after: Duration::from_secs(3_600),
            min_fetch_interval: Duration::from_secs(3_600),
            fetch_timeout: Duration::from_secs(1),
        };
        new(KeyCache::with_keys(settings, keys), 300)
    }

    fn signed(key: &SigningKey, body: &[u8]) -> HeaderMap {
        let ts = NOW.to_string();
        let message = canonical_message("req-9", "user-9", &ts, body);
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("req-9"));
        h.insert(USER_ID, HeaderValue::from_static("user-9"));
        h.insert(TIMESTAMP, HeaderValue::from_str(&ts).unwrap());
        let sig = hex::encode(key.sign(message.as_bytes()).to_bytes());
        h.insert(SIGNATURE, HeaderValue::from_str(&sig).unwrap());
        h
    }

    /// A vector generated here from a fixed key: the same inputs always verify.
    #[tokio::test]
    async fn a_fixed_key_vector_verifies_with_any_key_of_the_set() {
        let fal = SigningKey::from_bytes(&[42u8; 32]);
        let other = SigningKey::from_bytes(&[7u8; 32]);
        let scheme = scheme(vec![other.verifying_key(), fal.verifying_key()]);
        let headers = signed(&fal, b"{\"status\":\"OK\"}");
        let request = Request::at(&headers, b"{\"status\":\"OK\"}", NOW);
        assert_eq!(
            scheme.verify(&request).await.unwrap().delivery_id.as_deref(),
            Some("req-9")
        );
        let tampered = Request {
            body: b"{\"status\":\"ERROR\"}",
            ..request
        };
        assert_eq!(
            scheme.verify(&tampered).await,
            Err(Rejection::NoMatchingSignature)
        );
    }

    #[tokio::test]
    async fn wrong_key_and_truncated_signatures_are_refused_without_fetching() {
        let fal = SigningKey::from_bytes(&[42u8; 32]);
        let scheme = scheme(vec![SigningKey::from_bytes(&[1u8; 32]).verifying_key()]);
        let headers = signed(&fal, b"{}");
        let request = Request::at(&headers, b"{}", NOW);
        assert_eq!(scheme.verify(&request).await, Err(Rejection::NoMatchingSignature));
        let mut truncated = headers.clone();
        let sig = headers[SIGNATURE].to_str().unwrap()[..64].to_string();
        truncated.insert(SIGNATURE, HeaderValue::from_str(&sig).unwrap());
        let request = Request {
            headers: &truncated,
            ..request
        };
        assert_eq!(
            scheme.verify(&request).await,
            Err(Rejection::BadEncoding(SIGNATURE))
        );
        assert_eq!(
            scheme.key_cache().unwrap().fetch_attempts(),
            0,
            "the rate limit holds back refreshes"
        );
    }
}
