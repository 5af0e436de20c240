//! Capabilities: what a plugin can reach, one module each.
//!
//! Each capability has its per-instance state (held in the runtime's
//! `State`), its host implementation of the WIT interface, and, where access
//! is not universal, a grant in the plugin manifest checked when the plugin
//! loads. Adding one means a module here and a line in [`add_to_linker`].

/// Records one capability call at debug level under the target
/// `webhook_host::trace`: what `webhook-host plugin test` prints. Never
/// given secret values or bodies.
macro_rules! trace_call {
    ($($arg:tt)*) => {
        tracing::debug!(target: "webhook_host::trace", $($arg)*)
    };
}
pub(crate) use trace_call;

pub mod blob;
pub mod config;
pub mod db;
mod db_postgres;
pub mod db_sqlite_grants;
pub mod http;
pub mod kv;
pub mod log;

use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use crate::config::{OutboundSettings, Settings};
use crate::runtime::State;
use crate::runtime::bindings::webhook::plugin;
pub use blob::{BlobGrant, BlobService};
pub use http::{HttpGrant, HttpService};
pub use kv::KvService;

/// The host-side backends capabilities share across instances: one object
/// store handle, one Redis connection, one pair of HTTP clients.
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
            blob: Arc::new(BlobService::new(crate::config::StorageSettings {
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

/// What a plugin's manifest grants it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// SQL in its event's transaction: `db = true`, or
    /// `db = { role = "…" }` to run as that database role (required in
    /// PostgreSQL mode, where the role's table grants are what the plugin may touch).
    #[serde(default, deserialize_with = "db_grant")]
    pub db: Option<DbGrant>,
    /// Object storage: `blob = { prefix = "avatars/", bucket = "…" }`.
    #[serde(default)]
    pub blob: Option<BlobGrant>,
    /// Outbound HTTP: `http = { allow = ["https://api.telegram.org"] }`.
    #[serde(default)]
    pub http: Option<HttpGrant>,
    /// The key-value store under the plugin's own prefix: `kv = true`.
    #[serde(default)]
    pub kv: bool,
}

/// The `db` grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbGrant {
    /// The PostgreSQL role statements run as (`SET LOCAL ROLE`).
    #[serde(default)]
    pub role: Option<String>,
    /// SQLite (embedded mode): tables the plugin may read.
    #[serde(default)]
    pub read: Vec<String>,
    /// SQLite (embedded mode): tables the plugin may read and write.
    #[serde(default)]
    pub write: Vec<String>,
}

fn db_grant<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<DbGrant>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Flag(bool),
        Detailed(DbGrant),
    }
    let grant = match Form::deserialize(deserializer)? {
        Form::Flag(granted) => granted.then(DbGrant::default),
        Form::Detailed(grant) => Some(grant),
    };
    if let Some(role) = grant.as_ref().and_then(|g| g.role.as_deref()) {
        let valid = role
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "db role {role:?} must be lowercase letters, digits and '_'"
            )));
        }
    }
    Ok(grant)
}

impl Grants {
    /// The database role the plugin's statements run as, if any.
    pub fn db_role(&self) -> Option<&str> {
        self.db.as_ref().and_then(|g| g.role.as_deref())
    }

    /// Checks the parts serde cannot (prefixes, buckets, allow-list entries).
    pub fn validate(&self) -> Result<()> {
        if let Some(blob) = &self.blob {
            blob.validate()?;
        }
        if self.http.is_some() {
            http::HttpPolicy::new(self.http.as_ref(), &OutboundSettings::default())?;
        }
        Ok(())
    }
}

/// Links every capability's host implementation.
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    plugin::types::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    plugin::db::add_to_linker::<State, HasSelf<db::DbState>>(linker, |s| &mut s.db)?;
    plugin::config::add_to_linker::<State, HasSelf<config::ConfigState>>(linker, |s| &mut s.config)?;
    plugin::log::add_to_linker::<State, HasSelf<log::LogState>>(linker, |s| &mut s.log)?;
    plugin::blob::add_to_linker::<State, HasSelf<blob::BlobState>>(linker, |s| &mut s.blob)?;
    plugin::kv::add_to_linker::<State, HasSelf<kv::KvState>>(linker, |s| &mut s.kv)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

/// `types` has no functions; its (empty) host side sits on the store's state.
impl plugin::types::Host for State {}

/// Checks one import of a component against what the host provides and what
/// the plugin is granted. Names the missing grant.
pub fn check_import(import: &str, grants: &Grants) -> Result<()> {
    let (interface, _version) = import.split_once('@').unwrap_or((import, ""));
    let missing = |grant: &str| {
        bail!(
            "the component imports {import} but its manifest does not grant it: add `{grant}` under [grants]"
        )
    };
    match interface {
        "webhook:plugin/db" if grants.db.is_none() => missing("db = true"),
        "webhook:plugin/blob" if grants.blob.is_none() => missing("blob = { prefix = \"<prefix>/\" }"),
        "webhook:plugin/kv" if !grants.kv => missing("kv = true"),
        http if http.starts_with("wasi:http/") && grants.http.is_none() => {
            missing("http = { allow = [\"https://<host>\"] }")
        }
        "webhook:plugin/db"
        | "webhook:plugin/types"
        | "webhook:plugin/config"
        | "webhook:plugin/log"
        | "webhook:plugin/blob"
        | "webhook:plugin/kv" => Ok(()),
        wasi if wasi.starts_with("wasi:") => Ok(()),
        _ => bail!("the component imports {import}, which this host does not provide"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_import_needs_the_db_grant() {
        let err = check_import("webhook:plugin/db@0.1.0", &Grants::default()).unwrap_err();
        assert!(err.to_string().contains("db = true"));
        let granted = Grants {
            db: Some(DbGrant::default()),
            ..Grants::default()
        };
        assert!(check_import("webhook:plugin/db@0.1.0", &granted).is_ok());
    }

    #[test]
    fn blob_kv_and_http_imports_name_their_grants() {
        let none = Grants::default();
        for (import, grant) in [
            ("webhook:plugin/blob@0.1.0", "blob = {"),
            ("webhook:plugin/kv@0.1.0", "kv = true"),
            ("wasi:http/outgoing-handler@0.2.6", "http = {"),
            ("wasi:http/types@0.2.6", "http = {"),
        ] {
            let err = check_import(import, &none).unwrap_err().to_string();
            assert!(err.contains(grant) && err.contains(import), "{err}");
        }
        let all = Grants {
            blob: Some(BlobGrant {
                prefix: "x/".into(),
                ..BlobGrant::default()
            }),
            http: Some(HttpGrant::default()),
            kv: true,
            ..Grants::default()
        };
        for import in [
            "webhook:plugin/blob@0.1.0",
            "webhook:plugin/kv@0.1.0",
            "wasi:http/types@0.2.6",
        ] {
            assert!(check_import(import, &all).is_ok(), "{import}");
        }
    }

    #[test]
    fn unknown_imports_are_named() {
        let err = check_import("acme:secret/vault@1.0.0", &Grants::default()).unwrap_err();
        assert!(err.to_string().contains("acme:secret/vault@1.0.0"));
        assert!(check_import("wasi:cli/stdout@0.2.6", &Grants::default()).is_ok());
    }
}
