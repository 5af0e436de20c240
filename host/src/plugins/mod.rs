//! Plugins: manifests and the set of loaded plugins.
//!
//! In embedded mode plugins come from a folder: `<name>.toml` is the manifest
//! (owned by the operator) and `<name>.wasm` the component (or the file the
//! manifest's `component` names). The loaded set sits behind an `ArcSwap`, so
//! the hot path reads it without a lock and a reload swaps it whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::caps::Grants;
use crate::config::{RuntimeSettings, SecretRef};
use crate::runtime::{Limits, LoadedPlugin};

pub mod oci;
pub mod store;
pub mod sync;

/// A plugin manifest (`<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name; routes refer to it.
    pub name: String,
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
    pub routes: Vec<ManifestRoute>,
    /// Work the host runs on a timer through the plugin's `scheduled`
    /// export, on one instance at a time.
    #[serde(default)]
    pub schedules: Vec<ManifestSchedule>,
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

/// A route declared by a plugin's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRoute {
    pub name: String,
    #[serde(default)]
    pub verify: Vec<crate::config::VerifyConfig>,
    #[serde(default)]
    pub body: crate::config::BodyKind,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub delivery_id: crate::config::DeliveryIdSource,
}

/// Limits a manifest may set; unset ones take the host's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_db_calls: Option<u32>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        let name_ok = !manifest.name.is_empty()
            && manifest
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            bail!(
                "plugin name {:?} must be lowercase letters, digits, '-' or '_'",
                manifest.name
            );
        }
        manifest.grants.validate()?;
        manifest.secret_refs()?;
        let mut seen = std::collections::BTreeSet::new();
        for route in &manifest.routes {
            let ok = !route.name.is_empty()
                && route
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                bail!("route name {:?} must be letters, digits, '-' or '_'", route.name);
            }
            if !seen.insert(route.name.as_str()) {
                bail!("route {:?} is declared twice", route.name);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for schedule in &manifest.schedules {
            let ok = !schedule.name.is_empty()
                && schedule.name.len() <= 64
                && schedule
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
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
        Limits {
            memory_bytes: (self.limits.memory_mb.unwrap_or(defaults.memory_limit_mb) as usize) << 20,
            timeout: Duration::from_millis(self.limits.timeout_ms.unwrap_or(defaults.timeout_ms)),
            max_db_calls: self.limits.max_db_calls.unwrap_or(defaults.max_db_calls),
        }
    }
}

/// A version id's first 12 characters: enough to tell versions apart in
/// logs, metric labels and listings.
pub fn short_version(version: &str) -> &str {
    &version[..version.len().min(12)]
}

/// The loaded plugins by name, swapped whole on reload.
#[derive(Default)]
pub struct PluginSet {
    current: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
}

impl PluginSet {
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.current.load().get(name).cloned()
    }

    /// Names and versions of the loaded plugins, sorted by name.
    pub fn versions(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .current
            .load()
            .values()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        all.sort();
        all
    }

    /// The loaded plugins as one consistent snapshot.
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<LoadedPlugin>>> {
        self.current.load_full()
    }

    pub fn replace(&self, plugins: HashMap<String, Arc<LoadedPlugin>>) {
        self.current.store(Arc::new(plugins));
    }
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
        assert_eq!(m.grants.db, Some(crate::caps::DbGrant::default()));
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
}
