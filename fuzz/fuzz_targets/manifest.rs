//! Feeds arbitrary text to the plugin manifest parser and everything a
//! deploy derives from an accepted manifest (grants, secrets, limits, the
//! outbound policy). A panic is a bug; a refusal is fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_host::caps::http::HttpPolicy;
use webhook_host::config::{OutboundSettings, RuntimeSettings};
use webhook_host::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(manifest) = Manifest::parse(text) else { return };
    let _ = manifest.grants.validate();
    let _ = manifest.secret_refs();
    let _ = manifest.limits(&RuntimeSettings::default());
    let _ = HttpPolicy::new(manifest.grants.http.as_ref(), &OutboundSettings::default());
});
