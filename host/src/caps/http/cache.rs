//! The host's cache of GETs made by verifier and responder plugins: each
//! call is a fresh instance, so a key a verifier fetches (a JWKS, a
//! certificate) would otherwise be fetched on every delivery. A `200`
//! answer to a body-less GET is kept per plugin and URL for its
//! `Cache-Control: max-age` (at most an hour; five minutes when it says
//! nothing; never with `no-store` or `no-cache`), 64 answers at most.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

const KEPT: usize = 64;
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MAX_TTL: Duration = Duration::from_secs(3600);

/// A kept answer.
#[derive(Clone)]
pub struct Cached {
    pub headers: http::HeaderMap,
    pub body: Bytes,
    expires: Instant,
}

/// Kept answers by (plugin, URL).
#[derive(Default)]
pub struct GetCache {
    entries: Mutex<HashMap<(String, String), Cached>>,
}

impl GetCache {
    /// The answer kept for `plugin`'s GET of `url`, if it is still fresh.
    pub fn get(&self, plugin: &str, url: &str) -> Option<Cached> {
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .get(&(plugin.to_string(), url.to_string()))
            .filter(|c| c.expires > Instant::now())
            .cloned()
    }

    /// Keeps a `200` answer for as long as its headers allow.
    pub fn put(&self, plugin: &str, url: &str, headers: &http::HeaderMap, body: Bytes) {
        let Some(ttl) = ttl(headers) else { return };
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= KEPT {
            entries.retain(|_, c| c.expires > now);
        }
        if entries.len() >= KEPT
            && let Some(soonest) = entries
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&soonest);
        }
        entries.insert(
            (plugin.to_string(), url.to_string()),
            Cached {
                headers: headers.clone(),
                body,
                expires: now + ttl,
            },
        );
    }
}

/// How long an answer with `headers` may be kept; none: not at all.
fn ttl(headers: &http::HeaderMap) -> Option<Duration> {
    let Some(control) = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(DEFAULT_TTL);
    };
    let mut ttl = DEFAULT_TTL;
    for directive in control.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return None;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            let seconds: u64 = seconds.trim_matches('"').parse().ok()?;
            ttl = Duration::from_secs(seconds).min(MAX_TTL);
        }
    }
    (!ttl.is_zero()).then_some(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(control: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(c) = control {
            h.insert(http::header::CACHE_CONTROL, c.parse().unwrap());
        }
        h
    }

    #[test]
    fn answers_are_kept_as_long_as_their_headers_say() {
        assert_eq!(ttl(&headers(None)), Some(DEFAULT_TTL));
        assert_eq!(
            ttl(&headers(Some("public, max-age=60"))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(ttl(&headers(Some("max-age=86400"))), Some(MAX_TTL));
        for never in ["no-store", "max-age=0", "private, no-cache", "max-age=soon"] {
            assert_eq!(ttl(&headers(Some(never))), None, "{never}");
        }
    }

    #[test]
    fn answers_are_per_plugin_and_url_and_bounded() {
        let cache = GetCache::default();
        cache.put(
            "a",
            "https://keys.test/1",
            &headers(None),
            Bytes::from_static(b"k1"),
        );
        assert_eq!(cache.get("a", "https://keys.test/1").unwrap().body, "k1");
        assert!(cache.get("b", "https://keys.test/1").is_none());
        assert!(cache.get("a", "https://keys.test/2").is_none());
        cache.put(
            "a",
            "https://keys.test/x",
            &headers(Some("no-store")),
            Bytes::new(),
        );
        assert!(cache.get("a", "https://keys.test/x").is_none());
        for i in 0..200 {
            cache.put(
                "a",
                &format!("https://keys.test/n{i}"),
                &headers(None),
                Bytes::new(),
            );
        }
        assert_eq!(cache.entries.lock().unwrap().len(), KEPT);
        assert!(cache.get("a", "https://keys.test/n199").is_some());
    }
}
