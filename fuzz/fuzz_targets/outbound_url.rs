//! Feeds arbitrary URLs (a plugin asks for them; they come from webhook
//! bodies) to the outbound allow-list of fal-avatar-status's grant. A panic
//! is a bug; so is an accepted URL that is not https to fal.media, a
//! subdomain of it, or the Telegram API, on port 443, without credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_host::caps::http::{HttpGrant, HttpPolicy};
use webhook_host::config::OutboundSettings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(url) = reqwest::Url::parse(text) else { return };
    let grant: HttpGrant = toml::from_str(
        r#"allow = ["https://*.fal.media", "https://fal.media", "https://api.telegram.org"]"#,
    )
    .unwrap();
    let policy = HttpPolicy::new(Some(&grant), &OutboundSettings::default()).unwrap();
    if policy.check_url(&url).is_ok() {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        assert_eq!(url.scheme(), "https", "{text:?}");
        assert!(url.username().is_empty() && url.password().is_none(), "{text:?}");
        assert_eq!(url.port_or_known_default(), Some(443), "{text:?}");
        assert!(
            host == "fal.media" || host.ends_with(".fal.media") || host == "api.telegram.org",
            "{text:?} -> {host}"
        );
    }
});
