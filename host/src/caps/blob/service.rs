//! The storage behind every plugin's `blob`, shared by every instance: one
//! handle per bucket, from the `object_store` crate: the S3 API (MinIO in
//! production: endpoint, path-style requests, SigV4) or a local folder
//! (`DATA_DIR/blobs/<bucket>/…`) in embedded mode.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

use super::grant::check_key_shape;
use crate::config::StorageSettings;

/// One bucket's handle.
pub struct Bucket {
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
    /// Set for S3: signs URLs; local folders keep no content types.
    pub s3: Option<Arc<AmazonS3>>,
    /// Set for a local folder: its root.
    pub root: Option<PathBuf>,
}

/// The storage behind every plugin's `blob`.
pub struct BlobService {
    settings: StorageSettings,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
}

impl BlobService {
    pub fn new(settings: StorageSettings) -> Self {
        Self {
            settings,
            buckets: Mutex::default(),
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.settings.s3.is_some() { "s3" } else { "local" }
    }

    /// The bucket named `name`, or the host's own (`MINIO_BUCKET_NAME`).
    pub fn bucket(&self, name: Option<&str>) -> Result<Arc<Bucket>> {
        let name = name.unwrap_or(&self.settings.bucket).to_string();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get(&name) {
            return Ok(bucket.clone());
        }
        let bucket = Arc::new(match &self.settings.s3 {
            Some(s3) => {
                let options = ClientOptions::new()
                    .with_allow_http(!s3.endpoint.starts_with("https://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300));
                let store = AmazonS3Builder::new()
                    .with_endpoint(&s3.endpoint)
                    .with_region(&s3.region)
                    .with_bucket_name(&name)
                    .with_access_key_id(s3.access_key.expose())
                    .with_secret_access_key(s3.secret_key.expose())
                    .with_virtual_hosted_style_request(false)
                    .with_client_options(options)
                    .build()
                    .with_context(|| format!("configuring S3 bucket {name}"))?;
                let store = Arc::new(store);
                Bucket {
                    name: name.clone(),
                    store: store.clone(),
                    s3: Some(store),
                    root: None,
                }
            }
            None => {
                let root = self.settings.local_dir.join(&name);
                std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
                let root = root.canonicalize()?;
                let store = LocalFileSystem::new_with_prefix(&root)
                    .with_context(|| format!("opening {}", root.display()))?
                    .with_automatic_cleanup(true);
                Bucket {
                    name: name.clone(),
                    store: Arc::new(store),
                    s3: None,
                    root: Some(root),
                }
            }
        });
        buckets.insert(name, bucket.clone());
        Ok(bucket)
    }

    fn host_path(&self, key: &str) -> Result<(Arc<Bucket>, ObjectPath)> {
        check_key_shape(key).map_err(|e| anyhow::anyhow!("key {key:?}: {e}"))?;
        Ok((self.bucket(None)?, ObjectPath::parse(key)?))
    }

    /// Stores an object of the host's own at `key` in its bucket, outside
    /// every grant (the plugin store's components).
    pub async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let (bucket, path) = self.host_path(key)?;
        bucket
            .store
            .put(&path, PutPayload::from(Bytes::from(bytes)))
            .await
            .with_context(|| format!("storing {path}"))?;
        Ok(())
    }

    /// Whether the host's bucket answers: a `HEAD` of a key nobody writes
    /// (not found is an answer).
    pub async fn check(&self) -> Result<()> {
        let (bucket, path) = self.host_path("webhook-host/health-check")?;
        match bucket.store.head(&path).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("bucket {}", bucket.name)),
        }
    }

    /// Reads an object of the host's own.
    pub async fn get_object(&self, key: &str) -> Result<Vec<u8>> {
        let (bucket, path) = self.host_path(key)?;
        let found = bucket
            .store
            .get(&path)
            .await
            .with_context(|| format!("reading {path}"))?;
        Ok(found.bytes().await?.to_vec())
    }
}
