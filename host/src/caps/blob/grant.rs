//! The `blob` grant in a plugin's manifest, and the shape every key must
//! have: `blob = { prefix = "avatars/", bucket = "…", max_copy_bytes = … }`.

use anyhow::{Result, bail};
use serde::Deserialize;

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
pub fn check_key_shape(key: &str) -> Result<(), String> {
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
