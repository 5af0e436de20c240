//! Keeps an instance's loaded plugins equal to the store's active versions.
//!
//! A version becomes live by an atomic swap of the [`PluginSet`]: events that
//! already hold the old `Arc<LoadedPlugin>` finish on it, new ones get the
//! new version. Instances learn of activations through `LISTEN
//! webhook_plugins` on PostgreSQL (a poll every few seconds is the
//! backstop) and at once on the instance that activated.
//!
//! The plugin folder seeds the store: in embedded mode it is watched (a
//! changed file is a new version, activated); on a shared database it only
//! supplies the first version of a plugin the store does not know yet, so a
//! restart never undoes an operator's deploy or rollback.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use super::PluginSet;
use super::store::{ActiveVersion, CHANNEL, PluginStore, version_of};
use crate::config::RuntimeSettings;
use crate::manifest::{Manifest, short_version};
use crate::routes::RouteTable;
use crate::runtime::{LoadedPlugin, Runtime};

/// How often an instance re-reads the store without being told.
const POLL: Duration = Duration::from_secs(3);
/// How often embedded mode re-reads the plugin folder.
const FOLDER_POLL: Duration = Duration::from_secs(2);

/// A plugin as found in the folder.
pub struct FolderPlugin {
    pub manifest: Manifest,
    pub text: String,
    pub bytes: Vec<u8>,
}

/// Reads every `<name>.toml` + component in `dir`; a plugin that cannot be
/// read is reported and skipped.
pub fn read_folder(dir: &Path) -> Vec<FolderPlugin> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "plugin folder unreadable or missing; no plugins from it");
        return Vec::new();
    };
    let mut manifests: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    manifests.sort();
    manifests
        .into_iter()
        .filter_map(|path| match read_one(&path) {
            Ok(plugin) => Some(plugin),
            Err(e) => {
                tracing::error!(manifest = %path.display(), "plugin not read: {e:#}");
                None
            }
        })
        .collect()
}

fn read_one(manifest_path: &Path) -> Result<FolderPlugin> {
    let text = std::fs::read_to_string(manifest_path).context("reading the manifest")?;
    let manifest = Manifest::parse(&text).context("parsing the manifest")?;
    let file = manifest
        .component
        .clone()
        .unwrap_or_else(|| format!("{}.wasm", manifest.name));
    let component = manifest_path.parent().unwrap_or(Path::new(".")).join(file);
    let bytes =
        std::fs::read(&component).with_context(|| format!("reading component {}", component.display()))?;
    Ok(FolderPlugin {
        manifest,
        text,
        bytes,
    })
}

pub struct PluginSync {
    pub store: Arc<PluginStore>,
    routes: Arc<RouteTable>,
    runtime: Arc<Runtime>,
    set: Arc<PluginSet>,
    defaults: RuntimeSettings,
    /// Versions that failed to load, so a poll does not compile them again.
    failed: Mutex<HashSet<String>>,
    kick: Notify,
}

impl PluginSync {
    pub fn new(
        store: Arc<PluginStore>,
        routes: Arc<RouteTable>,
        runtime: Arc<Runtime>,
        set: Arc<PluginSet>,
        defaults: RuntimeSettings,
    ) -> Self {
        Self {
            store,
            routes,
            runtime,
            set,
            defaults,
            failed: Mutex::default(),
            kick: Notify::new(),
        }
    }

    /// Checks a version the way a load does (a real component, imports
    /// covered by grants, limits within the host's, a role on a shared
    /// database), compiling it into the cache. Returns its version id.
    pub async fn validate(&self, manifest: &Manifest, text: &str, bytes: &[u8]) -> Result<LoadedPlugin> {
        if self.store.is_shared() && manifest.grants.db.is_some() && manifest.grants.db_role().is_none() {
            bail!(
                "plugin {}: on a shared database a db grant must name a role (db = {{ role = \"…\" }})",
                manifest.name
            );
        }
        for declared in &manifest.routes {
            if let Some(owner) = self.routes.taken_by(&declared.name, &manifest.name) {
                bail!(
                    "plugin {}: route {:?} is already served by {owner}",
                    manifest.name,
                    declared.name
                );
            }
            self.routes
                .build_declared(&manifest.name, declared, &manifest.providers)
                .with_context(|| format!("plugin {}: route {:?}", manifest.name, declared.name))?;
        }
        self.compile(manifest.clone(), version_of(bytes, text), bytes.to_vec())
            .await
    }

    /// Loads (compiles, or takes from the compile cache) off the async workers.
    async fn compile(&self, manifest: Manifest, version: String, bytes: Vec<u8>) -> Result<LoadedPlugin> {
        let (runtime, defaults) = (self.runtime.clone(), self.defaults.clone());
        tokio::task::spawn_blocking(move || runtime.load(&manifest, &version, &bytes, &defaults))
            .await
            .context("the compile task failed")?
    }

    /// The versions that failed to load, so a poll does not retry them.
    fn failed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts the folder's plugins into the store: new versions are stored;
    /// `follow` activates every changed one (embedded mode), otherwise only
    /// plugins the store has no active version of (a shared database).
    pub async fn seed_from(&self, dir: &Path, follow: bool) -> Result<()> {
        for plugin in read_folder(dir) {
            let name = plugin.manifest.name.clone();
            let version = version_of(&plugin.bytes, &plugin.text);
            let active = self.store.active_version(&name).await?;
            if active.as_deref() == Some(version.as_str()) {
                // Make sure this instance's storage holds it (a local
                // folder is per instance).
                self.store.put_component(&name, &version, &plugin.bytes).await?;
                continue;
            }
            // Only a version the store has never seen is news: an operator's
            // deploy or rollback since is not undone by an unchanged folder.
            if active.is_some() && (!follow || self.store.has_version(&name, &version).await?) {
                continue;
            }
            if self.failed().contains(&version) {
                continue;
            }
            if let Err(e) = self.validate(&plugin.manifest, &plugin.text, &plugin.bytes).await {
                tracing::error!(plugin = %name, "plugin from the folder not deployed: {e:#}");
                self.failed().insert(version);
                continue;
            }
            self.store
                .add_version(&plugin.manifest, &plugin.text, &plugin.bytes, "plugin-folder")
                .await?;
            self.store.activate(&name, &version, "plugin-folder").await?;
            tracing::info!(plugin = %name, version = short_version(&version), "plugin from the folder activated");
        }
        Ok(())
    }

    /// Loads what the store says is active and swaps the set if anything
    /// changed. True when it did.
    pub async fn sync_once(&self) -> Result<bool> {
        let active = self.store.active().await?;
        let active_manifests: Vec<(String, String, String)> = active
            .iter()
            .map(|a| (a.name.clone(), a.version.clone(), a.manifest.clone()))
            .collect();
        let current = self.set.snapshot();
        let mut next: HashMap<String, Arc<LoadedPlugin>> = HashMap::new();
        let mut changed = false;
        for wanted in active {
            if let Some(loaded) = current.get(&wanted.name).filter(|p| p.version == wanted.version) {
                next.insert(wanted.name, loaded.clone());
                continue;
            }
            match self.load(&wanted).await {
                Ok(plugin) => {
                    tracing::info!(plugin = %wanted.name, version = short_version(&wanted.version), "plugin version live");
                    next.insert(wanted.name, Arc::new(plugin));
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(plugin = %wanted.name, version = short_version(&wanted.version), "active version not loaded: {e:#}");
                    self.failed().insert(wanted.version.clone());
                    if let Some(old) = current.get(&wanted.name) {
                        next.insert(wanted.name, old.clone());
                    }
                }
            }
        }
        changed |= next.len() != current.len();
        if changed {
            self.declare_routes(&active_manifests, &next);
            self.set.replace(next);
        }
        Ok(changed)
    }

    /// The routes the loaded versions declare; the first plugin to declare a
    /// name keeps it (deploys refuse clashes, so a tie means a race).
    fn declare_routes(
        &self,
        active: &[(String, String, String)],
        loaded: &HashMap<String, Arc<LoadedPlugin>>,
    ) {
        let mut routes = HashMap::new();
        for (name, version, text) in active {
            if loaded.get(name).is_none_or(|p| &p.version != version) {
                continue;
            }
            let Ok(manifest) = Manifest::parse(text) else {
                continue;
            };
            for declared in &manifest.routes {
                let configured = self
                    .routes
                    .taken_by(&declared.name, name)
                    .is_some_and(|owner| owner.starts_with("the host"));
                if configured || routes.contains_key(&declared.name) {
                    tracing::error!(plugin = %name, route = %declared.name, "route already served; not declared again");
                    continue;
                }
                match self.routes.build_declared(name, declared, &manifest.providers) {
                    Ok(route) => {
                        routes.insert(declared.name.clone(), Arc::new(route));
                    }
                    Err(e) => {
                        tracing::error!(plugin = %name, route = %declared.name, "route not served: {e:#}")
                    }
                }
            }
        }
        self.routes.set_declared(routes);
    }

    async fn load(&self, wanted: &ActiveVersion) -> Result<LoadedPlugin> {
        if self.failed().contains(&wanted.version) {
            bail!("this version failed to load before");
        }
        let manifest = Manifest::parse(&wanted.manifest)?;
        let bytes = self.store.component(&wanted.name, &wanted.version).await?;
        self.compile(manifest, wanted.version.clone(), bytes).await
    }

    /// Asks the background loop to sync now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Runs the loop: on a kick, a notification (PostgreSQL) or the poll;
    /// embedded mode also re-reads `folder`.
    pub fn spawn(self: Arc<Self>, listen_on: Option<PgPool>, folder: Option<PathBuf>) {
        crate::vital::spawn("plugin sync", async move {
            let mut listener = None;
            loop {
                if listener.is_none()
                    && let Some(pool) = &listen_on
                {
                    listener = match PgListener::connect_with(pool).await {
                        Ok(mut l) => match l.listen(CHANNEL).await {
                            Ok(()) => Some(l),
                            Err(e) => {
                                tracing::warn!("LISTEN {CHANNEL} failed; polling: {e:#}");
                                None
                            }
                        },
                        Err(e) => {
                            tracing::warn!("LISTEN {CHANNEL} failed; polling: {e:#}");
                            None
                        }
                    };
                }
                let poll = if folder.is_some() { FOLDER_POLL } else { POLL };
                tokio::select! {
                    () = self.kick.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                    received = async {
                        match listener.as_mut() {
                            Some(l) => l.recv().await.map(|_| ()),
                            None => std::future::pending().await,
                        }
                    } => {
                        if let Err(e) = received {
                            tracing::warn!("LISTEN {CHANNEL} lost; polling until it is back: {e:#}");
                            listener = None;
                        }
                    }
                }
                if let Some(dir) = &folder
                    && let Err(e) = self.seed_from(dir, true).await
                {
                    tracing::warn!("reading the plugin folder: {e:#}");
                }
                if let Err(e) = self.sync_once().await {
                    tracing::warn!("plugin sync failed; retrying: {e:#}");
                }
            }
        });
    }
}
