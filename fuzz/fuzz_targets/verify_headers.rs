//! Feeds arbitrary bytes, split into header values and a body, to every
//! signature scheme's parser. Run on demand: `cargo fuzz run verify_headers`
//! from `fuzz/` (not part of CI). A crash or an accepted request is a bug.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use webhook_host::verify::{Request, SIGNATURE_HEADERS, Scheme};

fn schemes() -> Vec<Box<dyn Scheme>> {
    let public = webhook_host::verify::sign::signing_key(&"05".repeat(32))
        .unwrap()
        .verifying_key();
    webhook_host::verify::every_scheme("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", public, 300)
}

fuzz_target!(|data: &[u8]| {
    // Fields are separated by 0xff: ten header values, then the body.
    let mut parts = data.split(|b| *b == 0xff);
    let mut headers = HeaderMap::new();
    for name in SIGNATURE_HEADERS {
        if let Some(value) = parts.next()
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let body: Vec<u8> = parts.flatten().copied().collect();
    let request = Request::at(&headers, &body, 1_700_000_000);
    for scheme in schemes() {
        let outcome = scheme
            .verify(&request)
            .now_or_never()
            .expect("no I/O without a due refresh");
        assert!(outcome.is_err(), "{} accepted fuzz input", scheme.name());
    }
});
