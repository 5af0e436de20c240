//! `blob.copy-from-url`: a remote file streamed into storage, never through
//! the plugin's memory. The request passes the instance's outbound gate
//! first, like every `wasi:http` request (same budget, log and metric).

use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use super::state::{BlobState, content_type_attributes, store_error};
use crate::caps::http::client::error_chain;

/// Default cap of one `copy-from-url`.
const DEFAULT_MAX_COPY_BYTES: u64 = 512 << 20;

/// The URL without its query string, for messages.
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Copies `url` to `key`; returns the bytes stored.
pub async fn copy_from_url(state: &BlobState, key: String, url: String) -> Result<u64, String> {
    let (bucket, path) = state.open(&key)?;
    let cap = state
        .grant
        .as_ref()
        .and_then(|g| g.max_copy_bytes)
        .unwrap_or(DEFAULT_MAX_COPY_BYTES);
    let url = reqwest::Url::parse(&url).map_err(|e| format!("copy-from-url: bad URL: {e}"))?;
    state
        .outbound
        .admit(&url)
        .map_err(|r| format!("copy-from-url: {r}"))?;
    let mut response = state
        .http
        .client(state.outbound.policy())
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
