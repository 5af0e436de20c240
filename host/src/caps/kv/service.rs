//! The store behind every plugin's `kv`, shared by every instance: Redis
//! (`REDIS_URL`), or the process's memory in embedded mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::secret::Secret;

/// The store behind every plugin's `kv`.
#[derive(Clone)]
pub enum KvService {
    Redis(ConnectionManager),
    Memory(Arc<Mutex<HashMap<String, Entry>>>),
}

#[derive(Clone)]
pub struct Entry {
    pub value: Vec<u8>,
    pub expires: Option<Instant>,
}

impl Entry {
    pub fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

impl KvService {
    /// Redis when a URL is configured (connected lazily, reconnecting by
    /// itself), memory otherwise.
    pub fn new(redis_url: Option<&Secret>) -> Result<Self> {
        match redis_url {
            Some(url) => {
                let client =
                    redis::Client::open(url.expose()).context("REDIS_URL is not a valid Redis URL")?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(3)))
                    .set_response_timeout(Some(Duration::from_secs(3)))
                    .set_number_of_retries(2);
                let manager = ConnectionManager::new_lazy_with_config(client, config)
                    .context("setting up the Redis connection")?;
                Ok(Self::Redis(manager))
            }
            None => Ok(Self::memory()),
        }
    }

    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Memory(_) => "memory",
        }
    }

    /// Answers whether the store is reachable (Redis `PING`).
    pub async fn ping(&self) -> Result<()> {
        if let Self::Redis(manager) = self {
            let mut conn = manager.clone();
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .context("Redis PING")?;
        }
        Ok(())
    }
}
