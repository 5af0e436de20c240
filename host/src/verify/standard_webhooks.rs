//! `standard-webhooks`: the Standard Webhooks specification.
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds), and
//! `webhook-signature`: space-separated `v1,<base64>` (HMAC-SHA256) and/or
//! `v1a,<base64>` (Ed25519) entries; any one matching accepts, which is how
//! senders rotate keys. The signed content is `{id}.{timestamp}.{raw body}`.
//! Keys: `whsec_<base64>` secrets (the decoded bytes are the HMAC key) and
//! `whpk_<base64>` Ed25519 public keys; a route may list several of each.
//! The delivery id is `webhook-id`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};

use super::scheme::{
    Keys, NoOptions, Rejection, Request, Scheme, SchemeConfig, Verified, check_timestamp, hmac_sha256,
    signature_matches,
};
use anyhow::{Context, Result, bail};

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

pub struct StandardWebhooks {
    hmac_keys: Vec<Vec<u8>>,
    public_keys: Vec<VerifyingKey>,
    tolerance_secs: u64,
}

impl StandardWebhooks {
    /// Decodes the route's `whsec_`/`whpk_` keys; a malformed one is a start-up error.
    pub fn new(keys: &Keys, tolerance_secs: u64) -> Result<Self> {
        let mut hmac_keys = Vec::new();
        let mut public_keys = Vec::new();
        for key in keys.iter() {
            let key = key.expose().trim();
            if let Some(public) = key.strip_prefix("whpk_") {
                let bytes = STANDARD.decode(public).context("a whpk_ key is not base64")?;
                let bytes: [u8; 32] = bytes.try_into().ok().context("a whpk_ key is not 32 bytes")?;
                public_keys
                    .push(VerifyingKey::from_bytes(&bytes).context("a whpk_ key is not an Ed25519 key")?);
            } else {
                let encoded = key.strip_prefix("whsec_").unwrap_or(key);
                let bytes = STANDARD
                    .decode(encoded)
                    .context("a whsec_ secret is not base64")?;
                if bytes.is_empty() {
                    bail!("a whsec_ secret is empty");
                }
                hmac_keys.push(bytes);
            }
        }
        Ok(Self {
            hmac_keys,
            public_keys,
            tolerance_secs,
        })
    }
}

/// A `v1,<base64>` entry for `secret` (`whsec_…`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret))?;
    let t = timestamp.to_string();
    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

#[async_trait::async_trait]
impl Scheme for StandardWebhooks {
    fn name(&self) -> &'static str {
        "standard-webhooks"
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let id = request.header(ID)?;
        let timestamp = request.header(TIMESTAMP)?;
        let header = request.header(SIGNATURE)?;
        check_timestamp(timestamp, TIMESTAMP, request.now_unix, self.tolerance_secs)?;
        let content = [id.as_bytes(), b".", timestamp.as_bytes(), b".", request.body];
        let mut seen = false;
        for entry in header.split_whitespace() {
            let Some((version, encoded)) = entry.split_once(',') else {
                continue;
            };
            let Ok(signature) = STANDARD.decode(encoded) else {
                continue;
            };
            seen = true;
            let matched = match version {
                "v1" => self
                    .hmac_keys
                    .iter()
                    .any(|key| signature_matches(&hmac_sha256(key, &content), &signature)),
                "v1a" => match Signature::from_slice(&signature) {
                    Ok(signature) => {
                        let message = content.concat();
                        self.public_keys
                            .iter()
                            .any(|key| key.verify_strict(&message, &signature).is_ok())
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            if matched {
                return Ok(Verified {
                    delivery_id: Some(id.to_string()),
                });
            }
        }
        Err(if seen {
            Rejection::NoMatchingSignature
        } else {
            Rejection::BadEncoding(SIGNATURE)
        })
    }
}

/// Builds the scheme for a route (see [`super::SCHEMES`]).
pub fn build(cx: &SchemeConfig<'_>) -> anyhow::Result<Box<dyn Scheme>> {
    cx.options::<NoOptions>()?;
    Ok(Box::new(StandardWebhooks::new(
        &cx.keys,
        cx.config.tolerance_secs,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::{HeaderMap, HeaderValue};
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
        let keys: Keys = keys.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>().into();
        let scheme = StandardWebhooks::new(&keys, 300).unwrap();
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
