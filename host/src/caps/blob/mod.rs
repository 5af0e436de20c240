//! `blob`: object storage under the bucket and key prefix a plugin's grant
//! names.
//!
//! One API, two backends ([`service`]): S3 (MinIO in production) or a local
//! folder in embedded mode. `copy-from-url` ([`copy`]) streams a remote file,
//! admitted by the instance's outbound gate like any `wasi:http` request,
//! into storage chunk by chunk, so large files never enter the plugin's
//! memory.

mod copy;
pub mod grant;
pub mod service;
mod state;

use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutOptions, PutPayload};

use self::grant::check_key_shape;
pub use self::state::{BlobState, check_key};
use self::state::{MAX_GET_BYTES, content_type_attributes, store_error};
use crate::caps::capability::{Capability, InstanceContext};
use crate::caps::services::Services;
use crate::caps::trace::trace_call;
use crate::manifest::{Grants, Limits, Manifest};
use crate::wit::blob::Host;

impl Capability for BlobState {
    /// The plugin's grant, checked when its manifest was parsed.
    type Plugin = Option<grant::BlobGrant>;

    fn prepare(manifest: &Manifest, _: &Limits, _: &Services) -> anyhow::Result<Self::Plugin> {
        Ok(manifest.grants.blob.clone())
    }

    fn instance(grant: &Self::Plugin, cx: &mut InstanceContext<'_>) -> Self {
        BlobState::new(
            cx.services.blob.clone(),
            grant.clone(),
            cx.services.http.clone(),
            cx.outbound.clone(),
        )
    }

    fn missing_grant(grants: &Grants) -> Option<&'static str> {
        grants
            .blob
            .is_none()
            .then_some("blob = { prefix = \"<prefix>/\" }")
    }
}

impl Host for BlobState {
    async fn put(&mut self, key: String, data: Vec<u8>, content_type: Option<String>) -> Result<(), String> {
        trace_call!("blob.put {key} ({} bytes)", data.len());
        let (bucket, path) = self.open(&key)?;
        let options = PutOptions {
            attributes: content_type_attributes(&bucket, content_type),
            ..PutOptions::default()
        };
        bucket
            .store
            .put_opts(&path, PutPayload::from(bytes::Bytes::from(data)), options)
            .await
            .map(|_| ())
            .map_err(|e| store_error("put", e))
    }

    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        trace_call!("blob.get {key}");
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
        trace_call!("blob.delete {key}");
        let (bucket, path) = self.open(&key)?;
        match bucket.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("delete", e)),
        }
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, String> {
        trace_call!("blob.list-keys {prefix}");
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
        let bucket = self
            .service
            .bucket(grant.bucket.as_deref())
            .map_err(|e| format!("{e:#}"))?;
        let mut keys = Vec::new();
        let mut listing = bucket.store.list(Some(&path));
        while let Some(meta) = listing.next().await {
            keys.push(meta.map_err(|e| store_error("list", e))?.location.to_string());
        }
        keys.sort();
        Ok(keys)
    }

    async fn copy_from_url(&mut self, key: String, url: String) -> Result<u64, String> {
        trace_call!("blob.copy-from-url {key}");
        copy::copy_from_url(self, key, url).await
    }

    async fn presign_get(&mut self, key: String, ttl_seconds: u32) -> Result<String, String> {
        trace_call!("blob.presign-get {key} ({ttl_seconds} s)");
        let (bucket, path) = self.open(&key)?;
        match (&bucket.s3, &bucket.root) {
            (Some(s3), _) => {
                use object_store::signer::Signer;
                s3.signed_url(
                    object_store::signer::Method::GET,
                    &path,
                    Duration::from_secs(ttl_seconds.clamp(1, 7 * 24 * 3600) as u64),
                )
                .await
                .map(|u| u.to_string())
                .map_err(|e| store_error("presign-get", e))
            }
            (None, Some(root)) => Ok(file_url(root, &key)),
            (None, None) => Err("presign-get: no backend".into()),
        }
    }

    async fn object_url(&mut self, key: String) -> Result<String, String> {
        trace_call!("blob.object-url {key}");
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
    use std::sync::Arc;

    use super::*;
    use crate::caps::blob::grant::BlobGrant;
    use crate::caps::blob::service::BlobService;
    use crate::caps::http::{HttpPolicy, HttpService, Outbound};
    use crate::config::{OutboundSettings, StorageSettings};

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
        let outbound = OutboundSettings::default();
        let policy = Arc::new(HttpPolicy::new(None, &outbound).unwrap());
        let mut blob = BlobState::new(
            service,
            Some(BlobGrant {
                prefix: "p/".into(),
                ..BlobGrant::default()
            }),
            HttpService::new(&outbound).unwrap(),
            Outbound::new(policy, "test", "evt_test"),
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
