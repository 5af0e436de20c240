//! `webhook-host verify --explain`: takes a captured request and says why a
//! preset refuses it — a missing header, a wrong encoding, clock skew, a
//! body re-serialised on the way, a public URL that is not the one the
//! provider signed, a key written in another encoding, or simply another
//! key. It tries the likely variants and names the one that verifies; it
//! never prints a key or an expected signature.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::declarative::Declarative;
use super::preset::{Encoding, KeyEncoding, Preset};
use super::scheme::{Rejection, Request, Scheme};
use crate::config::Secret;

/// A request as captured (raw HTTP/1.1: request line, headers, blank line, body).
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let (head, body) = match find(raw, b"\r\n\r\n") {
            Some(at) => (&raw[..at], &raw[at + 4..]),
            None => match find(raw, b"\n\n") {
                Some(at) => (&raw[..at], &raw[at + 2..]),
                None => (raw, &raw[raw.len()..]),
            },
        };
        let head = std::str::from_utf8(head).context("the request's head is not text")?;
        let mut lines = head.lines();
        let first = lines.next().context("the capture is empty")?;
        let mut words = first.split_whitespace();
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            bail!("the first line is not `METHOD /path HTTP/1.1`: {first:?}");
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = HeaderMap::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("not a header line: {line:?}"))?;
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| format!("header {name:?}"))?,
                HeaderValue::from_str(value.trim()).with_context(|| format!("header {name:?}"))?,
            );
        }
        Ok(Self {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: body.to_vec(),
        })
    }

    fn request(&self, now: i64) -> Request<'_> {
        Request::at(&self.headers, &self.body, now).with_target(&self.method, &self.query)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the route knows: its preset, keys, tolerance and public URL.
pub struct Setup<'a> {
    pub preset: Arc<Preset>,
    pub keys: &'a [Secret],
    pub tolerance_secs: u64,
    pub public_url: Option<&'a str>,
}

impl Setup<'_> {
    fn scheme(&self, preset: Arc<Preset>, url: Option<&str>, tolerance: u64) -> Result<Declarative> {
        Declarative::new(preset, self.keys, tolerance, url)
    }
}

/// Why `captured` does (or does not) verify, in sentences.
pub async fn explain(setup: &Setup<'_>, captured: &Captured, now: i64) -> Result<Vec<String>> {
    let name = setup.preset.name.clone();
    let mut out = Vec::new();
    let public_url = match (setup.public_url, setup.preset.signs_url()) {
        (Some(url), _) => Some(url.to_string()),
        (None, false) => None,
        (None, true) => {
            out.push(format!(
                "{name} signs the URL it calls, and no public_url is given: trying the URL the request names"
            ));
            url_candidates(captured).into_iter().next()
        }
    };
    let scheme = setup.scheme(setup.preset.clone(), public_url.as_deref(), setup.tolerance_secs)?;
    let rejection = match scheme.verify(&captured.request(now)).await {
        Ok(verified) => {
            out.push(format!(
                "verified: the signature matches a key of the route (delivery id: {})",
                verified.delivery_id.as_deref().unwrap_or("none")
            ));
            return Ok(out);
        }
        Err(rejection) => rejection,
    };
    out.push(format!("refused: {} ({rejection})", rejection.code()));
    let verifies = |scheme: &Declarative, request: Request<'_>| {
        futures_util::FutureExt::now_or_never(scheme.verify(&request)).is_some_and(|r| r.is_ok())
    };
    match rejection {
        Rejection::MissingHeader(what) | Rejection::MissingField(what) => out.push(format!(
            "the request has no {what}: it was not sent by {name}, or a proxy dropped it on the way"
        )),
        Rejection::TimestampOutOfRange { tolerance_secs } => {
            let unbounded = setup.scheme(setup.preset.clone(), public_url.as_deref(), u64::MAX)?;
            if verifies(&unbounded, captured.request(now)) {
                out.push(format!(
                    "the signature is right, but its timestamp is more than {tolerance_secs} s from this clock: \
                     clock skew between the sender and this host, a delayed retry, or a replay"
                ));
            } else {
                out.push("the timestamp is out of range, and the signature does not match either".into());
            }
        }
        Rejection::BadEncoding(what) => {
            out.push(format!(
                "{what} is not written as {name} writes it (prefix {:?}, {:?})",
                setup.preset.signature.prefix, setup.preset.signature.encoding
            ));
            for encoding in [Encoding::Hex, Encoding::Base64, Encoding::Base64url] {
                let mut other = (*setup.preset).clone();
                other.signature.encoding = encoding;
                if let Ok(scheme) = setup.scheme(Arc::new(other), public_url.as_deref(), setup.tolerance_secs)
                    && verifies(&scheme, captured.request(now))
                {
                    out.push(format!(
                        "it verifies read as {encoding:?}: the signature's encoding differs"
                    ));
                }
            }
        }
        Rejection::KeysUnavailable | Rejection::KeysRefreshing { .. } => {
            out.push("the keys to check it could not be fetched now; the sender is told to retry".into())
        }
        Rejection::PluginRejected(_) | Rejection::VerifierFailed(_) => {
            out.push("a verifier plugin decided; presets explain only their own schemes".into())
        }
        Rejection::NoMatchingSignature => {
            out.extend(no_match(setup, &scheme, captured, public_url.as_deref(), now)?);
        }
    }
    Ok(out)
}

/// The likely reasons a well-formed signature does not match.
fn no_match(
    setup: &Setup<'_>,
    scheme: &Declarative,
    captured: &Captured,
    public_url: Option<&str>,
    now: i64,
) -> Result<Vec<String>> {
    let verifies = |scheme: &Declarative, request: Request<'_>| {
        futures_util::FutureExt::now_or_never(scheme.verify(&request)).is_some_and(|r| r.is_ok())
    };
    let mut out = Vec::new();
    for (how, body) in body_variants(&captured.body) {
        let changed = Captured {
            body,
            ..captured.clone()
        };
        if verifies(scheme, changed.request(now)) {
            out.push(format!(
                "the body changed on the way: the signature matches it {how}. Verify the raw bytes as received, \
                 before any middleware parses or rewrites them"
            ));
            return Ok(out);
        }
    }
    if setup.preset.signs_url() {
        for url in url_candidates(captured) {
            if Some(url.as_str()) == public_url {
                continue;
            }
            if let Ok(other) = setup.scheme(setup.preset.clone(), Some(&url), setup.tolerance_secs)
                && verifies(&other, captured.request(now))
            {
                out.push(format!(
                    "the provider signed the URL {url}, not {}: behind a proxy, set the route's public_url to the URL \
                     given to the provider",
                    public_url.unwrap_or("(none)")
                ));
                return Ok(out);
            }
        }
    }
    for key in [
        KeyEncoding::Raw,
        KeyEncoding::Hex,
        KeyEncoding::Base64,
        KeyEncoding::Whsec,
    ] {
        if key == setup.preset.signature.key {
            continue;
        }
        let mut other = (*setup.preset).clone();
        other.signature.key = key;
        if let Ok(scheme) = setup.scheme(Arc::new(other), public_url, setup.tolerance_secs)
            && verifies(&scheme, captured.request(now))
        {
            out.push(format!(
                "the signature matches the key read as {key:?}, but {} reads it as {:?}: the secret is written in \
                 another encoding",
                setup.preset.name, setup.preset.signature.key
            ));
            return Ok(out);
        }
    }
    out.push(format!(
        "no key of the route ({} given) signed this request: a wrong or rotated key, or a body or URL changed in a \
         way not recognised here",
        setup.keys.len()
    ));
    Ok(out)
}

/// The body as a sender may have written it before a proxy or framework
/// changed it: JSON re-serialised compact, pretty or with spaces, a
/// trailing newline added or dropped, line ends changed.
fn body_variants(body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut variants = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let compact = serde_json::to_vec(&value).unwrap_or_default();
        let spaced = String::from_utf8_lossy(&compact)
            .replace("\":", "\": ")
            .replace(",\"", ", \"")
            .into_bytes();
        variants.push(("re-serialised as compact JSON", compact));
        variants.push((
            "re-serialised as pretty JSON",
            serde_json::to_vec_pretty(&value).unwrap_or_default(),
        ));
        variants.push(("re-serialised as JSON with spaces after ':' and ','", spaced));
    }
    match body.last() {
        Some(b'\n') => variants.push(("without its trailing newline", body[..body.len() - 1].to_vec())),
        _ => variants.push(("with a trailing newline", [body, b"\n"].concat())),
    }
    if body.contains(&b'\n') && !body.windows(2).any(|w| w == b"\r\n") {
        variants.push((
            "with CRLF line ends",
            String::from_utf8_lossy(body).replace('\n', "\r\n").into_bytes(),
        ));
    }
    variants.retain(|(_, v)| v != body);
    variants
}

/// URLs the provider may have signed, from what the request says of itself.
fn url_candidates(captured: &Captured) -> Vec<String> {
    let header = |name: &str| captured.headers.get(name).and_then(|v| v.to_str().ok());
    let mut hosts: Vec<&str> = Vec::new();
    hosts.extend(header("x-forwarded-host"));
    hosts.extend(header("host"));
    let mut urls = Vec::new();
    let forwarded_proto = header("x-forwarded-proto");
    for host in hosts {
        for scheme in forwarded_proto.into_iter().chain(["https", "http"]) {
            let url = format!("{scheme}://{host}{}", captured.path);
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::catalogue;

    const GITHUB: &str = "POST /hooks/github HTTP/1.1\r\nHost: hooks.example.com\r\nX-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\r\n\r\nHello, World!";

    async fn run(provider: &str, key: &str, url: Option<&str>, raw: &str, now: i64) -> String {
        let setup = Setup {
            preset: catalogue::builtin(provider).unwrap(),
            keys: &[Secret::new(key)],
            tolerance_secs: 300,
            public_url: url,
        };
        let captured = Captured::parse(raw.as_bytes()).unwrap();
        explain(&setup, &captured, now).await.unwrap().join("\n")
    }

    #[tokio::test]
    async fn each_likely_cause_is_named_and_no_secret_is_printed() {
        let secret = "It's a Secret to Everybody";
        let ok = run("github", secret, None, GITHUB, 0).await;
        assert!(ok.starts_with("verified"), "{ok}");
        let wrong = run("github", "another key", None, GITHUB, 0).await;
        assert!(wrong.contains("no key of the route"), "{wrong}");
        assert!(
            !wrong.contains("another key") && !wrong.contains("757107ea"),
            "{wrong}"
        );
        let newline = run("github", secret, None, &format!("{GITHUB}\n"), 0).await;
        assert!(newline.contains("without its trailing newline"), "{newline}");
        let missing = run(
            "github",
            secret,
            None,
            "POST /hooks/github HTTP/1.1\r\n\r\nHello, World!",
            0,
        )
        .await;
        assert!(missing.contains("has no x-hub-signature-256"), "{missing}");
        let hex_key = hex::encode(secret);
        let encoded = run("github", &hex_key, None, GITHUB, 0).await;
        assert!(encoded.contains("read as Hex"), "{encoded}");
        assert!(!encoded.contains(&hex_key), "{encoded}");
    }

    #[tokio::test]
    async fn skew_reserialised_json_and_a_proxys_url_are_recognised() {
        // Slack's published example, checked an hour later.
        let slack = format!(
            "POST /hooks/slack HTTP/1.1\nX-Slack-Request-Timestamp: 1531420618\nX-Slack-Signature: v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503\n\n{}",
            crate::verify::declarative::tests::SLACK_BODY
        );
        let late = run(
            "slack",
            "8f742231b10e8888abcd99yyyzzz85a5",
            None,
            &slack,
            1_531_420_618 + 3600,
        )
        .await;
        assert!(late.contains("clock skew"), "{late}");
        // Svix's vector, its body pretty-printed by a proxy.
        let pretty = "POST /hooks/svix HTTP/1.1\nsvix-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nsvix-timestamp: 1614265330\nsvix-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n\n{\n  \"test\": 2432232314\n}";
        let svix = run(
            "svix",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            None,
            pretty,
            1_614_265_330,
        )
        .await;
        assert!(svix.contains("spaces after"), "{svix}");
        // Square's published example, received behind a proxy with the wrong public_url.
        let square = "POST /679a4f3a-dcfa-49ee-bac5-9d0edad886b9 HTTP/1.1\nHost: webhook.site\nX-Forwarded-Proto: https\nx-square-hmacsha256-signature: GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=\n\n{\"merchant_id\":\"MLEFBHHSJGVHD\",\"type\":\"webhooks.test_notification\",\"event_id\":\"ac3ac95b-f97d-458c-a6e6-18981597e05f\",\"created_at\":\"2022-07-13T20:30:59.037339943Z\",\"data\":{\"type\":\"webhooks\",\"id\":\"bc368e64-01aa-407e-b46e-3231809b1129\"}}";
        let proxied = run(
            "square",
            "Ibxx_5AKakO-3qeNVR61Dw",
            Some("http://10.0.0.5:8000/hooks/square"),
            square,
            0,
        )
        .await;
        assert!(
            proxied.contains("signed the URL https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"),
            "{proxied}"
        );
        assert!(Captured::parse(b"nonsense").is_err());
    }
}
