//! Property tests: whatever headers and body arrive, no scheme panics and
//! none accepts a delivery it did not sign.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::FutureExt;
use proptest::prelude::*;

use super::props_presets::value;
use super::{Request, SIGNATURE_HEADERS, Scheme};

/// Headers no scheme reads, sent alongside to make sure they change nothing.
const OTHER_HEADERS: [&str; 2] = ["content-type", "x-other"];

fn header_name(i: usize) -> &'static str {
    SIGNATURE_HEADERS
        .get(i)
        .copied()
        .unwrap_or_else(|| OTHER_HEADERS[i - SIGNATURE_HEADERS.len()])
}

fn schemes() -> Vec<Box<dyn Scheme>> {
    let public = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]).verifying_key();
    super::every_scheme("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", public, 300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_requests_never_panic_and_never_verify(
        headers in proptest::collection::vec((0..SIGNATURE_HEADERS.len() + OTHER_HEADERS.len(), value()), 0..12),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut map = HeaderMap::new();
        for (i, value) in headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                map.append(HeaderName::from_static(header_name(i)), value);
            }
        }
        let request = Request::at(&map, &body, 1_700_000_000);
        for scheme in schemes() {
            let outcome = scheme.verify(&request).now_or_never().expect("no I/O without a due refresh");
            prop_assert!(outcome.is_err(), "{} accepted an unsigned request", scheme.name());
        }
    }
}
