//! `config`: the operator's per-plugin values from the manifest's `[config]`,
//! and its secrets from `[secrets]` (each `env:NAME` or `file:/path`, read
//! when the plugin asks, so a rotated file or variable takes effect without
//! a reload). A plugin sees only what its own manifest names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::SecretRef;
use crate::runtime::bindings::config::Host;

/// One instance's view of its plugin's configuration.
pub struct ConfigState {
    values: Arc<BTreeMap<String, String>>,
    secrets: Arc<BTreeMap<String, SecretRef>>,
}

impl ConfigState {
    pub fn new(values: Arc<BTreeMap<String, String>>, secrets: Arc<BTreeMap<String, SecretRef>>) -> Self {
        Self { values, secrets }
    }
}

impl Host for ConfigState {
    async fn get(&mut self, key: String) -> Option<String> {
        crate::caps::trace_call!("config.get {key}");
        self.values.get(&key).cloned()
    }

    async fn secret(&mut self, name: String) -> Option<String> {
        crate::caps::trace_call!("config.secret {name}");
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
