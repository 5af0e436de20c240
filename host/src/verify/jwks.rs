//! FAL's Ed25519 keys, fetched from one or more JWKS URLs and cached in
//! memory and on disk.
//!
//! Rules (FAL's guidance, and what keeps an outage or an attacker from
//! hurting us):
//! - a key set is used for at most `max_age` (24 h) after it was fetched;
//! - once older than `refresh_after` it is refreshed on use; if that fails,
//!   the old set keeps working until `max_age`;
//! - a signature that fails with cached keys triggers one refresh (the
//!   sender may have rotated), but fetch attempts are at most one per
//!   `min_fetch_interval`, however many bad signatures arrive;
//! - the cache file lets a restart during a JWKS outage keep verifying.
//!
//! `x` is base64url, padded or not; keys that are not OKP/Ed25519 are skipped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::scheme::{KeyStatus, unix_now};

/// FAL's current JWKS URL, used when a route names none.
pub const DEFAULT_JWKS_URL: &str = "https://rest.fal.ai/.well-known/jwks.json";

#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub urls: Vec<String>,
    /// The on-disk copy of the last key set fetched.
    pub cache_file: PathBuf,
    pub max_age: Duration,
    pub refresh_after: Duration,
    pub min_fetch_interval: Duration,
    pub fetch_timeout: Duration,
}

/// A JWKS scheme's options on its route entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwksOptions {
    /// JWKS URLs (default FAL's current one); keys of all are accepted.
    pub jwks_urls: Vec<String>,
    /// Refresh cached keys on use once they are this old.
    pub jwks_refresh_secs: u64,
    /// At most one JWKS fetch attempt per this many seconds.
    pub jwks_min_fetch_interval_secs: u64,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            jwks_urls: Vec::new(),
            jwks_refresh_secs: 3600,
            jwks_min_fetch_interval_secs: 60,
        }
    }
}

impl JwksSettings {
    pub fn from_options(options: &JwksOptions, data_dir: &std::path::Path) -> Self {
        let urls = if options.jwks_urls.is_empty() {
            vec![DEFAULT_JWKS_URL.to_string()]
        } else {
            options.jwks_urls.clone()
        };
        let name = hex::encode(&Sha256::digest(urls.join("\n").as_bytes())[..8]);
        Self {
            cache_file: data_dir.join("jwks").join(format!("{name}.json")),
            urls,
            max_age: Duration::from_secs(24 * 3600),
            refresh_after: Duration::from_secs(options.jwks_refresh_secs),
            min_fetch_interval: Duration::from_secs(options.jwks_min_fetch_interval_secs),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Keys and when they were fetched.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
    pub fetched_at_unix: i64,
}

impl KeySet {
    fn age_secs(&self) -> u64 {
        unix_now().saturating_sub(self.fetched_at_unix).max(0) as u64
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
}

/// What the cache file holds.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    fetched_at_unix: i64,
    /// Raw 32-byte keys, base64url.
    keys: Vec<String>,
}

/// Decodes a JWKS document into its Ed25519 keys.
pub fn parse_jwks(document: &[u8]) -> Result<Vec<VerifyingKey>> {
    let jwks: Jwks = serde_json::from_slice(document).context("not a JWKS document")?;
    let keys: Vec<VerifyingKey> = jwks
        .keys
        .iter()
        .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
        .filter_map(|k| decode_key(&k.x))
        .collect();
    Ok(keys)
}

fn decode_key(x: &str) -> Option<VerifyingKey> {
    let bytes = URL_SAFE_NO_PAD.decode(x.trim().trim_end_matches('=')).ok()?;
    VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()
}

/// The key cache of one route's JWKS preset (`fal`, the `fal-ed25519` scheme).
pub struct KeyCache {
    settings: JwksSettings,
    client: reqwest::Client,
    current: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch was attempted; held while fetching (single flight).
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    /// Fetch attempts made, for logs and tests.
    attempts: AtomicU64,
}

impl KeyCache {
    /// A cache primed from its file, if a readable one exists.
    pub fn new(settings: JwksSettings) -> Self {
        let current = std::fs::read(&settings.cache_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .map(|file| {
                let keys = file.keys.iter().filter_map(|k| decode_key(k)).collect();
                Arc::new(KeySet {
                    keys,
                    fetched_at_unix: file.fetched_at_unix,
                })
            });
        let client = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            settings,
            client,
            current: RwLock::new(current),
            last_attempt: Default::default(),
            attempts: AtomicU64::new(0),
        }
    }

    /// A cache holding `keys` that never fetches (for tests, benchmarks and fuzzing).
    pub fn offline(keys: Vec<VerifyingKey>) -> Self {
        let settings = JwksSettings {
            urls: Vec::new(),
            cache_file: PathBuf::new(),
            max_age: Duration::MAX,
            refresh_after: Duration::MAX,
            min_fetch_interval: Duration::MAX,
            fetch_timeout: Duration::from_secs(1),
        };
        Self::with_keys(settings, keys)
    }

    /// A cache holding `keys` and counting as just fetched (for tests and benchmarks).
    pub fn with_keys(settings: JwksSettings, keys: Vec<VerifyingKey>) -> Self {
        let cache = Self::new(settings);
        *cache.current.write().expect("not poisoned") = Some(Arc::new(KeySet {
            keys,
            fetched_at_unix: unix_now(),
        }));
        *cache.last_attempt.try_lock().expect("new") = Some(Instant::now());
        cache
    }

    /// What it holds now, without fetching.
    pub fn status(&self) -> KeyStatus {
        match self.snapshot() {
            None => KeyStatus {
                state: "not_fetched",
                keys: 0,
                age_secs: None,
            },
            Some(set) => KeyStatus {
                state: if set.age_secs() < self.settings.max_age.as_secs() {
                    "ok"
                } else {
                    "expired"
                },
                keys: set.keys.len(),
                age_secs: Some(set.age_secs()),
            },
        }
    }

    pub fn fetch_attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Keys usable now (younger than `max_age`), refreshing first when there
    /// are none or they are older than `refresh_after`.
    pub async fn keys(&self) -> Option<Arc<KeySet>> {
        let stale = self
            .snapshot()
            .is_none_or(|set| set.age_secs() >= self.settings.refresh_after.as_secs());
        if stale {
            let _ = self.try_fetch().await;
        }
        self.snapshot()
            .filter(|set| set.age_secs() < self.settings.max_age.as_secs())
    }

    /// After a signature failed with `tried`: refreshes once, if the rate
    /// limit allows, and returns the new set when it differs; or, when the
    /// rate limit holds the refresh back, how long until one may run.
    pub async fn refresh_after_failure(&self, tried: &Arc<KeySet>) -> Result<Option<Arc<KeySet>>, Duration> {
        self.try_fetch().await?;
        Ok(self.snapshot().filter(|set| !Arc::ptr_eq(set, tried)))
    }

    /// Fetches unless another fetch was attempted within
    /// `min_fetch_interval` (then: how long until one may be).
    async fn try_fetch(&self) -> Result<(), Duration> {
        let mut last = self.last_attempt.lock().await;
        if let Some(at) = *last
            && at.elapsed() < self.settings.min_fetch_interval
        {
            return Err(self.settings.min_fetch_interval - at.elapsed());
        }
        *last = Some(Instant::now());
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(set) => {
                metrics::counter!(crate::telemetry::JWKS_FETCHES, "result" => "ok").increment(1);
                tracing::info!(keys = set.keys.len(), "JWKS fetched");
                if let Err(e) = self.save(&set) {
                    tracing::warn!("JWKS cache file not written: {e:#}");
                }
                if let Ok(mut current) = self.current.write() {
                    *current = Some(Arc::new(set));
                }
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::JWKS_FETCHES, "result" => "error").increment(1);
                tracing::warn!("JWKS fetch failed; cached keys stay in use while younger than 24 h: {e:#}")
            }
        }
        Ok(())
    }

    /// Fetches every URL; the union of the keys of those that answered.
    async fn fetch(&self) -> Result<KeySet> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for url in &self.settings.urls {
            match self.fetch_one(url).await {
                Ok(found) => keys.extend(found),
                Err(e) => errors.push(format!("{url}: {e:#}")),
            }
        }
        if keys.is_empty() {
            bail!("no Ed25519 key from any JWKS URL ({})", errors.join("; "));
        }
        Ok(KeySet {
            keys,
            fetched_at_unix: unix_now(),
        })
    }

    async fn fetch_one(&self, url: &str) -> Result<Vec<VerifyingKey>> {
        let response = self.client.get(url).send().await.context("request failed")?;
        if !response.status().is_success() {
            bail!("answered {}", response.status());
        }
        let body = response.bytes().await.context("reading the body")?;
        if body.len() > 1 << 20 {
            bail!("document larger than 1 MiB");
        }
        parse_jwks(&body)
    }

    fn save(&self, set: &KeySet) -> Result<()> {
        let file = CacheFile {
            fetched_at_unix: set.fetched_at_unix,
            keys: set
                .keys
                .iter()
                .map(|k| URL_SAFE_NO_PAD.encode(k.to_bytes()))
                .collect(),
        };
        let path = &self.settings.cache_file;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, serde_json::to_vec(&file)?)?;
        std::fs::rename(&temp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn x_is_accepted_padded_or_not_and_foreign_keys_are_skipped() {
        let key = SigningKey::from_bytes(&[3u8; 32]).verifying_key();
        let unpadded = URL_SAFE_NO_PAD.encode(key.to_bytes());
        let padded = format!("{unpadded}=");
        let doc = serde_json::json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "x": unpadded },
            { "kty": "OKP", "crv": "Ed25519", "x": padded },
            { "kty": "RSA", "n": "xyz", "e": "AQAB" },
            { "kty": "OKP", "crv": "X25519", "x": unpadded },
            { "kty": "OKP", "crv": "Ed25519", "x": "not base64!" },
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys, vec![key, key]);
        assert!(parse_jwks(b"[]").is_err());
    }
}
