//! The plugin store: immutable, content-addressed versions (rows in the
//! database, component bytes in object storage under
//! `webhook-host/plugins/<name>/<version>.wasm`), each plugin's one active
//! version, and the history of activations that rollback walks.
//!
//! The same tables exist on both backends, so the admin API works in
//! embedded mode too. Activating commits the pointer and, on PostgreSQL,
//! `NOTIFY webhook_plugins` in the same transaction: every instance hears
//! it once the change is visible.

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::caps::blob::grant::HOST_PREFIX;
use crate::caps::blob::service::BlobService;
use crate::db::pool::{Db, on_pool};
use crate::manifest::{Manifest, short_version};

/// The channel instances listen on for activations.
pub const CHANNEL: &str = "webhook_plugins";

/// A plugin version's identity: the sha256 of its component and manifest,
/// so a changed manifest (config, grants, limits) is a new version too.
pub fn version_of(component: &[u8], manifest_text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(Sha256::digest(component));
    hash.update(Sha256::digest(manifest_text.as_bytes()));
    hex::encode(hash.finalize())
}

/// One stored version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub active: bool,
}

/// The active version of a plugin, ready to load.
#[derive(Debug, Clone)]
pub struct ActiveVersion {
    pub name: String,
    pub version: String,
    pub manifest: String,
}

pub struct PluginStore {
    db: Db,
    blobs: Arc<BlobService>,
}

/// Where a version's component lives: under the host's own prefix of the
/// default bucket, which no plugin's grant reaches.
fn artifact_key(name: &str, version: &str) -> String {
    format!("{HOST_PREFIX}plugins/{name}/{version}.wasm")
}

impl PluginStore {
    pub fn new(db: Db, blobs: Arc<BlobService>) -> Self {
        Self { db, blobs }
    }

    pub fn is_shared(&self) -> bool {
        self.db.is_shared()
    }

    /// Stores a version (idempotent: the same bytes and manifest are the
    /// same version). The caller has validated it. True when it is new.
    pub async fn add_version(
        &self,
        manifest: &Manifest,
        text: &str,
        component: &[u8],
        by: &str,
    ) -> Result<String> {
        let version = version_of(component, text);
        let key = artifact_key(&manifest.name, &version);
        self.put_component(&manifest.name, &version, component).await?;
        let sql = "INSERT INTO plugin_versions (name, version, manifest, artifact_key, created_at, created_by) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version) DO NOTHING";
        on_pool!(&self.db, |pool| sqlx::query(sql)
            .bind(&manifest.name)
            .bind(&version)
            .bind(text)
            .bind(&key)
            .bind(crate::now_ms())
            .bind(by)
            .execute(pool)
            .await
            .map(|_| ())
            .context("recording the version")?);
        Ok(version)
    }

    /// Stores a version's component bytes (idempotent).
    pub async fn put_component(&self, name: &str, version: &str, component: &[u8]) -> Result<()> {
        self.blobs
            .put_object(&artifact_key(name, version), component.to_vec())
            .await
            .context("storing the component")
    }

    /// Makes `version` the active one of `name`. `version` may be a unique
    /// prefix of the full id.
    pub async fn activate(&self, name: &str, version: &str, by: &str) -> Result<String> {
        let version = self.resolve(name, version).await?;
        let now = crate::now_ms();
        let upsert = "INSERT INTO plugins (name, active_version, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                      ON CONFLICT (name) DO UPDATE SET active_version = $2, updated_at = $3, updated_by = $4";
        let history = "INSERT INTO plugin_activations (name, version, activated_at, activated_by) VALUES ($1, $2, $3, $4)";
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [upsert, history] {
                sqlx::query(sql)
                    .bind(name)
                    .bind(&version)
                    .bind(now)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
            }
            if self.is_shared() {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(version)
    }

    /// Activates the version that was active before the current one.
    pub async fn rollback(&self, name: &str, by: &str) -> Result<String> {
        let current = self
            .active_version(name)
            .await?
            .with_context(|| format!("plugin {name} has no active version"))?;
        let sql = "SELECT version FROM plugin_activations WHERE name = $1 AND version <> $2 ORDER BY id DESC LIMIT 1";
        let previous: Option<(String,)> = on_pool!(&self.db, |pool| sqlx::query_as(sql)
            .bind(name)
            .bind(&current)
            .fetch_optional(pool)
            .await?);
        let Some((previous,)) = previous else {
            bail!("plugin {name} has no earlier version to roll back to");
        };
        self.activate(name, &previous, by).await
    }

    /// Deletes a version that is not active.
    pub async fn remove(&self, name: &str, version: &str) -> Result<String> {
        let version = self.resolve(name, version).await?;
        if self.active_version(name).await?.as_deref() == Some(version.as_str()) {
            bail!(
                "version {} of {name} is active; activate another one first",
                short_version(&version)
            );
        }
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM plugin_activations WHERE name = $1 AND version = $2",
                "DELETE FROM plugin_versions WHERE name = $1 AND version = $2",
            ] {
                sqlx::query(sql)
                    .bind(name)
                    .bind(&version)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(version)
    }

    pub async fn has_version(&self, name: &str, version: &str) -> Result<bool> {
        let row: Option<(String,)> = on_pool!(&self.db, |pool| sqlx::query_as(
            "SELECT version FROM plugin_versions WHERE name = $1 AND version = $2"
        )
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await?);
        Ok(row.is_some())
    }

    pub async fn active_version(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(&self.db, |pool| sqlx::query_as(
            "SELECT active_version FROM plugins WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await?);
        Ok(row.map(|(v,)| v))
    }

    /// A full version id from a unique prefix (at least 8 characters).
    async fn resolve(&self, name: &str, prefix: &str) -> Result<String> {
        if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("version {prefix:?}: give at least 8 hex characters of the version id");
        }
        let rows: Vec<(String,)> = on_pool!(&self.db, |pool| sqlx::query_as(
            "SELECT version FROM plugin_versions WHERE name = $1 AND version LIKE $2 LIMIT 2"
        )
        .bind(name)
        .bind(format!("{prefix}%"))
        .fetch_all(pool)
        .await?);
        match rows.as_slice() {
            [(version,)] => Ok(version.clone()),
            [] => bail!("plugin {name} has no version {prefix}"),
            _ => bail!("version prefix {prefix} of {name} is ambiguous"),
        }
    }

    /// Every version (of one plugin, or of all), newest first.
    pub async fn versions(&self, name: Option<&str>) -> Result<Vec<VersionInfo>> {
        let sql = "SELECT v.name, v.version, v.created_at, v.created_by, \
                   CASE WHEN p.active_version = v.version THEN 1 ELSE 0 END \
                   FROM plugin_versions v LEFT JOIN plugins p ON p.name = v.name \
                   WHERE $1 = '' OR v.name = $1 ORDER BY v.name, v.created_at DESC, v.version";
        let rows: Vec<(String, String, i64, String, i32)> = on_pool!(&self.db, |pool| sqlx::query_as(sql)
            .bind(name.unwrap_or(""))
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(name, version, created_at_ms, created_by, active)| VersionInfo {
                name,
                version,
                created_at_ms,
                created_by,
                active: active == 1,
            })
            .collect())
    }

    /// The manifest text of one version.
    pub async fn manifest(&self, name: &str, version: &str) -> Result<String> {
        let row: Option<(String,)> = on_pool!(&self.db, |pool| sqlx::query_as(
            "SELECT manifest FROM plugin_versions WHERE name = $1 AND version = $2"
        )
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await?);
        row.map(|(m,)| m)
            .with_context(|| format!("plugin {name} has no version {version}"))
    }

    /// The active version of every plugin.
    pub async fn active(&self) -> Result<Vec<ActiveVersion>> {
        let rows: Vec<(String, String, String)> = on_pool!(&self.db, |pool| sqlx::query_as(
            "SELECT p.name, p.active_version, v.manifest FROM plugins p \
             JOIN plugin_versions v ON v.name = p.name AND v.version = p.active_version ORDER BY p.name"
        )
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(name, version, manifest)| ActiveVersion {
                name,
                version,
                manifest,
            })
            .collect())
    }

    /// The component bytes of a version.
    pub async fn component(&self, name: &str, version: &str) -> Result<Vec<u8>> {
        self.blobs
            .get_object(&artifact_key(name, version))
            .await
            .with_context(|| format!("fetching the component of {name} {}", short_version(version)))
    }
}
