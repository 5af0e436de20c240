//! Loading a plugin version: compiled (or taken from the compile cache),
//! its imports checked against its grants, every capability prepared, and
//! pre-linked once, so an event only instantiates.

use anyhow::{Context, Result, anyhow, bail};

use super::engine::Runtime;
use super::instance::State;
use crate::caps::{self, PluginCaps};
use crate::config::RuntimeSettings;
use crate::manifest::{Grants, Limits, Manifest, ManifestSchedule, PluginKind};
use crate::wit::HandlerPre;
use crate::wit::as_responder::ResponderPre;
use crate::wit::as_verifier::VerifierPre;
use crate::wit::with_followups::FollowupHandlerPre;
use crate::wit::with_schedules::ScheduledHandlerPre;

/// A plugin version compiled, checked against its grants and pre-linked.
pub struct LoadedPlugin {
    pub name: String,
    /// The version id: sha256 over the component and the manifest, hex.
    pub version: String,
    pub limits: Limits,
    pub grants: Grants,
    /// What each capability prepared for this version.
    pub caps: PluginCaps,
    /// The interfaces the component imports.
    pub imports: Vec<String>,
    /// The schedules its manifest declares (their component exports
    /// `scheduled`, checked at load).
    pub schedules: Vec<ManifestSchedule>,
    pub kind: PluginKind,
    /// Its exports, pre-linked for its kind.
    pub(super) entry: Entry,
}

/// What a plugin exports, by its kind.
pub(super) enum Entry {
    Handler {
        handle: HandlerPre<State>,
        /// Present when the plugin declares schedules.
        scheduled: Option<ScheduledHandlerPre<State>>,
        /// Present when the component exports `followup`.
        followup: Option<FollowupHandlerPre<State>>,
    },
    Verifier(VerifierPre<State>),
    Responder(ResponderPre<State>),
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

impl Runtime {
    /// Compiles a component and links it; fails with a clear message when the
    /// component imports something the host does not provide or its grants
    /// do not cover.
    /// `version` names this component + manifest pair (see
    /// [`crate::plugins::store::version_of`]); compiled code is cached by the
    /// component's own hash.
    pub fn load(
        &self,
        manifest: &Manifest,
        version: &str,
        bytes: &[u8],
        defaults: &RuntimeSettings,
    ) -> Result<LoadedPlugin> {
        let name = manifest.name.as_str();
        let limits = manifest.limits(defaults);
        let caps = PluginCaps::prepare(manifest, &limits, &self.services)
            .with_context(|| format!("plugin {name}"))?;
        if limits.memory_bytes > self.max_memory_bytes {
            bail!(
                "plugin {name}: memory limit {} MiB exceeds the host's runtime.max_memory_mb ({} MiB)",
                limits.memory_bytes >> 20,
                self.max_memory_bytes >> 20
            );
        }
        let component_hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(bytes))
        };
        let component = self.cache.component(&self.engine, name, &component_hash, bytes)?;
        let mut imports = Vec::new();
        for (import, _) in component.component_type().imports(&self.engine) {
            caps::check_import(import, &manifest.grants).with_context(|| format!("plugin {name}"))?;
            imports.push(import.to_string());
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("plugin {name}: cannot be linked: {e}"))?;
        let entry = match manifest.kind {
            PluginKind::Handler => {
                let scheduled = if manifest.schedules.is_empty() {
                    None
                } else {
                    Some(ScheduledHandlerPre::new(pre.clone()).map_err(|e| {
                        anyhow!("plugin {name}: declares schedules but does not export `scheduled`: {e}")
                    })?)
                };
                let followup = FollowupHandlerPre::new(pre.clone()).ok();
                if followup.is_none() && imports.iter().any(|i| i.starts_with("webhook:plugin/followups@")) {
                    bail!(
                        "plugin {name}: imports `followups` but does not export `followup`, which runs them \
                         (build it for the followup-handler world)"
                    );
                }
                let handle = HandlerPre::new(pre)
                    .map_err(|e| anyhow!("plugin {name}: does not export `handle`: {e}"))?;
                Entry::Handler {
                    handle,
                    scheduled,
                    followup,
                }
            }
            PluginKind::Verifier => Entry::Verifier(
                VerifierPre::new(pre)
                    .map_err(|e| anyhow!("plugin {name}: a verifier must export `verify`: {e}"))?,
            ),
            PluginKind::Responder => Entry::Responder(
                ResponderPre::new(pre)
                    .map_err(|e| anyhow!("plugin {name}: a responder must export `respond`: {e}"))?,
            ),
        };
        Ok(LoadedPlugin {
            name: name.to_string(),
            version: version.to_string(),
            limits,
            grants: manifest.grants.clone(),
            caps,
            imports,
            schedules: manifest.schedules.clone(),
            kind: manifest.kind,
            entry,
        })
    }
}
