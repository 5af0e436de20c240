//! Which request headers are credentials: the one list intake (never
//! stores them) and the console (shows the rest of the sensitive ones
//! redacted) both use.

/// Headers never stored: they carry credentials, not webhook data.
pub const NOT_STORED: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Name parts of headers whose values are credentials or signatures: a
/// stored header with one of them in its name is shown redacted. Covers
/// every [`NOT_STORED`] name as well.
const SENSITIVE_PARTS: [&str; 8] = [
    "auth",
    "cookie",
    "secret",
    "signature",
    "token",
    "api-key",
    "apikey",
    "password",
];

/// Whether a header's value must not be shown.
pub fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    NOT_STORED.contains(&name.as_str()) || SENSITIVE_PARTS.iter().any(|part| name.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_signatures_are_sensitive() {
        for name in NOT_STORED {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "X-Fal-Webhook-Signature",
            "Stripe-Signature",
            "X-Api-Key",
            "x-telegram-bot-api-secret-token",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["content-type", "x-fal-webhook-request-id", "user-agent"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }
}
