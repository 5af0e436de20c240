//! Plugin manifests (`<name>.toml`, owned by the operator): the plugin's
//! name, limits, grants, config values, secret references, routes and
//! schedules, parsed and checked.
//!
//! A leaf: it imports only the settings' plain types and each capability's
//! own grant type (`caps::*::grant`, leaves too), so every room above can
//! read a manifest without an import circle.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::caps::blob::grant::BlobGrant;
use crate::caps::db::grant::DbGrant;
use crate::caps::http::grant::HttpGrant;
use crate::config::RuntimeSettings;
use crate::config::routes::RouteConfig;
use crate::config::secret::SecretRef;
use crate::verify::preset::Preset;

/// A plugin manifest (`<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name; routes refer to it.
    pub name: String,
    /// What it is: `handler` (the default), `verifier` or `responder`.
    #[serde(default)]
    pub kind: PluginKind,
    /// Component file, relative to the manifest; default `<name>.wasm`.
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub limits: ManifestLimits,
    #[serde(default)]
    pub grants: Grants,
    /// Values the plugin reads through the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the plugin reads through `config.secret`: name → `env:NAME`
    /// or `file:/path`. Only the reference is in the manifest.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Routes the plugin serves at `/hooks/<name>`, besides any the host's
    /// config gives it. A name the config or another plugin already serves
    /// is refused at deploy.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Work the host runs on a timer through the plugin's `scheduled`
    /// export, on one instance at a time.
    #[serde(default)]
    pub schedules: Vec<ManifestSchedule>,
    /// Provider presets its routes may name (`[[providers]]`, the schema of
    /// `host/providers/*.toml`): deployed, activated and rolled back with
    /// the plugin on every instance, and seen by this manifest's routes only.
    #[serde(default)]
    pub providers: Vec<Preset>,
}

/// What a plugin is: a handler of stored events, or a verifier or a
/// responder, run on a request before anything is stored (the `verifier`
/// and `responder` worlds): those get a tight budget by default and no
/// database, storage or key-value store, nor routes or schedules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    #[default]
    Handler,
    Verifier,
    Responder,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::Verifier => "verifier",
            Self::Responder => "responder",
        }
    }
}

/// The default budget of a verifier's or responder's call, and its memory.
pub const GATE_TIMEOUT_MS: u64 = 50;
pub const GATE_MEMORY_MB: u64 = 16;

/// What a plugin's manifest grants it: one field per capability that is
/// not universal, each the capability's own grant type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// SQL in its event's transaction: `db = true`, or
    /// `db = { role = "…" }` to run as that database role (required in
    /// PostgreSQL mode, where the role's table grants are what the plugin may touch).
    #[serde(default, deserialize_with = "crate::caps::db::grant::deserialize")]
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
        if let Some(http) = &self.http {
            http.validate()?;
        }
        Ok(())
    }
}

/// A schedule declared by a plugin's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSchedule {
    /// Passed to `run-scheduled`.
    pub name: String,
    /// Seconds from the end of one run to the start of the next (longer
    /// after failures: the interval doubles per failure, up to 32 times).
    pub every_secs: u64,
}

/// Limits a manifest may set; unset ones take the host's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_db_calls: Option<u32>,
}

/// Resource limits of one plugin, the manifest's over the host's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// `db` calls one event may make.
    pub max_db_calls: u32,
}

/// Whether `name` is non-empty and every character passes `ok`.
fn well_formed(name: &str, ok: impl Fn(char) -> bool) -> bool {
    !name.is_empty() && name.chars().all(ok)
}

fn route_or_schedule_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        let name_ok = well_formed(&manifest.name, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
        });
        if !name_ok {
            bail!(
                "plugin name {:?} must be lowercase letters, digits, '-' or '_'",
                manifest.name
            );
        }
        manifest.grants.validate()?;
        manifest.secret_refs()?;
        if manifest.kind != PluginKind::Handler {
            let kind = manifest.kind.as_str();
            let grants = &manifest.grants;
            if grants.db.is_some() || grants.blob.is_some() || grants.kv {
                bail!("a {kind} runs before anything is stored: it may be granted only http");
            }
            if !manifest.routes.is_empty() || !manifest.schedules.is_empty() || !manifest.providers.is_empty()
            {
                bail!("a {kind} declares no routes, schedules or providers: routes name it");
            }
        }
        for preset in &manifest.providers {
            preset
                .check()
                .map_err(|e| anyhow::anyhow!("provider {}: {e}", preset.name))?;
        }
        let mut seen = BTreeSet::new();
        for route in &manifest.routes {
            if !well_formed(&route.name, route_or_schedule_char) {
                bail!("route name {:?} must be letters, digits, '-' or '_'", route.name);
            }
            if !seen.insert(route.name.as_str()) {
                bail!("route {:?} is declared twice", route.name);
            }
            if route.path.is_some() || !route.plugin.is_empty() {
                bail!(
                    "route {:?}: a plugin's routes are its own, at /hooks/<name>; `path` and `plugin` belong in the host's config",
                    route.name
                );
            }
        }
        let mut seen = BTreeSet::new();
        for schedule in &manifest.schedules {
            if !well_formed(&schedule.name, route_or_schedule_char) || schedule.name.len() > 64 {
                bail!(
                    "schedule name {:?} must be letters, digits, '-' or '_'",
                    schedule.name
                );
            }
            if !seen.insert(schedule.name.as_str()) {
                bail!("schedule {:?} is declared twice", schedule.name);
            }
            if schedule.every_secs == 0 {
                bail!("schedule {:?}: every_secs must be at least 1", schedule.name);
            }
        }
        Ok(manifest)
    }

    /// The `[secrets]` references, parsed.
    pub fn secret_refs(&self) -> Result<BTreeMap<String, SecretRef>> {
        self.secrets
            .iter()
            .map(|(name, entry)| match SecretRef::parse(entry) {
                Some(reference) => Ok((name.clone(), reference)),
                None => bail!("secret {name:?}: {entry:?} must be env:NAME or file:/path"),
            })
            .collect()
    }

    pub fn limits(&self, defaults: &RuntimeSettings) -> Limits {
        let (memory_mb, timeout_ms) = match self.kind {
            PluginKind::Handler => (defaults.memory_limit_mb, defaults.timeout_ms),
            PluginKind::Verifier | PluginKind::Responder => (GATE_MEMORY_MB, GATE_TIMEOUT_MS),
        };
        Limits {
            memory_bytes: (self.limits.memory_mb.unwrap_or(memory_mb) as usize) << 20,
            timeout: Duration::from_millis(self.limits.timeout_ms.unwrap_or(timeout_ms)),
            max_db_calls: self.limits.max_db_calls.unwrap_or(defaults.max_db_calls),
        }
    }
}

/// A version id's first 12 characters: enough to tell versions apart in
/// logs, metric labels and listings.
pub fn short_version(version: &str) -> &str {
    &version[..version.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_takes_limits_grants_and_config() {
        let m = Manifest::parse(
            "name = \"fal-avatar-status\"\n[limits]\nmemory_mb = 32\n[grants]\ndb = true\n[config]\nk = \"v\"\n",
        )
        .unwrap();
        assert_eq!(m.grants.db, Some(DbGrant::default()));
        assert_eq!(m.config["k"], "v");
        let limits = m.limits(&RuntimeSettings::default());
        assert_eq!(limits.memory_bytes, 32 << 20);
        assert_eq!(
            limits.timeout,
            Duration::from_millis(RuntimeSettings::default().timeout_ms)
        );
    }

    #[test]
    fn manifest_rejects_bad_names_and_unknown_keys() {
        assert!(Manifest::parse("name = \"../etc\"").is_err());
        assert!(Manifest::parse("name = \"ok\"\n[grants]\nroot = true\n").is_err());
        let m = Manifest::parse("name = \"ok\"\n[grants]\ndb = { role = \"fal_avatar_status\" }\n").unwrap();
        assert_eq!(m.grants.db_role(), Some("fal_avatar_status"));
        assert!(Manifest::parse("name = \"ok\"\n[grants]\ndb = { role = \"x; DROP\" }\n").is_err());
    }

    #[test]
    fn verifiers_and_responders_get_a_tight_budget_and_no_storage() {
        let m = Manifest::parse(
            "name = \"v\"\nkind = \"verifier\"\n[grants]\nhttp = { allow = [\"https://keys.test\"] }\n",
        )
        .unwrap();
        let limits = m.limits(&RuntimeSettings::default());
        assert_eq!(
            (limits.timeout, limits.memory_bytes),
            (Duration::from_millis(50), 16 << 20)
        );
        for extra in [
            "[grants]\ndb = true",
            "[grants]\nkv = true",
            "[[routes]]\nname = \"r\"",
            "[[schedules]]\nname = \"s\"\nevery_secs = 1",
        ] {
            for kind in ["verifier", "responder"] {
                let text = format!("name = \"v\"\nkind = \"{kind}\"\n{extra}\n");
                assert!(Manifest::parse(&text).is_err(), "{text}");
            }
        }
        assert!(Manifest::parse("name = \"v\"\nkind = \"gatekeeper\"\n").is_err());
    }

    #[test]
    fn a_plugins_routes_are_its_own_at_hooks() {
        let m = Manifest::parse("name = \"gh\"\n[[routes]]\nname = \"github\"\nbody = \"any\"\n").unwrap();
        assert_eq!(m.routes[0].name, "github");
        for foreign in ["path = \"/x\"", "plugin = \"other\""] {
            let text = format!("name = \"gh\"\n[[routes]]\nname = \"github\"\n{foreign}\n");
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains("belong in the host's config"), "{err}");
        }
        assert!(Manifest::parse("name = \"gh\"\n[[routes]]\nname = \"github\"\ncolour = 1\n").is_err());
    }
}
