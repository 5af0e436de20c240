//! Feeds arbitrary bytes to fal-avatar-status's body parser (compiled here
//! natively from the plugin's own source). Any panic is a bug; so is a
//! storage name from a parsed file that is empty, a dot segment, or has a
//! character outside `[A-Za-z0-9._-]`, or a file URL that is not http(s).
#![no_main]

#[path = "../../plugins/fal-avatar-status/src/body.rs"]
#[allow(dead_code)]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = body::parse(data) else { return };
    assert!(!report.request_id.trim().is_empty());
    if let body::Outcome::Completed { lora, config } = report.outcome {
        for file in lora.iter().chain(config.iter()) {
            assert!(file.url.starts_with("https://") || file.url.starts_with("http://"));
            let name = file.safe_name("fallback.bin");
            assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{name:?}"
            );
        }
    }
});
