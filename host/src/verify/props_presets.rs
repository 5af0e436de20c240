//! Property tests of the preset language and engine: whatever text a preset
//! file holds, parsing it never panics; whatever a request holds, no shipped
//! preset panics on it or accepts it unsigned; captured requests and
//! timestamps of any shape parse or fail cleanly.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::FutureExt;
use proptest::prelude::*;

use super::catalogue;
use super::declarative::Declarative;
use super::preset::{KeyEncoding, Part, Preset, Source, TimeUnit};
use super::preset_sign::fixed_test_keys;
use super::scheme::{Request, Scheme};
use crate::config::Secret;

/// Every shipped preset with its fixed test key (JWKS ones offline).
fn presets() -> Vec<Declarative> {
    catalogue::all_builtin()
        .iter()
        .map(|preset| {
            let (_, verifying) = fixed_test_keys(preset);
            if preset.signature.key == KeyEncoding::Jwks {
                let bytes: [u8; 32] = hex::decode(&verifying).unwrap().try_into().unwrap();
                let cache = super::jwks::KeyCache::offline(vec![
                    ed25519_dalek::VerifyingKey::from_bytes(&bytes).unwrap(),
                ]);
                return Declarative::with_key_cache(preset.clone(), cache, 300).unwrap();
            }
            if preset.signature.key == KeyEncoding::Certificate {
                let policy = super::declarative::certificate_policy(preset);
                let url = super::preset_sign::TEST_CERTIFICATE_URL;
                let cache = super::certs::CertCache::offline(policy, &[(url, verifying.as_str())]).unwrap();
                return Declarative::with_certificates(preset.clone(), cache, 300, None).unwrap();
            }
            Declarative::new(
                preset.clone(),
                &[Secret::new(verifying)],
                300,
                Some("https://hooks.example.com/h"),
            )
            .unwrap()
        })
        .collect()
}

/// Every header some shipped preset reads.
fn header_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for preset in catalogue::all_builtin() {
        let sources = [Some(preset.signature_source()), preset.timestamp_source()];
        for source in sources.into_iter().flatten() {
            if let Source::Header(h) = source {
                names.push(h.to_ascii_lowercase());
            }
        }
        for part in &preset.signature.message {
            if let Part::Header(h) = part {
                names.push(h.to_ascii_lowercase());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Values shaped like what presets parse (free text, hex, base64, times in
/// each unit, prefixes and lists), filled with noise.
pub(super) fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "[0-9a-f]{0,140}",
        "[A-Za-z0-9+/=_-]{0,100}",
        (1_699_999_000i64..1_700_001_000).prop_map(|t| t.to_string()),
        (1_699_999_000_000i64..1_700_001_000_000).prop_map(|t| t.to_string()),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "[0-9a-f]{40,128}".prop_map(|h| format!("sha256={h}")),
        ("[0-9]{1,12}", "[0-9a-f]{0,64}").prop_map(|(t, h)| format!("t={t},v1={h},v0={h}")),
        ("[0-9]{1,12}", "[0-9a-f]{0,64}").prop_map(|(t, h)| format!("ts={t};h1={h}")),
        "[A-Za-z0-9+/=]{0,90}".prop_map(|b| format!("v1,{b} v1a,{b}")),
        "[A-Za-z0-9+/=]{0,40}".prop_map(|b| format!("Basic {b}")),
    ]
}

/// Bodies: bytes, or JSON with the fields body-reading presets look for.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (value(), value(), value()).prop_map(|(a, b, c)| {
            serde_json::json!({
                "signature": { "timestamp": a, "token": b, "signature": c },
                "value": [{ "clientState": c, "id": a }],
                "Signature": c, "SignatureVersion": "2", "Message": a, "Type": "Notification",
                "SigningCertURL": super::preset_sign::TEST_CERTIFICATE_URL,
                "webhookTimestamp": a, "id": b, "event-data": { "id": c }
            })
            .to_string()
            .into_bytes()
        }),
    ]
}

/// Preset text: pieces of valid presets, shuffled and cut.
fn preset_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("name = \"p\"\n".to_string()),
        Just("docs = \"https://x\"\n".to_string()),
        Just("[signature]\n".to_string()),
        Just("[timestamp]\n".to_string()),
        Just("[delivery_id]\n".to_string()),
        Just("[body_hash]\nquery = \"h\"\n".to_string()),
        "(hmac-sha1|hmac-sha256|ed25519|token|basic|rsa-sha1|jwks|x)"
            .prop_map(|a| format!("algorithm = \"{a}\"\n")),
        "(raw|hex|base64|whsec|pem|jwks|x)".prop_map(|k| format!("key = \"{k}\"\n")),
        "(header|json|query) = \"[ -~]{0,12}\"\n",
        "unit = \"(seconds|milliseconds|rfc3339|x)\"\n",
        "checked = (true|false)\n",
        "sha256 = (true|false)\n",
        "list = \\{ separator = \"[,; ]{0,1}\", signature = \"v1\", timestamp = \"t\" \\}\n",
        "message = \\[(\"body\"|\"timestamp\"|\"url\"|\"form-sorted\"|\\{ header = \"[a-z-]{0,8}\" \\}|\\{ json = \"[/a-z0-9]{0,8}\" \\}|\\{ literal = \"[ -~]{0,4}\" \\}|, )*\\]\n",
        "parts = \\[(\"body\"|\\{ header = \"x\" \\}|, )*\\]\n",
        "[ -~\n]{0,20}",
    ];
    proptest::collection::vec(pieces, 0..14).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn preset_text_of_any_shape_parses_or_is_refused(text in preset_text()) {
        if let Ok(preset) = Preset::parse(&text) {
            // What parses also describes itself and builds (or says why not).
            let _ = preset.describe();
            let _ = Declarative::new(std::sync::Arc::new(preset), &[Secret::new("k")], 300, Some("https://x/h"));
        }
    }

    #[test]
    fn no_preset_panics_on_or_accepts_an_unsigned_request(
        headers in proptest::collection::vec((any::<prop::sample::Index>(), value()), 0..12),
        body in body(),
        query in "[a-zA-Z0-9=&%]{0,40}",
    ) {
        let names = header_names();
        let mut map = HeaderMap::new();
        for (index, value) in headers {
            let name = HeaderName::from_bytes(index.get(&names).as_bytes()).unwrap();
            if let Ok(value) = HeaderValue::from_str(&value) {
                map.append(name, value);
            }
        }
        let request = Request::at(&map, &body, 1_700_000_000).with_target("POST", &query);
        for scheme in presets() {
            let outcome = scheme.verify(&request).now_or_never().expect("no I/O offline");
            prop_assert!(outcome.is_err(), "{} accepted an unsigned request", scheme.name());
        }
    }

    #[test]
    fn captured_requests_and_timestamps_of_any_shape_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..300),
        time in "[ -~]{0,40}",
    ) {
        let _ = super::explain::Captured::parse(&raw);
        for unit in [TimeUnit::Seconds, TimeUnit::Milliseconds, TimeUnit::Rfc3339] {
            let _ = super::template::unix_seconds(&time, unit);
        }
    }
}
