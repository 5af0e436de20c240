//! `kv`: a small key-value store under a prefix of the plugin's own.
//!
//! Production uses Redis (`REDIS_URL`), shared by every instance; embedded
//! mode keeps values in the process's memory (lost on restart, which is the
//! embedded trade-off). Every key a plugin names is stored as
//! `whk:<plugin>:<key>`, so plugins never see each other's keys.

pub mod service;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use self::service::Entry;
pub use self::service::KvService;
use crate::caps::capability::{Capability, InstanceContext};
use crate::caps::services::Services;
use crate::caps::trace::trace_call;
use crate::manifest::{Grants, Limits, Manifest};
use crate::wit::kv::Host;

/// Longest key a plugin may use.
const MAX_KEY_BYTES: usize = 512;
/// Largest value a plugin may store.
const MAX_VALUE_BYTES: usize = 1 << 20;

/// One instance's view: the service and the plugin's prefix.
pub struct KvState {
    service: Option<KvService>,
    prefix: String,
}

impl KvState {
    /// `service` is `None` when the plugin has no `kv` grant.
    pub fn new(service: Option<KvService>, plugin: &str) -> Self {
        // Only a granted plugin has keys to prefix.
        let prefix = match service {
            Some(_) => format!("whk:{plugin}:"),
            None => String::new(),
        };
        Self { service, prefix }
    }

    fn key(&self, key: &str) -> Result<(KvService, String), String> {
        let service = self.service.clone().ok_or("the plugin has no kv grant")?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
            return Err(format!(
                "kv keys are 1 to {MAX_KEY_BYTES} bytes without control characters"
            ));
        }
        Ok((service, format!("{}{key}", self.prefix)))
    }
}

impl Capability for KvState {
    /// Whether the manifest grants `kv`.
    type Plugin = bool;

    fn prepare(manifest: &Manifest, _: &Limits, _: &Services) -> anyhow::Result<bool> {
        Ok(manifest.grants.kv)
    }

    fn instance(granted: &bool, cx: &mut InstanceContext<'_>) -> Self {
        KvState::new(granted.then(|| cx.services.kv.clone()), cx.plugin)
    }

    fn missing_grant(grants: &Grants) -> Option<&'static str> {
        (!grants.kv).then_some("kv = true")
    }
}

fn check_value(value: &[u8]) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("kv values are at most {MAX_VALUE_BYTES} bytes"));
    }
    Ok(())
}

fn redis_error(e: redis::RedisError) -> String {
    format!("kv: {e}")
}

fn lock(map: &Mutex<HashMap<String, Entry>>) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn expiry(ttl_ms: Option<u64>) -> Option<Instant> {
    ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

impl Host for KvState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        trace_call!("kv.get {key}");
        let (service, key) = self.key(&key)?;
        match service {
            KvService::Redis(mut conn) => conn.get(key).await.map_err(redis_error),
            KvService::Memory(map) => {
                let now = Instant::now();
                Ok(lock(&map)
                    .get(&key)
                    .filter(|e| e.live(now))
                    .map(|e| e.value.clone()))
            }
        }
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), String> {
        trace_call!("kv.set {key} ttl={ttl_ms:?}");
        let (service, key) = self.key(&key)?;
        check_value(&value)?;
        match service {
            KvService::Redis(mut conn) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg(value);
                if let Some(ms) = ttl_ms {
                    cmd.arg("PX").arg(ms.max(1));
                }
                cmd.query_async::<()>(&mut conn).await.map_err(redis_error)
            }
            KvService::Memory(map) => {
                let expires = expiry(ttl_ms);
                lock(&map).insert(key, Entry { value, expires });
                Ok(())
            }
        }
    }

    async fn set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, String> {
        trace_call!("kv.set-if-absent {key} ttl={ttl_ms:?}");
        let (service, key) = self.key(&key)?;
        check_value(&value)?;
        match service {
            KvService::Redis(mut conn) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg(value).arg("NX");
                if let Some(ms) = ttl_ms {
                    cmd.arg("PX").arg(ms.max(1));
                }
                let set: Option<String> = cmd.query_async(&mut conn).await.map_err(redis_error)?;
                Ok(set.is_some())
            }
            KvService::Memory(map) => {
                let now = Instant::now();
                let mut map = lock(&map);
                if map.get(&key).is_some_and(|e| e.live(now)) {
                    return Ok(false);
                }
                map.insert(
                    key,
                    Entry {
                        value,
                        expires: expiry(ttl_ms),
                    },
                );
                Ok(true)
            }
        }
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, String> {
        trace_call!("kv.increment {key} by {delta}");
        let (service, key) = self.key(&key)?;
        match service {
            KvService::Redis(mut conn) => conn.incr(key, delta).await.map_err(redis_error),
            KvService::Memory(map) => {
                let now = Instant::now();
                let mut map = lock(&map);
                let entry = map.entry(key).or_insert(Entry {
                    value: b"0".to_vec(),
                    expires: None,
                });
                let current: i64 = if entry.live(now) {
                    std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("the value is not an integer")?
                } else {
                    entry.expires = None;
                    0
                };
                let next = current.checked_add(delta).ok_or("increment overflows")?;
                entry.value = next.to_string().into_bytes();
                Ok(next)
            }
        }
    }

    async fn delete(&mut self, key: String) -> Result<bool, String> {
        trace_call!("kv.delete {key}");
        let (service, key) = self.key(&key)?;
        match service {
            KvService::Redis(mut conn) => {
                let removed: u64 = conn.del(key).await.map_err(redis_error)?;
                Ok(removed > 0)
            }
            KvService::Memory(map) => {
                let now = Instant::now();
                Ok(lock(&map).remove(&key).is_some_and(|e| e.live(now)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_honours_prefix_ttl_and_set_if_absent() {
        let service = KvService::memory();
        let mut a = KvState::new(Some(service.clone()), "a");
        let mut b = KvState::new(Some(service), "b");
        assert!(a.set_if_absent("k".into(), b"1".to_vec(), None).await.unwrap());
        assert!(!a.set_if_absent("k".into(), b"2".to_vec(), None).await.unwrap());
        assert_eq!(b.get("k".into()).await.unwrap(), None, "plugins share no keys");
        assert!(b.set_if_absent("k".into(), b"x".to_vec(), Some(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(b.get("k".into()).await.unwrap(), None, "expired");
        assert!(b.set_if_absent("k".into(), b"y".to_vec(), None).await.unwrap());
        assert_eq!(a.increment("n".into(), 5).await.unwrap(), 5);
        assert_eq!(a.increment("n".into(), -2).await.unwrap(), 3);
        assert!(a.increment("k".into(), 1).await.is_ok_and(|n| n == 2));
        assert!(a.delete("n".into()).await.unwrap());
        assert!(!a.delete("n".into()).await.unwrap());
        let mut none = KvState::new(None, "c");
        assert!(none.get("k".into()).await.unwrap_err().contains("no kv grant"));
        assert!(a.get(String::new()).await.is_err());
    }
}
