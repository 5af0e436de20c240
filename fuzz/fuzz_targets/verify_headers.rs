//! Feeds arbitrary bytes, split into header values and a body, to every
//! signature scheme's parser. Run on demand: `cargo fuzz run verify_headers`
//! from `fuzz/` (not part of CI). A crash or an accepted request is a bug.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use webhook_host::config::Secret;
use webhook_host::verify::jwks::KeyCache;
use webhook_host::verify::{Request, Scheme, fal_ed25519, fal_hmac, github, standard_webhooks, stripe};

const NAMES: [&str; 10] = [
    "x-fal-webhook-request-id",
    "x-fal-webhook-user-id",
    "x-fal-webhook-timestamp",
    "x-fal-webhook-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "stripe-signature",
];

fn schemes() -> Vec<Box<dyn Scheme>> {
    let keys = || vec![Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")].into();
        let key = ed25519_key();
    vec![
        Box::new(fal_hmac::FalHmac::new(keys(), 300)),
        Box::new(fal_ed25519::FalEd25519::new(KeyCache::offline(vec![key]), 300)),
        Box::new(standard_webhooks::StandardWebhooks::new(&keys(), 300).unwrap()),
        Box::new(github::GitHub::new(keys())),
        Box::new(stripe::Stripe::new(keys(), 300)),
    ]
}

fn ed25519_key() -> webhook_host::verify::sign::VerifyingKey {
    webhook_host::verify::sign::signing_key(&"05".repeat(32)).unwrap().verifying_key()
}

fuzz_target!(|data: &[u8]| {
    // Fields are separated by 0xff: ten header values, then the body.
    let mut parts = data.split(|b| *b == 0xff);
    let mut headers = HeaderMap::new();
    for name in NAMES {
        if let Some(value) = parts.next()
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let body: Vec<u8> = parts.flatten().copied().collect();
    let request = Request { headers: &headers, body: &body, now_unix: 1_700_000_000 };
    for scheme in schemes() {
        let outcome = scheme.verify(&request).now_or_never().expect("no I/O without a due refresh");
        assert!(outcome.is_err(), "{} accepted fuzz input", scheme.name());
    }
});
