//! Feeds arbitrary text to the preset parser and, when it parses, builds the
//! preset and verifies an arbitrary request with it. Run on demand:
//! `cargo fuzz run preset` from `fuzz/` (not part of CI). A crash is a bug.
#![no_main]

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use webhook_host::config::Secret;
use webhook_host::verify::declarative::Declarative;
use webhook_host::verify::preset::Preset;
use webhook_host::verify::{Request, Scheme};

fuzz_target!(|data: &[u8]| {
    // The preset's text, 0xff, then a header value, 0xff, then the body.
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let Ok(text) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let Ok(preset) = Preset::parse(text) else {
        return;
    };
    let _ = preset.describe();
    let value = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let Ok(scheme) = Declarative::new(Arc::new(preset.clone()), &[Secret::new("k")], 300, Some("https://x/h")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let (Some(name), Ok(value)) = (preset.signature.header.as_deref(), HeaderValue::from_bytes(value))
        && let Ok(name) = HeaderName::from_bytes(name.as_bytes())
    {
        headers.insert(name, value);
    }
    let request = Request::at(&headers, body, 1_700_000_000);
    let _ = scheme.verify(&request).now_or_never();
});
