//! One instance's view of storage: its grant, and the shared service and
//! outbound gate it reaches them through.

use std::sync::Arc;

use object_store::Attribute;
use object_store::Attributes;
use object_store::path::Path as ObjectPath;

use super::grant::{BlobGrant, check_key_shape};
use super::service::{BlobService, Bucket};
use crate::caps::http::{HttpService, Outbound};

/// Largest object `get` hands to a plugin.
pub(super) const MAX_GET_BYTES: u64 = 64 << 20;

/// Checks `key` against the grant's prefix; the object path on success.
pub fn check_key(prefix: &str, key: &str) -> Result<ObjectPath, String> {
    check_key_shape(key).map_err(|e| format!("key {key:?}: {e}"))?;
    if !key.starts_with(prefix) {
        return Err(format!("key {key:?} is outside the plugin's prefix {prefix:?}"));
    }
    ObjectPath::parse(key).map_err(|e| format!("key {key:?}: {e}"))
}

/// One instance's view of storage.
pub struct BlobState {
    pub(super) service: Arc<BlobService>,
    pub(super) grant: Option<BlobGrant>,
    pub(super) http: HttpService,
    /// Shared with the instance's `wasi:http` hooks: one gate and budget per event.
    pub(super) outbound: Arc<Outbound>,
}

impl BlobState {
    pub fn new(
        service: Arc<BlobService>,
        grant: Option<BlobGrant>,
        http: HttpService,
        outbound: Arc<Outbound>,
    ) -> Self {
        Self {
            service,
            grant,
            http,
            outbound,
        }
    }

    pub(super) fn open(&self, key: &str) -> Result<(Arc<Bucket>, ObjectPath), String> {
        let grant = self.grant.as_ref().ok_or("the plugin has no blob grant")?;
        let path = check_key(&grant.prefix, key)?;
        let bucket = self
            .service
            .bucket(grant.bucket.as_deref())
            .map_err(|e| format!("{e:#}"))?;
        Ok((bucket, path))
    }
}

pub(super) fn store_error(op: &str, e: object_store::Error) -> String {
    match e {
        object_store::Error::NotFound { path, .. } => format!("{op}: {path} not found"),
        other => format!("{op}: {other}"),
    }
}

pub(super) fn content_type_attributes(bucket: &Bucket, content_type: Option<String>) -> Attributes {
    let mut attributes = Attributes::new();
    if bucket.s3.is_some()
        && let Some(ct) = content_type
    {
        attributes.insert(Attribute::ContentType, ct.into());
    }
    attributes
}
