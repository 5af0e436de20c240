//! Plugins: the loaded set, the store of versions, following changes, OCI.
//!
//! In embedded mode plugins come from a folder: `<name>.toml` is the manifest
//! (owned by the operator, see [`crate::manifest`]) and `<name>.wasm` the
//! component (or the file the manifest's `component` names). The loaded set
//! ([`PluginSet`]) sits behind an `ArcSwap`, so the hot path reads it
//! without a lock and a reload swaps it whole; [`store`] keeps versions and
//! activations, [`sync`] loads the active ones and follows changes, [`oci`]
//! moves components to and from a registry.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::runtime::LoadedPlugin;

pub mod gate;
pub mod oci;
pub mod store;
pub mod sync;

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
