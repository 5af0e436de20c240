//! `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`.
//!
//! GitHub signs no timestamp, so replays are stopped by de-duplication on
//! `X-GitHub-Delivery`, which is the delivery id.

use super::scheme::{
    Keys, NoOptions, Rejection, Request, Scheme, SchemeConfig, Verified, hmac_sha256, signature_matches,
};

pub const SIGNATURE: &str = "x-hub-signature-256";
pub const DELIVERY: &str = "x-github-delivery";

pub struct GitHub {
    keys: Keys,
}

impl GitHub {
    pub fn new(keys: Keys) -> Self {
        Self { keys }
    }
}

/// The header value GitHub would send for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &[body])))
}

#[async_trait::async_trait]
impl Scheme for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = request.header(SIGNATURE)?;
        let hex_sig = header
            .strip_prefix("sha256=")
            .ok_or(Rejection::BadEncoding(SIGNATURE))?;
        let signature = hex::decode(hex_sig).map_err(|_| Rejection::BadEncoding(SIGNATURE))?;
        let matches = self
            .keys
            .iter()
            .any(|key| signature_matches(&hmac_sha256(key.expose().as_bytes(), &[request.body]), &signature));
        if !matches {
            return Err(Rejection::NoMatchingSignature);
        }
        let delivery_id = request.optional_header(DELIVERY).map(str::to_string);
        Ok(Verified { delivery_id })
    }
}

/// Builds the scheme for a route (see [`super::SCHEMES`]).
pub fn build(cx: &SchemeConfig<'_>) -> anyhow::Result<Box<dyn Scheme>> {
    cx.options::<NoOptions>()?;
    Ok(Box::new(GitHub::new(cx.keys.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::{HeaderMap, HeaderValue};

    /// GitHub's published example.
    #[tokio::test]
    async fn the_published_vector_verifies() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), expected);
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, HeaderValue::from_static(expected));
        headers.insert(
            DELIVERY,
            HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        );
        let scheme = GitHub::new(vec![Secret::new("old"), Secret::new("It's a Secret to Everybody")].into());
        let request = Request::at(&headers, b"Hello, World!", 0);
        let verified = scheme.verify(&request).await.unwrap();
        assert_eq!(
            verified.delivery_id.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        let tampered = Request {
            body: b"Hello, World?",
            ..request
        };
        assert_eq!(
            scheme.verify(&tampered).await,
            Err(Rejection::NoMatchingSignature)
        );
    }

    #[tokio::test]
    async fn malformed_headers_are_bad_encoding() {
        let scheme = GitHub::new(vec![Secret::new("k")].into());
        for value in ["757107ea", "sha1=abcd", "sha256=zz"] {
            let mut headers = HeaderMap::new();
            headers.insert(SIGNATURE, HeaderValue::from_static(value));
            let request = Request::at(&headers, b"", 0);
            assert_eq!(
                scheme.verify(&request).await,
                Err(Rejection::BadEncoding(SIGNATURE)),
                "{value}"
            );
        }
    }
}
