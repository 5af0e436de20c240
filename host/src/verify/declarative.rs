//! The engine that runs a [`Preset`]: the signed message assembled from its
//! parts, the MAC computed with each of the route's keys, and compared in
//! constant time with what the sender wrote; the timestamp and the delivery
//! id where the preset names them.

use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

use super::preset::{Algorithm, Encoding, KeyEncoding, Part, Preset};
use super::scheme::{Rejection, Request, Scheme, Verified, check_timestamp, signature_matches};
use crate::config::Secret;

/// A preset with a route's keys.
pub struct Declarative {
    preset: Arc<Preset>,
    /// The signed message's parts, header names ready for rejections.
    parts: Vec<Built>,
    /// The keys' bytes, decoded as the preset says.
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
    /// Header names as `&'static str` for rejections that name them.
    signature_header: &'static str,
    timestamp_header: Option<&'static str>,
}

/// A message part as the engine uses it.
enum Built {
    Body,
    Timestamp,
    Literal(Vec<u8>),
    Header(&'static str),
}

/// A header name that lives as long as the process: a rejection names its
/// header. Made when a route is built (at start, or when a plugin declaring
/// it is deployed), never per request.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_ascii_lowercase().into_boxed_str())
}

impl Declarative {
    pub fn new(preset: Arc<Preset>, keys: &[Secret], tolerance_secs: u64) -> Result<Self> {
        let keys = keys
            .iter()
            .map(|key| decode_key(preset.signature.key, key.expose()))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("provider {}", preset.name))?;
        let parts = preset
            .signature
            .message
            .iter()
            .map(|part| match part {
                Part::Body => Built::Body,
                Part::Timestamp => Built::Timestamp,
                Part::Literal(text) => Built::Literal(text.as_bytes().to_vec()),
                Part::Header(name) => Built::Header(leak(name)),
            })
            .collect();
        Ok(Self {
            parts,
            signature_header: leak(&preset.signature.header),
            timestamp_header: preset.timestamp.as_ref().map(|t| leak(&t.header)),
            preset,
            keys,
            tolerance_secs,
        })
    }

    /// The message the preset signs, from `request` (and the timestamp as sent).
    fn message(&self, request: &Request<'_>, timestamp: Option<&str>) -> Result<Vec<u8>, Rejection> {
        let mut message = Vec::with_capacity(request.body.len() + 64);
        for part in &self.parts {
            match part {
                Built::Body => message.extend_from_slice(request.body),
                Built::Timestamp => {
                    let timestamp = timestamp.ok_or(Rejection::BadEncoding(self.signature_header))?;
                    message.extend_from_slice(timestamp.as_bytes());
                }
                Built::Literal(bytes) => message.extend_from_slice(bytes),
                Built::Header(name) => {
                    let value = request.headers.get(*name).ok_or(Rejection::MissingHeader(name))?;
                    message.extend_from_slice(value.as_bytes());
                }
            }
        }
        Ok(message)
    }

    /// The HMAC of `message` under `key`, by the preset's hash.
    fn mac(&self, key: &[u8], message: &[u8]) -> Vec<u8> {
        if self.preset.signature.algorithm == Algorithm::HmacSha512 {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        } else {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn decode_key(encoding: KeyEncoding, text: &str) -> Result<Vec<u8>> {
    Ok(match encoding {
        KeyEncoding::Raw => text.as_bytes().to_vec(),
        KeyEncoding::Hex => hex::decode(text.trim()).context("the key is not hex")?,
        KeyEncoding::Base64 => STANDARD.decode(text.trim()).context("the key is not base64")?,
    })
}

#[async_trait::async_trait]
impl Scheme for Declarative {
    fn name(&self) -> &'static str {
        "provider"
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let header = self.signature_header;
        let written = request.header(header)?.trim();
        let signature = &self.preset.signature;
        // The signatures as written, and the timestamp as sent.
        let (encoded, timestamp): (Vec<&str>, Option<&str>) = match &signature.list {
            None => {
                let one = written
                    .strip_prefix(signature.prefix.as_str())
                    .ok_or(Rejection::BadEncoding(header))?;
                let timestamp = match self.timestamp_header {
                    Some(name) => Some(request.header(name)?),
                    None => None,
                };
                (vec![one], timestamp)
            }
            Some(list) => {
                let entries: Vec<(&str, &str)> = written
                    .split(list.separator.as_str())
                    .filter_map(|entry| entry.split_once('='))
                    .map(|(key, value)| (key.trim(), value.trim()))
                    .collect();
                let signatures: Vec<&str> = entries
                    .iter()
                    .filter(|(key, _)| *key == list.signature)
                    .map(|(_, value)| *value)
                    .collect();
                if signatures.is_empty() {
                    return Err(Rejection::BadEncoding(header));
                }
                let timestamp = match &list.timestamp {
                    Some(key) => Some(
                        entries
                            .iter()
                            .find(|(k, _)| k == key)
                            .map(|(_, value)| *value)
                            .ok_or(Rejection::BadEncoding(header))?,
                    ),
                    None => None,
                };
                (signatures, timestamp)
            }
        };
        if let Some(sent) = timestamp {
            let source = self.timestamp_header.unwrap_or(header);
            check_timestamp(sent, source, request.now_unix, self.tolerance_secs)?;
        }
        let mut given = Vec::with_capacity(encoded.len());
        for text in encoded {
            given.push(match (signature.algorithm, signature.encoding) {
                (Algorithm::Token, _) => text.as_bytes().to_vec(),
                (_, Encoding::Hex) => hex::decode(text).map_err(|_| Rejection::BadEncoding(header))?,
                (_, Encoding::Base64) => STANDARD
                    .decode(text)
                    .map_err(|_| Rejection::BadEncoding(header))?,
            });
        }
        let matches = match signature.algorithm {
            // A token is compared as sent: no message is signed.
            Algorithm::Token => self
                .keys
                .iter()
                .any(|key| given.iter().any(|g| signature_matches(key, g))),
            Algorithm::HmacSha256 | Algorithm::HmacSha512 => {
                let message = self.message(request, timestamp)?;
                self.keys.iter().any(|key| {
                    let expected = self.mac(key, &message);
                    given.iter().any(|g| signature_matches(&expected, g))
                })
            }
        };
        if !matches {
            return Err(Rejection::NoMatchingSignature);
        }
        let delivery_id = self
            .preset
            .delivery_id
            .as_ref()
            .and_then(|d| request.optional_header(&d.header))
            .map(str::to_string);
        Ok(Verified { delivery_id })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::verify::catalogue;

    fn scheme(provider: &str, key: &str) -> Declarative {
        let preset = catalogue::builtin(provider).unwrap();
        Declarative::new(preset, &[Secret::new("another key"), Secret::new(key)], 300).unwrap()
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
}
