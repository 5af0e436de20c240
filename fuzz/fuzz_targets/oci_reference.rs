//! Feeds arbitrary text to the OCI reference parser used by plugin deploys
//! from a registry. A panic is a bug; an accepted reference must name a
//! registry and a repository.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(reference) = webhook_host::plugins::oci::reference(text) {
        assert!(!reference.registry().is_empty(), "{text:?}");
        assert!(!reference.repository().is_empty(), "{text:?}");
    }
});
