//! The host-side backends capabilities share across instances: one object
//! store handle, one Redis connection, one pair of HTTP clients, and the
//! host's outbound defaults.

use std::sync::Arc;

use anyhow::Result;

use super::blob::service::BlobService;
use super::http::client::HttpService;
use super::kv::service::KvService;
use crate::config::{OutboundSettings, Settings, StorageSettings};

pub struct Services {
    pub blob: Arc<BlobService>,
    pub kv: KvService,
    pub http: HttpService,
    pub outbound: OutboundSettings,
}

impl Services {
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        Ok(Self {
            blob: Arc::new(BlobService::new(settings.storage.clone())),
            kv: KvService::new(settings.redis_url.as_ref())?,
            http: HttpService::new(&settings.outbound)?,
            outbound: settings.outbound.clone(),
        })
    }

    /// Embedded backends under `data_dir` (benches, tests, `plugin test`).
    pub fn embedded(data_dir: &std::path::Path) -> Result<Self> {
        let outbound = OutboundSettings::default();
        Ok(Self {
            blob: Arc::new(BlobService::new(StorageSettings {
                s3: None,
                bucket: "webhook-host".into(),
                local_dir: data_dir.join("blobs"),
            })),
            kv: KvService::memory(),
            http: HttpService::new(&outbound)?,
            outbound,
        })
    }
}
