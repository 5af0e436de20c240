//! Verifications per second per scheme on one core (criterion), so the cost
//! of verification can be set next to the database commit. Run with
//! `cargo bench -p webhook-host --bench verify`; it prints, it asserts nothing.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use webhook_host::config::Secret;
use webhook_host::verify::catalogue;
use webhook_host::verify::declarative::Declarative;
use webhook_host::verify::preset_sign::{Delivery, fixed_test_keys};
use webhook_host::verify::{Request, Scheme, every_scheme, sign};

const NOW: i64 = 1_700_000_000;
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SEED_HEX: &str = "0505050505050505050505050505050505050505050505050505050505050505";

fn body() -> Vec<u8> {
    let mut body = br#"{"request_id":"6a0e2b52","status":"OK","payload":{"pad":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 1024));
    body.extend(br#""}}"#);
    body
}

fn headers(scheme: &str, key: &str, body: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in sign::headers(scheme, key, "6a0e2b52", body, NOW).unwrap() {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    map
}

/// Every scheme with the key its sender signs with.
fn schemes() -> Vec<(&'static str, Box<dyn Scheme>)> {
    let public = sign::signing_key(SEED_HEX).unwrap().verifying_key();
    every_scheme(WHSEC, public, u64::MAX)
        .into_iter()
        .map(|scheme| (if scheme.name() == "fal" { SEED_HEX } else { WHSEC }, scheme))
        .collect()
}

fn verification(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("verify 1 KiB body");
    group.throughput(Throughput::Elements(1));
    for (key, scheme) in schemes() {
        // The schemes run as presets: `fal-ed25519`'s is named `fal`.
        let name = match scheme.name() {
            "fal" => "fal-ed25519",
            other => other,
        };
        let headers = headers(name, key, &body);
        let request = Request::at(&headers, &body, NOW);
        measure(&mut group, name, scheme.as_ref(), &request);
    }
    group.finish();
}

/// One preset per building block of the declarative engine, on the same
/// body as the older scheme names above (which run as presets too).
const PRESETS: &[(&str, &str)] = &[
    ("github", "hmac-sha256, hex, prefix (as the compiled github)"),
    (
        "stripe",
        "hmac-sha256 over a listed timestamp (as the compiled stripe)",
    ),
    (
        "standard-webhooks",
        "whsec_ key, space list, base64 (as the compiled scheme)",
    ),
    ("vercel", "hmac-sha1"),
    ("shopify", "hmac-sha256, base64"),
    ("twitch", "header parts, RFC 3339 timestamp"),
    ("mailgun", "body fields (JSON pointer)"),
    ("twilio", "URL + bodySHA256 query"),
    ("gitlab", "token"),
    ("postmark", "Basic credentials"),
    ("discord", "ed25519"),
    ("sendgrid", "ecdsa-p256-sha256"),
    ("netlify", "JWS, HS256"),
    ("plaid", "JWS, ES256"),
];

fn presets(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("preset 1 KiB body");
    group.throughput(Throughput::Elements(1));
    let url = "https://hooks.example.com/hooks/bench";
    for (name, _) in PRESETS {
        let preset = catalogue::builtin(name).unwrap();
        let (signing, verifying) = fixed_test_keys(&preset);
        let signed = webhook_host::verify::preset_sign::sign(
            &preset,
            &signing,
            &Delivery {
                body: &body,
                content_type: "application/json",
                url: Some(url),
                query: "",
                certificate_url: None,
                delivery_id: "6a0e2b52",
                now_unix: NOW,
            },
        )
        .unwrap();
        let scheme = Declarative::new(preset, &[Secret::new(verifying)], u64::MAX, Some(url)).unwrap();
        let request = Request::at(&signed.headers, &signed.body, NOW).with_target("POST", &signed.query);
        measure(&mut group, name, &scheme, &request);
    }
    group.finish();
}

/// Checks that `request` verifies, then measures `scheme` verifying it.
fn measure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    scheme: &dyn Scheme,
    request: &Request<'_>,
) {
    assert!(
        scheme.verify(request).now_or_never().unwrap().is_ok(),
        "{name} must verify"
    );
    group.bench_function(name, |b| {
        b.iter(|| {
            scheme
                .verify(std::hint::black_box(request))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, verification, presets);
criterion_main!(benches);
