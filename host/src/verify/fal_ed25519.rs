//! `fal-ed25519`: FAL's own signatures. The canonical message of
//! [`fal_hmac`](super::fal_hmac) signed with Ed25519; the signature header is
//! the hex of the 64-byte signature; any key of FAL's JWKS that verifies
//! accepts. Keys come from [`KeyCache`].

use super::fal_hmac::FalHeaders;
use super::jwks::KeyCache;
use super::jwks::{JwksOptions, JwksSettings};
use super::scheme::{Rejection, Request, Scheme, SchemeConfig, Verified};
use ed25519_dalek::Signature;

pub struct FalEd25519 {
    keys: KeyCache,
    tolerance_secs: u64,
}

impl FalEd25519 {
    pub fn new(keys: KeyCache, tolerance_secs: u64) -> Self {
        Self { keys, tolerance_secs }
    }

    pub fn key_cache(&self) -> &KeyCache {
        &self.keys
    }
}

fn any_verifies(keys: &[ed25519_dalek::VerifyingKey], message: &[u8], signature: &Signature) -> bool {
    keys.iter()
        .any(|key| key.verify_strict(message, signature).is_ok())
}

#[async_trait::async_trait]
impl Scheme for FalEd25519 {
    fn name(&self) -> &'static str {
        "fal-ed25519"
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let fal = FalHeaders::read(request, self.tolerance_secs)?;
        let bytes = fal.signature_bytes(64)?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| Rejection::BadEncoding(super::fal_hmac::SIGNATURE))?;
        let message = fal.message.as_bytes();
        let accepted = || {
            Ok(Verified {
                delivery_id: Some(fal.request_id.to_string()),
            })
        };
        let Some(keys) = self.keys.keys().await else {
            return Err(Rejection::KeysUnavailable);
        };
        if any_verifies(&keys.keys, message, &signature) {
            return accepted();
        }
        // FAL may have rotated its keys: look once more (rate-limited).
        if let Some(fresh) = self.keys.refresh_after_failure(&keys).await
            && any_verifies(&fresh.keys, message, &signature)
        {
            return accepted();
        }
        Err(Rejection::NoMatchingSignature)
    }
}

/// Builds the scheme for a route (see [`super::SCHEMES`]): keys from the
/// route's JWKS URLs, cached under the data folder.
pub fn build(cx: &SchemeConfig<'_>) -> anyhow::Result<Box<dyn Scheme>> {
    let options: JwksOptions = cx.options()?;
    let keys = KeyCache::new(JwksSettings::from_options(&options, cx.data_dir));
    Ok(Box::new(FalEd25519::new(keys, cx.config.tolerance_secs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::fal_hmac::{REQUEST_ID, SIGNATURE, TIMESTAMP, USER_ID, canonical_message};
    use axum::http::{HeaderMap, HeaderValue};
    use ed25519_dalek::{Signer, SigningKey};
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000;

    fn scheme(keys: Vec<ed25519_dalek::VerifyingKey>) -> FalEd25519 {
        let settings = JwksSettings {
            urls: vec!["http://127.0.0.1:9/unreachable".into()],
            cache_file: std::env::temp_dir().join("webhook-host-test-never-written.json"),
            max_age: Duration::from_secs(86_400),
            refresh_after: Duration::from_secs(3_600),
            min_fetch_interval: Duration::from_secs(3_600),
            fetch_timeout: Duration::from_secs(1),
        };
        FalEd25519::new(KeyCache::with_keys(settings, keys), 300)
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
            scheme.key_cache().fetch_attempts(),
            0,
            "the rate limit holds back refreshes"
        );
    }
}
