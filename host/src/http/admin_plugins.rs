//! The plugin half of the admin API (`/admin/v1/plugins…`, same bearer
//! token): list and inspect plugins, upload a version (validated and
//! compiled before it is stored), activate, roll back, remove.
//!
//! An activation is committed in the store and swapped in on this instance
//! before the answer; other instances follow through `NOTIFY` (PostgreSQL)
//! or their poll.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::Admin;
use super::error::ApiError;
use super::state::AppState;
use crate::manifest::Manifest;

/// Largest upload (a base64 component plus its manifest).
const MAX_UPLOAD_BYTES: usize = 64 << 20;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/plugins", get(list).post(upload))
        .route("/admin/v1/plugins/{name}", get(inspect))
        .route("/admin/v1/plugins/{name}/activate", post(activate))
        .route("/admin/v1/plugins/{name}/rollback", post(rollback))
        .route("/admin/v1/plugins/{name}/versions/{version}", delete(remove))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
}

fn refused(error: anyhow::Error) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "plugin_refused",
        format!("{error:#}"),
    )
}

fn store_error(error: anyhow::Error) -> ApiError {
    let text = format!("{error:#}");
    if text.contains("has no") || text.contains("ambiguous") || text.contains("is active") {
        ApiError::new(StatusCode::CONFLICT, "plugin_state", text)
    } else {
        ApiError::unavailable("the plugin store", &error)
    }
}

/// Makes this instance load the store's active versions now.
pub(super) async fn swap_here(state: &AppState) {
    if let Err(e) = state.plugin_sync.sync_once().await {
        tracing::warn!("plugin sync after an admin change failed: {e:#}");
    }
}

async fn list(_: Admin, State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let versions = state
        .plugin_sync
        .store
        .versions(None)
        .await
        .map_err(store_error)?;
    let loaded = state.plugins.snapshot();
    let mut plugins: Vec<Value> = Vec::new();
    let mut names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    names.dedup();
    for name in names {
        let of: Vec<_> = versions.iter().filter(|v| v.name == name).collect();
        plugins.push(json!({
            "name": name,
            "active_version": of.iter().find(|v| v.active).map(|v| &v.version),
            "loaded_version": loaded.get(name).map(|p| &p.version),
            "versions": of,
        }));
    }
    Ok(Json(
        json!({ "instance_id": state.instance_id, "plugins": plugins }),
    ))
}

async fn inspect(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = &state.plugin_sync.store;
    let versions = store.versions(Some(&name)).await.map_err(store_error)?;
    let Some(active) = versions.iter().find(|v| v.active) else {
        return Err(ApiError::not_found(format!("no plugin {name}")));
    };
    let manifest = store
        .manifest(&name, &active.version)
        .await
        .map_err(store_error)?;
    let loaded = state.plugins.get(&name);
    Ok(Json(json!({
        "name": name,
        "active_version": active.version,
        "loaded_version": loaded.as_ref().map(|p| &p.version),
        "imports": loaded.as_ref().map(|p| &p.imports),
        "limits": loaded.as_ref().map(|p| json!({
            "memory_mb": p.limits.memory_bytes >> 20,
            "timeout_ms": p.limits.timeout.as_millis() as u64,
        })),
        "manifest": manifest,
        "versions": versions,
    })))
}

#[derive(Deserialize)]
struct Upload {
    /// The manifest, TOML.
    manifest: String,
    /// The component, base64.
    component_base64: String,
    /// Activate it at once.
    #[serde(default)]
    activate: bool,
    /// Who deploys (recorded with the version).
    #[serde(default)]
    by: Option<String>,
}

async fn upload(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Json(upload): Json<Upload>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let manifest =
        Manifest::parse(&upload.manifest).map_err(|e| refused(e.context("the manifest is not valid")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(upload.component_base64.trim())
        .map_err(|e| refused(anyhow::anyhow!("component_base64 is not base64: {e}")))?;
    let plugin = state
        .plugin_sync
        .validate(&manifest, &upload.manifest, &bytes)
        .await
        .map_err(refused)?;
    let by = upload.by.unwrap_or_else(|| "admin-api".into());
    let store = &state.plugin_sync.store;
    let version = store
        .add_version(&manifest, &upload.manifest, &bytes, &by)
        .await
        .map_err(store_error)?;
    debug_assert_eq!(version, plugin.version);
    if upload.activate {
        store
            .activate(&manifest.name, &version, &by)
            .await
            .map_err(store_error)?;
        swap_here(&state).await;
    }
    tracing::info!(plugin = %manifest.name, version = crate::manifest::short_version(&version), activated = upload.activate, by = %by, "plugin version uploaded");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": manifest.name,
            "version": version,
            "imports": plugin.imports,
            "activated": upload.activate,
        })),
    ))
}

#[derive(Deserialize)]
struct Activate {
    version: String,
    #[serde(default)]
    by: Option<String>,
}

async fn activate(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(body): Json<Activate>,
) -> Result<Json<Value>, ApiError> {
    let by = body.by.unwrap_or_else(|| "admin-api".into());
    let version = state
        .plugin_sync
        .store
        .activate(&name, &body.version, &by)
        .await
        .map_err(store_error)?;
    swap_here(&state).await;
    tracing::info!(plugin = %name, version = crate::manifest::short_version(&version), by = %by, "plugin version activated");
    Ok(Json(json!({ "name": name, "active_version": version })))
}

async fn rollback(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let version = state
        .plugin_sync
        .store
        .rollback(&name, "admin-api")
        .await
        .map_err(store_error)?;
    swap_here(&state).await;
    tracing::info!(plugin = %name, version = crate::manifest::short_version(&version), "plugin rolled back");
    Ok(Json(json!({ "name": name, "active_version": version })))
}

async fn remove(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = state
        .plugin_sync
        .store
        .remove(&name, &version)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "name": name, "removed_version": version })))
}
