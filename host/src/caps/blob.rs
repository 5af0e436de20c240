//! `blob`: object storage under the bucket and key prefix a plugin's grant
//! names.
//!
//! One API, two backends, both from the `object_store` crate: the S3 API
//! (MinIO in production: endpoint, path-style requests, SigV4) and a local
//! folder (`DATA_DIR/blobs/<bucket>/…`) in embedded mode. `copy-from-url`
//! streams a remote file (allowed by the plugin's `http` grant) into storage
//! chunk by chunk, so large files never enter the plugin's memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::caps::http::{HttpPolicy, HttpService, Refusal, error_chain};
use crate::config::StorageSettings;
use crate::runtime::bindings::blob::Host;

/// Largest object `get` hands to a plugin.
const MAX_GET_BYTES: u64 = 64 << 20;
/// Default cap of one `copy-from-url`.
const DEFAULT_MAX_COPY_BYTES: u64 = 512 << 20;
const MAX_KEY_BYTES: usize = 1024;
/// Keys the host keeps for itself in the default bucket (plugin components);
/// no grant may reach them.
pub const HOST_PREFIX: &str = "webhook-host/";

/// The `blob` grant: a bucket and the key prefix the plugin owns in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobGrant {
    /// Defaults to the host's bucket (`MINIO_BUCKET_NAME`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Every key the plugin touches starts with it, e.g. `avatars/`.
    pub prefix: String,
    /// Cap of one `copy-from-url`, in bytes (default 512 MiB).
    #[serde(default)]
    pub max_copy_bytes: Option<u64>,
}

impl BlobGrant {
    pub fn validate(&self) -> Result<()> {
        if self.prefix.is_empty() {
            bail!("blob grant: prefix must not be empty (name the key prefix the plugin owns)");
        }
        check_key_shape(self.prefix.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("blob grant prefix {:?}: {e}", self.prefix))?;
        if let Some(bucket) = &self.bucket {
            check_bucket(bucket)?;
        }
        if self.bucket.is_none()
            && (HOST_PREFIX.starts_with(&self.prefix) || self.prefix.starts_with(HOST_PREFIX))
        {
            bail!(
                "blob grant prefix {:?} overlaps the host's own {HOST_PREFIX:?}",
                self.prefix
            );
        }
        Ok(())
    }
}

fn check_bucket(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.contains("..");
    if !ok {
        bail!("bucket {bucket:?} must be 3-63 lowercase letters, digits, '-' or '.'");
    }
    Ok(())
}

/// A key's shape alone: relative, no empty, `.` or `..` segments, no
/// backslashes or control characters.
fn check_key_shape(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("the key is longer than {MAX_KEY_BYTES} bytes"));
    }
    if key.starts_with('/') {
        return Err("absolute keys are refused".into());
    }
    if key.contains('\\') || key.chars().any(char::is_control) {
        return Err("keys may not contain backslashes or control characters".into());
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("keys may not have empty, '.' or '..' segments".into());
    }
    Ok(())
}

/// Checks `key` against the grant's prefix; the object path on success.
pub fn check_key(prefix: &str, key: &str) -> Result<ObjectPath, String> {
    check_key_shape(key).map_err(|e| format!("key {key:?}: {e}"))?;
    if !key.starts_with(prefix) {
        return Err(format!("key {key:?} is outside the plugin's prefix {prefix:?}"));
    }
    ObjectPath::parse(key).map_err(|e| format!("key {key:?}: {e}"))
}

/// One bucket's handle.
struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
    /// Set for S3: signs URLs; local folders keep no content types.
    s3: Option<Arc<AmazonS3>>,
    /// Set for a local folder: its root.
    root: Option<PathBuf>,
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

    fn bucket(&self, grant: &BlobGrant) -> Result<Arc<Bucket>> {
        let name = grant
            .bucket
            .clone()
            .unwrap_or_else(|| self.settings.bucket.clone());
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
}

impl BlobService {
    fn host_path(&self, key: &str) -> Result<(Arc<Bucket>, ObjectPath)> {
        let full = format!("{HOST_PREFIX}{key}");
        check_key_shape(&full).map_err(|e| anyhow::anyhow!("host key {full:?}: {e}"))?;
        let bucket = self.bucket(&BlobGrant {
            prefix: HOST_PREFIX.into(),
            ..BlobGrant::default()
        })?;
        Ok((bucket, ObjectPath::parse(&full)?))
    }

    /// Stores a host-owned object (under [`HOST_PREFIX`] in the default bucket).
    pub async fn put_host(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let (bucket, path) = self.host_path(key)?;
        bucket
            .store
            .put(&path, PutPayload::from(Bytes::from(bytes)))
            .await
            .with_context(|| format!("storing {path}"))?;
        Ok(())
    }

    /// Reads a host-owned object.
    pub async fn get_host(&self, key: &str) -> Result<Vec<u8>> {
        let (bucket, path) = self.host_path(key)?;
        let found = bucket
            .store
            .get(&path)
            .await
            .with_context(|| format!("reading {path}"))?;
        Ok(found.bytes().await?.to_vec())
    }
}

/// One instance's view of storage.
pub struct BlobState {
    service: Arc<BlobService>,
    grant: Option<BlobGrant>,
    http: HttpService,
    policy: Arc<HttpPolicy>,
    /// Shared with the instance's `wasi:http` hooks: one budget per event.
    sent: Arc<AtomicU32>,
}

impl BlobState {
    pub fn new(
        service: Arc<BlobService>,
        grant: Option<BlobGrant>,
        http: HttpService,
        policy: Arc<HttpPolicy>,
        sent: Arc<AtomicU32>,
    ) -> Self {
        Self {
            service,
            grant,
            http,
            policy,
            sent,
        }
    }

    fn open(&self, key: &str) -> Result<(Arc<Bucket>, ObjectPath), String> {
        let grant = self.grant.as_ref().ok_or("the plugin has no blob grant")?;
        let path = check_key(&grant.prefix, key)?;
        let bucket = self.service.bucket(grant).map_err(|e| format!("{e:#}"))?;
        Ok((bucket, path))
    }
}

fn store_error(op: &str, e: object_store::Error) -> String {
    match e {
        object_store::Error::NotFound { path, .. } => format!("{op}: {path} not found"),
        other => format!("{op}: {other}"),
    }
}

fn content_type_attributes(bucket: &Bucket, content_type: Option<String>) -> Attributes {
    let mut attributes = Attributes::new();
    if bucket.s3.is_some()
        && let Some(ct) = content_type
    {
        attributes.insert(Attribute::ContentType, ct.into());
    }
    attributes
}

/// The URL without its query string, for messages.
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

impl Host for BlobState {
    async fn put(&mut self, key: String, data: Vec<u8>, content_type: Option<String>) -> Result<(), String> {
        crate::caps::trace_call!("blob.put {key} ({} bytes)", data.len());
        let (bucket, path) = self.open(&key)?;
        let options = PutOptions {
            attributes: content_type_attributes(&bucket, content_type),
            ..PutOptions::default()
        };
        bucket
            .store
            .put_opts(&path, PutPayload::from(Bytes::from(data)), options)
            .await
            .map(|_| ())
            .map_err(|e| store_error("put", e))
    }

    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        crate::caps::trace_call!("blob.get {key}");
        let (bucket, path) = self.open(&key)?;
        let found = match bucket.store.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error("get", e)),
        };
        if found.meta.size > MAX_GET_BYTES {
            return Err(format!(
                "get: {key} is {} bytes; get reads at most {MAX_GET_BYTES}",
                found.meta.size
            ));
        }
        found
            .bytes()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|e| store_error("get", e))
    }

    async fn delete(&mut self, key: String) -> Result<(), String> {
        crate::caps::trace_call!("blob.delete {key}");
        let (bucket, path) = self.open(&key)?;
        match bucket.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("delete", e)),
        }
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, String> {
        crate::caps::trace_call!("blob.list-keys {prefix}");
        let grant = self.grant.as_ref().ok_or("the plugin has no blob grant")?;
        // A folder: `avatars/a1` or `avatars/a1/`; the grant's own prefix
        // (`avatars/`) lists everything the plugin owns.
        let folder = prefix.trim_end_matches('/');
        check_key_shape(folder).map_err(|e| format!("list {prefix:?}: {e}"))?;
        if !format!("{folder}/").starts_with(&grant.prefix) {
            return Err(format!(
                "list {prefix:?} is outside the plugin's prefix {:?}",
                grant.prefix
            ));
        }
        let path = ObjectPath::parse(folder).map_err(|e| format!("list {prefix:?}: {e}"))?;
        let bucket = self.service.bucket(grant).map_err(|e| format!("{e:#}"))?;
        let mut keys = Vec::new();
        let mut listing = bucket.store.list(Some(&path));
        while let Some(meta) = listing.next().await {
            keys.push(meta.map_err(|e| store_error("list", e))?.location.to_string());
        }
        keys.sort();
        Ok(keys)
    }

    async fn copy_from_url(&mut self, key: String, url: String) -> Result<u64, String> {
        crate::caps::trace_call!("blob.copy-from-url {key}");
        let (bucket, path) = self.open(&key)?;
        let cap = self
            .grant
            .as_ref()
            .and_then(|g| g.max_copy_bytes)
            .unwrap_or(DEFAULT_MAX_COPY_BYTES);
        let url = reqwest::Url::parse(&url).map_err(|e| format!("copy-from-url: bad URL: {e}"))?;
        self.policy
            .check_url(&url)
            .map_err(|r| format!("copy-from-url: {r}"))?;
        let sent = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if sent > self.policy.max_requests_per_event {
            return Err(format!(
                "copy-from-url: {}",
                Refusal::Limit(format!(
                    "more than {} requests in one event",
                    self.policy.max_requests_per_event
                ))
            ));
        }
        let mut response = self
            .http
            .client(&self.policy)
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("copy-from-url: GET {}: {}", shown(&url), error_chain(e)))?;
        if !response.status().is_success() {
            return Err(format!(
                "copy-from-url: GET {} answered {}",
                shown(&url),
                response.status()
            ));
        }
        if let Some(length) = response.content_length()
            && length > cap
        {
            return Err(format!(
                "copy-from-url: {} is {length} bytes, over the cap of {cap}",
                shown(&url)
            ));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut writer = BufWriter::new(bucket.store.clone(), path)
            .with_attributes(content_type_attributes(&bucket, content_type));
        let mut total: u64 = 0;
        let outcome: Result<(), String> = async {
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| format!("copy-from-url: reading {}: {}", shown(&url), error_chain(e)))?
            {
                total += chunk.len() as u64;
                if total > cap {
                    return Err(format!(
                        "copy-from-url: {} is over the cap of {cap} bytes",
                        shown(&url)
                    ));
                }
                writer
                    .put(chunk)
                    .await
                    .map_err(|e| store_error("copy-from-url", e))?;
            }
            writer
                .shutdown()
                .await
                .map_err(|e| format!("copy-from-url: finishing the upload: {e}"))
        }
        .await;
        if let Err(e) = outcome {
            let _ = writer.abort().await;
            return Err(e);
        }
        tracing::debug!(bucket = %bucket.name, key = %key, bytes = total, "copied from URL");
        Ok(total)
    }

    async fn presign_get(&mut self, key: String, ttl_seconds: u32) -> Result<String, String> {
        crate::caps::trace_call!("blob.presign-get {key} ({ttl_seconds} s)");
        let (bucket, path) = self.open(&key)?;
        match (&bucket.s3, &bucket.root) {
            (Some(s3), _) => s3
                .signed_url(
                    object_store::signer::Method::GET,
                    &path,
                    Duration::from_secs(ttl_seconds.clamp(1, 7 * 24 * 3600) as u64),
                )
                .await
                .map(|u| u.to_string())
                .map_err(|e| store_error("presign-get", e)),
            (None, Some(root)) => Ok(file_url(root, &key)),
            (None, None) => Err("presign-get: no backend".into()),
        }
    }

    async fn object_url(&mut self, key: String) -> Result<String, String> {
        crate::caps::trace_call!("blob.object-url {key}");
        let (bucket, _) = self.open(&key)?;
        Ok(match &bucket.root {
            Some(root) => file_url(root, &key),
            None => format!("s3://{}/{key}", bucket.name),
        })
    }
}

fn file_url(root: &std::path::Path, key: &str) -> String {
    format!("file://{}/{key}", root.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_prefix() {
        assert!(check_key("avatars/", "avatars/a/lora/r/x.safetensors").is_ok());
        for bad in [
            "other/x",
            "/avatars/x",
            "avatars/../etc/passwd",
            "avatars/./x",
            "avatars//x",
            "avatars/x/",
            "avatars\\..\\x",
            "avatars/\u{0}x",
            "",
            "avatar",
        ] {
            assert!(check_key("avatars/", bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn grants_are_validated() {
        let grant = |prefix: &str, bucket: Option<&str>| BlobGrant {
            prefix: prefix.into(),
            bucket: bucket.map(str::to_string),
            max_copy_bytes: None,
        };
        assert!(grant("avatars/", None).validate().is_ok());
        assert!(grant("", None).validate().is_err());
        assert!(grant("../x/", None).validate().is_err());
        assert!(grant("a/", Some("UPPER")).validate().is_err());
        assert!(grant("a/", Some("aisha-bucket")).validate().is_ok());
        assert!(grant("webhook-host/", None).validate().is_err());
        assert!(grant("web", None).validate().is_err());
        assert!(grant("webhook-host/plugins/x/", None).validate().is_err());
    }

    #[tokio::test]
    async fn local_folder_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let service = Arc::new(BlobService::new(StorageSettings {
            s3: None,
            bucket: "test-bucket".into(),
            local_dir: dir.path().to_path_buf(),
        }));
        let outbound = crate::config::OutboundSettings::default();
        let mut blob = BlobState::new(
            service,
            Some(BlobGrant {
                prefix: "p/".into(),
                ..BlobGrant::default()
            }),
            HttpService::new(&outbound).unwrap(),
            Arc::new(HttpPolicy::new(None, &outbound).unwrap()),
            Arc::default(),
        );
        blob.put("p/a/1".into(), b"one".to_vec(), Some("text/plain".into()))
            .await
            .unwrap();
        blob.put("p/a/2".into(), b"two".to_vec(), None).await.unwrap();
        assert_eq!(blob.get("p/a/1".into()).await.unwrap().unwrap(), b"one");
        assert_eq!(blob.get("p/missing".into()).await.unwrap(), None);
        assert_eq!(blob.list_keys("p/a/".into()).await.unwrap(), ["p/a/1", "p/a/2"]);
        blob.delete("p/a/1".into()).await.unwrap();
        blob.delete("p/a/1".into()).await.unwrap();
        assert_eq!(blob.list_keys("p/".into()).await.unwrap(), ["p/a/2"]);
        assert!(blob.put("q/x".into(), vec![], None).await.is_err());
        assert!(blob.list_keys("q".into()).await.is_err());
        let err = blob
            .copy_from_url("p/c".into(), "https://example.com/f".into())
            .await
            .unwrap_err();
        assert!(err.contains("allow-list"), "{err}");
        assert!(
            blob.object_url("p/a/2".into())
                .await
                .unwrap()
                .starts_with("file://")
        );
        assert!(dir.path().join("test-bucket/p/a/2").exists());
    }
}
