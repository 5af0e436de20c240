//! The presets' tests: published examples reproduced exactly, deliveries
//! signed independently (Python's hmac) with fixed keys, and each preset's
//! refusals.

use axum::http::{HeaderMap, HeaderValue};

use super::*;
use crate::verify::catalogue;
use base64::engine::general_purpose::STANDARD;

fn scheme(provider: &str, key: &str) -> Declarative {
    let preset = catalogue::builtin(provider).unwrap();
    Declarative::new(preset, &[Secret::new("another key"), Secret::new(key)], 300, None).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

/// Slack's worked example ("Verifying requests from Slack"), exactly.
pub(crate) const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

#[tokio::test]
async fn slacks_published_example_verifies_and_a_changed_one_does_not() {
    let slack = scheme("slack", "8f742231b10e8888abcd99yyyzzz85a5");
    let sent = headers(&[
        ("x-slack-request-timestamp", "1531420618"),
        (
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    let at = |now| Request::at(&sent, SLACK_BODY.as_bytes(), now);
    assert!(slack.verify(&at(1_531_420_618)).await.is_ok());
    let changed = SLACK_BODY.replace("foobar", "foobaz");
    assert_eq!(
        slack
            .verify(&Request::at(&sent, changed.as_bytes(), 1_531_420_618))
            .await,
        Err(Rejection::NoMatchingSignature)
    );
    assert_eq!(
        slack.verify(&at(1_531_420_618 + 301)).await,
        Err(Rejection::TimestampOutOfRange { tolerance_secs: 300 })
    );
    let unprefixed = headers(&[
        ("x-slack-request-timestamp", "1531420618"),
        (
            "x-slack-signature",
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    assert_eq!(
        slack
            .verify(&Request::at(&unprefixed, SLACK_BODY.as_bytes(), 1_531_420_618))
            .await,
        Err(Rejection::BadEncoding("x-slack-signature"))
    );
}

/// GitHub's worked example ("Validating webhook deliveries"), exactly.
#[tokio::test]
async fn githubs_published_example_verifies_and_gives_the_delivery() {
    let github = scheme("github", "It's a Secret to Everybody");
    let sent = headers(&[
        (
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let verified = github
        .verify(&Request::at(&sent, b"Hello, World!", 0))
        .await
        .unwrap();
    assert_eq!(
        verified.delivery_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        github.verify(&Request::at(&sent, b"Hello, World?", 0)).await,
        Err(Rejection::NoMatchingSignature)
    );
    assert_eq!(
        github
            .verify(&Request::at(&HeaderMap::new(), b"Hello, World!", 0))
            .await,
        Err(Rejection::MissingHeader("x-hub-signature-256"))
    );
}

/// Shopify: base64 HMAC-SHA256 of the body (no published example; the
/// signature here is made independently with Python's hmac module).
#[tokio::test]
async fn shopify_signs_the_body_in_base64() {
    let shopify = scheme("shopify", "shpss_test");
    let body = br#"{"id":820982911946154508}"#;
    let sent = headers(&[
        (
            "x-shopify-hmac-sha256",
            "3JxXO8Lul52iD5+qb1FHtoXK8vDwPbXpi8eB+yETk5I=",
        ),
        ("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
    ]);
    let verified = shopify.verify(&Request::at(&sent, body, 0)).await;
    assert_eq!(
        verified.map(|v| v.delivery_id),
        Ok(Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into()))
    );
}

#[tokio::test]
async fn gitlab_compares_its_token() {
    let gitlab = scheme("gitlab", "my-gitlab-token");
    let right = headers(&[("x-gitlab-token", "my-gitlab-token")]);
    let wrong = headers(&[("x-gitlab-token", "my-gitlab-tokem")]);
    assert!(gitlab.verify(&Request::at(&right, b"{}", 0)).await.is_ok());
    assert_eq!(
        gitlab.verify(&Request::at(&wrong, b"{}", 0)).await,
        Err(Rejection::NoMatchingSignature)
    );
}

/// Coinbase Commerce's example from its official SDKs' tests, exactly.
const COINBASE_PAYLOAD: &str = r#"{"id":1,"scheduled_for":"2017-01-31T20:50:02Z","attempt_number":1,"event":{"id":"24934862-d980-46cb-9402-43c81b0cdba6","type":"charge:created","api_version":"2018-03-22","created_at":"2017-01-31T20:49:02Z","data":{"code":"66BEOV2A","name":"The Sovereign Individual","description":"Mastering the Transition to the Information Age","hosted_url":"https://commerce.coinbase.com/charges/66BEOV2A","created_at":"2017-01-31T20:49:02Z","expires_at":"2017-01-31T21:04:02Z","timeline":[{"time":"2017-01-31T20:49:02Z","status":"NEW"}],"metadata":{},"pricing_type":"no_price","payments":[],"addresses":{"bitcoin":"0000000000000000000000000000000000","ethereum":"0x0000000000000000000000000000000000000000","litecoin":"3000000000000000000000000000000000","bitcoincash":"bitcoincash:000000000000000000000000000000000000000000"}}}}"#;

#[tokio::test]
async fn coinbase_commerces_published_example_verifies() {
    let coinbase = scheme("coinbase-commerce", "30291a20-0bd1-4267-9b0f-e6e7b123c0bf");
    let sent = headers(&[(
        "x-cc-webhook-signature",
        "8be7742c7d372f08a6a3224edadf18a22b65fa9e28f3f2de97376cdaa092590d",
    )]);
    let body = COINBASE_PAYLOAD.as_bytes();
    assert!(coinbase.verify(&Request::at(&sent, body, 0)).await.is_ok());
    let changed = COINBASE_PAYLOAD.replace("NEW", "PAID");
    assert_eq!(
        coinbase.verify(&Request::at(&sent, changed.as_bytes(), 0)).await,
        Err(Rejection::NoMatchingSignature)
    );
}

/// Presets without a published example: deliveries signed independently
/// (Python's hmac) with fixed keys; each accepted, and refused once its
/// body changes.
#[tokio::test]
async fn presets_accept_independently_signed_deliveries_and_refuse_changed_ones() {
    let body = br#"{"event":"test","n":1}"#;
    for (provider, key, sent) in [
        (
            "dropbox",
            "dropbox-app-secret",
            headers(&[(
                "x-dropbox-signature",
                "4733eaf2524fd0a41f7c3fd578e12a543402ddfb7621ae1d0568ab368ce2b513",
            )]),
        ),
        (
            "typeform",
            "typeform-secret",
            headers(&[(
                "typeform-signature",
                "sha256=ztDjqZV3CGVQa5QxkOewvSRLOMXpbwARFvrEOoR+wWg=",
            )]),
        ),
        (
            "bitbucket",
            "bitbucket-secret",
            headers(&[
                (
                    "x-hub-signature",
                    "sha256=d805895a829bf801e69519bb3899c734c4f5c62ed483d39c3201e0512cbfe7b0",
                ),
                ("x-request-uuid", "5d2b1f0e-bitbucket"),
            ]),
        ),
        (
            "zoom",
            "zoom-secret-token",
            headers(&[
                (
                    "x-zm-signature",
                    "v0=5b1ed38c7acf7980c18ea388288a9fde75b5656a45253b0251b6bb10bfd81cea",
                ),
                ("x-zm-request-timestamp", "1700000000"),
            ]),
        ),
    ] {
        let preset = scheme(provider, key);
        assert!(
            preset.verify(&Request::at(&sent, body, 0)).await.is_ok(),
            "{provider}"
        );
        assert_eq!(
            preset
                .verify(&Request::at(&sent, br#"{"event":"test","n":2}"#, 0))
                .await,
            Err(Rejection::NoMatchingSignature),
            "{provider}"
        );
    }
}

/// Mux's example from its official Elixir SDK (`Mux.Webhooks.TestUtils`),
/// exactly; then the list's rules: any v1 entry may match, the
/// timestamp is checked, an entry list without a signature is refused.
#[tokio::test]
async fn muxs_published_example_verifies_as_a_list() {
    let mux = scheme("mux", "SuperSecret123");
    let signed = "t=1591664030,v1=e43496b6aae982c4c2fd6f8e92935f1d90216f1f64d56024e72390acfb988272";
    let sent = headers(&[("mux-signature", signed)]);
    assert!(
        mux.verify(&Request::at(&sent, b"payload", 1_591_664_030))
            .await
            .is_ok()
    );
    let rotated = headers(&[(
        "mux-signature",
        "t=1591664030, v1=00ff, v1=e43496b6aae982c4c2fd6f8e92935f1d90216f1f64d56024e72390acfb988272",
    )]);
    assert!(
        mux.verify(&Request::at(&rotated, b"payload", 1_591_664_030))
            .await
            .is_ok()
    );
    assert_eq!(
        mux.verify(&Request::at(&sent, b"payload", 1_591_664_030 + 301))
            .await,
        Err(Rejection::TimestampOutOfRange { tolerance_secs: 300 })
    );
    assert_eq!(
        mux.verify(&Request::at(&sent, b"payloaf", 1_591_664_030)).await,
        Err(Rejection::NoMatchingSignature)
    );
    for broken in ["t=1591664030", "v1=e43496b6", "t=1591664030,v1=zz"] {
        let sent = headers(&[("mux-signature", broken)]);
        assert_eq!(
            mux.verify(&Request::at(&sent, b"payload", 1_591_664_030)).await,
            Err(Rejection::BadEncoding("mux-signature")),
            "{broken}"
        );
    }
}

/// Lists with other separators and keys, signed independently.
#[tokio::test]
async fn calendly_and_paddle_sign_their_listed_timestamp() {
    let body = br#"{"event":"test","n":1}"#;
    for (provider, key, header, value) in [
        (
            "calendly",
            "calendly-signing-key",
            "calendly-webhook-signature",
            "t=1700000000,v1=b4d965b3b27099f692dbb455077e132679ce0afdab398e8b992465e4280b2f85",
        ),
        (
            "paddle",
            "pdl_ntfset_test_key",
            "paddle-signature",
            "ts=1700000000;h1=ec907a9dcbdb887e1f81c0cde973d4f0c85b5cca4746310931f8e7a046f12480",
        ),
    ] {
        let preset = scheme(provider, key);
        let sent = headers(&[(header, value)]);
        assert!(
            preset
                .verify(&Request::at(&sent, body, 1_700_000_000))
                .await
                .is_ok(),
            "{provider}"
        );
        let replayed = value.replace("1700000000", "1700000001");
        let replayed = headers(&[(header, replayed.as_str())]);
        assert_eq!(
            preset.verify(&Request::at(&replayed, body, 1_700_000_000)).await,
            Err(Rejection::NoMatchingSignature),
            "{provider}: the timestamp is signed"
        );
    }
}

/// Every preset, signed as its provider would with a fixed key: accepted
/// (with its delivery id where it names one); refused with a wrong key, a
/// changed body (where the body is signed), a stale timestamp (where one is
/// checked), and without its signature.
#[tokio::test]
async fn every_preset_accepts_its_signed_delivery_and_refuses_changed_ones() {
    use crate::verify::preset::Part;
    use crate::verify::preset_sign::{Delivery, sign};
    const NOW: i64 = 1_700_000_000;
    let body = br#"{"id":"evt_1","event_id":"evt_1","value":[{"id":"n1"}],"data":{"n":1}}"#;
    for preset in catalogue::all_builtin() {
        let name = preset.name.as_str();
        let (signing, verifying) = crate::verify::preset_sign::fixed_test_keys(preset);
        let url = format!("https://hooks.example.com/hooks/{name}");
        let build = |keys: &[String]| {
            if preset.signature.key == crate::verify::preset::KeyEncoding::Jwks {
                let public = keys
                    .iter()
                    .map(|k| {
                        let bytes: [u8; 32] = hex::decode(k).unwrap().try_into().unwrap();
                        ed25519_dalek::VerifyingKey::from_bytes(&bytes).unwrap()
                    })
                    .collect();
                let cache = crate::verify::jwks::KeyCache::offline(public);
                return Declarative::with_key_cache(preset.clone(), cache, 300).unwrap();
            }
            if preset.signature.key == crate::verify::preset::KeyEncoding::Certificate {
                // The route names no key: the request names its certificate
                // (here: the last of `keys`, at the test URL).
                let url = crate::verify::preset_sign::TEST_CERTIFICATE_URL;
                let certificates: Vec<(&str, &str)> =
                    keys.last().map(|k| (url, k.as_str())).into_iter().collect();
                let policy = crate::verify::declarative::certificate_policy(preset);
                let cache = crate::verify::certs::CertCache::offline(policy, &certificates).unwrap();
                return Declarative::with_certificates(preset.clone(), cache, 300, None).unwrap();
            }
            let keys: Vec<Secret> = keys.iter().map(Secret::new).collect();
            Declarative::new(preset.clone(), &keys, 300, Some(&url))
                .unwrap_or_else(|e| panic!("{name}: {e:#}"))
        };
        let scheme = build(&[test_keys_of_another(preset), verifying.clone()]);
        let delivery = |now_unix, body: &'static [u8]| Delivery {
            body,
            content_type: "application/json",
            url: Some(&url),
            query: "",
            certificate_url: Some(crate::verify::preset_sign::TEST_CERTIFICATE_URL),
            delivery_id: "dlv-1",
            now_unix,
        };
        let signed = sign(preset, &signing, &delivery(NOW, body)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let request = |s: &'static crate::verify::preset_sign::Signed| {
            Request::at(&s.headers, &s.body, NOW).with_target("POST", &s.query)
        };
        let signed: &'static _ = Box::leak(Box::new(signed));
        let verified = scheme
            .verify(&request(signed))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if preset.delivery_id.is_some() {
            assert!(verified.delivery_id.is_some(), "{name}: no delivery id");
        }

        let wrong = build(&[test_keys_of_another(preset)]);
        assert_eq!(
            wrong.verify(&request(signed)).await,
            Err(Rejection::NoMatchingSignature),
            "{name}: wrong key"
        );

        let signs_body = preset.signature.message.contains(&Part::Body) || preset.body_hash.is_some();
        if signs_body && preset.signature.algorithm.signs() {
            let mut changed = signed.clone();
            changed.body = String::from_utf8(changed.body)
                .unwrap()
                .replace(r#""n":1"#, r#""n":2"#)
                .into_bytes();
            assert_ne!(changed.body, signed.body, "{name}");
            let changed: &'static _ = Box::leak(Box::new(changed));
            assert_eq!(
                scheme.verify(&request(changed)).await,
                Err(Rejection::NoMatchingSignature),
                "{name}: changed body"
            );
        }

        if preset
            .timestamp
            .as_ref()
            .map_or(preset.listed_timestamp(), |t| t.checked)
        {
            let stale = sign(preset, &signing, &delivery(NOW - 301, body)).unwrap();
            let stale: &'static _ = Box::leak(Box::new(stale));
            assert_eq!(
                scheme.verify(&request(stale)).await,
                Err(Rejection::TimestampOutOfRange { tolerance_secs: 300 }),
                "{name}: stale"
            );
        }

        if let Some(header) = &preset.signature.header {
            let mut unsigned = signed.clone();
            unsigned.headers.remove(header.as_str());
            let unsigned: &'static _ = Box::leak(Box::new(unsigned));
            assert_eq!(
                scheme.verify(&request(unsigned)).await.map_err(|r| r.code()),
                Err("missing_header"),
                "{name}: unsigned"
            );
        }
    }
}

/// A key of the right kind that is not the test key.
fn test_keys_of_another(preset: &crate::verify::preset::Preset) -> String {
    use crate::verify::keys::SigningKey;
    use crate::verify::preset::KeyEncoding;
    let signature = &preset.signature;
    if signature.key == KeyEncoding::Certificate {
        return OTHER_RSA_CERTIFICATE.to_string();
    }
    if signature.key == KeyEncoding::Jwk {
        // SendGrid's SDK tests' other key, as a JWK.
        return r#"{"kty":"EC","crv":"P-256","x":"qTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhU","y":"0iQlh8PERJ7ZaO2jQ7Yb4_suxo1LhQ2_0dTRntTj86Q"}"#.into();
    }
    match signature.algorithm {
        Algorithm::Ed25519 => SigningKey::new(Algorithm::Ed25519, signature.key, &"11".repeat(32))
            .unwrap()
            .public_key()
            .unwrap(),
        // SendGrid's SDK tests' other key.
        Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP256Sha256Fixed => "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==".into(),
        _ => match signature.key {
            KeyEncoding::Hex => hex::encode(b"another"),
            KeyEncoding::Base64 => STANDARD.encode(b"another"),
            KeyEncoding::Whsec => format!("whsec_{}", STANDARD.encode(b"another")),
            _ => "another:secret".into(),
        },
    }
}

/// A self-signed certificate of another RSA key (made for these tests).
const OTHER_RSA_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIDJzCCAg+gAwIBAgIUeBt+WvAPRwTMOdlXrxgRYGs+4DIwDQYJKoZIhvcNAQEL\nBQAwIjEgMB4GA1UEAwwXb3RoZXIudGVzdC53ZWJob29rLWhvc3QwIBcNMjYxMjAy\nMDEzNTA1WhgPMjEyNjExMDgwMTM1MDVaMCIxIDAeBgNVBAMMF290aGVyLnRlc3Qu\nd2ViaG9vay1ob3N0MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3KW+\nff5zHXKbbpjRz2OY+Oe0lYTlYuSjA6L1G+fCTldDWBZKLjDyvsdZNhStgp62/RZd\nf7U0Dc/AVHfc1fLNMF2n7R6cqWtuGI6c1j+TgGMZ2IqeaaNf1vmM6E4CMD6eKyl1\nywkEm/VFlO0mqqcPj43DK3CWcL7Hvnta53QodyWI9zO622pFbmXI2q+DBOB9KknY\n88d9yE4GBQEGVD7Htp5BHiJmmu53lyY2xUOtKFygH6fGOCCniHWmzMmN/+KXw30v\nDwInTawynWlcNpMzYShKpzF48keiQ5WBxvnnCohY9lUj7yLT/OF8p98Uqk6myWS1\nRxxs0NxALfTu0TLPkwIDAQABo1MwUTAdBgNVHQ4EFgQUufgXr44/ni2o7biQHNO6\nmG8uvLAwHwYDVR0jBBgwFoAUufgXr44/ni2o7biQHNO6mG8uvLAwDwYDVR0TAQH/\nBAUwAwEB/zANBgkqhkiG9w0BAQsFAAOCAQEAL1PFqWFdqF4cAjZzfWMrSQL39RGP\npRhS3ySYu7b7g0UMx4dyMy8bJ9iOA8PN3MdJ14+YxIcsqylQESf1inoaIiuA6QSP\npRZKECucxBQnqdiLbiksGFJFKobB6VQ4BHVm2lMiJznHagGbQHs5bpQyRQ5WT00u\nFI25l3XCWxvL1iQBCKOBNbyVWGYYOqv/De42AJAgpCEXGntR3GwumGzQSs146Gsu\nS6KJ4j7crI0L/MCSd+PsWOly2XtnlXSiaaqZztSnXsYmcLz5kerm60pXaCg7CIa8\n7Toq0vZcyUOze+EIw2Ax2wgkvj38B6mZeRtyikyae2N+QKnTYVXmjOBWkw==\n-----END CERTIFICATE-----";
