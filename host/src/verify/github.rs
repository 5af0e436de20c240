//! `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`,
//! run by the declarative engine as the `github` preset
//! (`host/providers/github.toml`).
//!
//! GitHub signs no timestamp, so replays are stopped by de-duplication on
//! `X-GitHub-Delivery`, which is the delivery id.

use super::scheme::hmac_sha256;

pub const SIGNATURE: &str = "x-hub-signature-256";
pub const DELIVERY: &str = "x-github-delivery";

/// The header value GitHub would send for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &[body])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Rejection, Request, Scheme};
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
        let scheme = super::super::preset_scheme("github", &["old", "It's a Secret to Everybody"], 300);
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
        let scheme = super::super::preset_scheme("github", &["k"], 300);
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
