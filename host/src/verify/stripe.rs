//! `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, run by the
//! declarative engine as the `stripe` preset (`host/providers/stripe.toml`).
//!
//! The signed content is `{t}.{raw body}`, HMAC-SHA256 keyed by the whole
//! `whsec_…` string as bytes (not decoded). Only `v1` entries count; several
//! may be present while Stripe rolls a secret. The delivery id is the event's
//! `id` from the JSON body.

use super::scheme::hmac_sha256;

pub const SIGNATURE: &str = "stripe-signature";

/// The header value Stripe would send.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Rejection, Request, Scheme, Verified};
    use axum::http::{HeaderMap, HeaderValue};

    const SECRET: &str = "whsec_test_secret_for_stripe";
    const BODY: &[u8] = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event"}"#;
    const NOW: i64 = 1_700_000_000;

    async fn check(header: &str, now: i64) -> Result<Verified, Rejection> {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, HeaderValue::from_str(header).unwrap());
        let scheme = super::super::preset_scheme("stripe", &[SECRET], 300);
        scheme.verify(&Request::at(&headers, BODY, now)).await
    }

    #[tokio::test]
    async fn a_signed_event_verifies_and_gives_its_id() {
        let header = sign(SECRET, NOW, BODY);
        let verified = check(&header, NOW + 10).await.unwrap();
        assert_eq!(
            verified.delivery_id.as_deref(),
            Some("evt_1NG8Du2eZvKYlo2CUI79vXWy")
        );
    }

    #[tokio::test]
    async fn any_v1_entry_may_match_and_v0_is_ignored() {
        let good = sign(SECRET, NOW, BODY);
        let good_sig = good.split("v1=").nth(1).unwrap();
        let header = format!(
            "t={NOW},v0={},v1={},v1={good_sig}",
            "00".repeat(32),
            "11".repeat(32)
        );
        assert!(check(&header, NOW).await.is_ok());
        let only_v0 = format!("t={NOW},v0={good_sig}");
        assert_eq!(check(&only_v0, NOW).await, Err(Rejection::BadEncoding(SIGNATURE)));
    }

    #[tokio::test]
    async fn stale_wrong_and_malformed_headers_are_refused() {
        let header = sign(SECRET, NOW, BODY);
        let out = Rejection::TimestampOutOfRange { tolerance_secs: 300 };
        assert_eq!(check(&header, NOW + 301).await, Err(out));
        assert_eq!(
            check(&sign("whsec_other", NOW, BODY), NOW).await,
            Err(Rejection::NoMatchingSignature)
        );
        for bad in [
            "garbage",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,t=2,v1=00",
            "t=1,v1=zz",
        ] {
            assert!(
                matches!(check(bad, NOW).await, Err(Rejection::BadEncoding(_))),
                "{bad}"
            );
        }
    }
}
