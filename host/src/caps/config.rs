//! `config`: the operator's per-plugin values from the manifest's `[config]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::runtime::bindings::config::Host;

/// One instance's view of its plugin's configuration.
pub struct ConfigState {
    values: Arc<BTreeMap<String, String>>,
}

impl ConfigState {
    pub fn new(values: Arc<BTreeMap<String, String>>) -> Self {
        Self { values }
    }
}

impl Host for ConfigState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.values.get(&key).cloned()
    }
}
