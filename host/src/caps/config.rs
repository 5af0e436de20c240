//! `config`: the operator's per-plugin values from the manifest's `[config]`,
//! and its secrets from `[secrets]` (each `env:NAME` or `file:/path`, read
//! when the plugin asks, so a rotated file or variable takes effect without
//! a reload). A plugin sees only what its own manifest names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::caps::capability::{Capability, InstanceContext};
use crate::caps::services::Services;
use crate::caps::trace::trace_call;
use crate::config::secret::SecretRef;
use crate::manifest::{Limits, Manifest};
use crate::wit::config::Host;

/// One instance's view of its plugin's configuration.
pub struct ConfigState {
    values: Arc<BTreeMap<String, String>>,
    secrets: Arc<BTreeMap<String, SecretRef>>,
}

/// A plugin version's configuration, read from its manifest once at load.
pub struct ConfigPlugin {
    values: Arc<BTreeMap<String, String>>,
    secrets: Arc<BTreeMap<String, SecretRef>>,
}

impl Capability for ConfigState {
    type Plugin = ConfigPlugin;

    fn prepare(manifest: &Manifest, _: &Limits, _: &Services) -> anyhow::Result<ConfigPlugin> {
        Ok(ConfigPlugin {
            values: Arc::new(manifest.config.clone()),
            secrets: Arc::new(manifest.secret_refs()?),
        })
    }

    fn instance(plugin: &ConfigPlugin, _: &mut InstanceContext<'_>) -> Self {
        Self {
            values: plugin.values.clone(),
            secrets: plugin.secrets.clone(),
        }
    }
}

impl Host for ConfigState {
    async fn get(&mut self, key: String) -> Option<String> {
        trace_call!("config.get {key}");
        self.values.get(&key).cloned()
    }

    async fn secret(&mut self, name: String) -> Option<String> {
        trace_call!("config.secret {name}");
        let reference = self.secrets.get(&name)?;
        match reference.read() {
            Ok(value) => value.map(|s| s.expose().to_string()),
            Err(e) => {
                tracing::warn!(secret = %name, "plugin secret unreadable: {e:#}");
                None
            }
        }
    }
}
