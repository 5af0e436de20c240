//! Verifier plugins as a route's scheme: `verify = [{ plugin = "<name>" }]`
//! names a plugin of kind `verifier` (the `verifier` WIT world), which the
//! host runs on each request before anything is stored. The plugin is
//! looked up when a request comes, so deploying, activating or rolling back
//! another version of it takes effect on the next request, on every instance.
//!
//! Verification sits below the runtime, so the runtime comes in through
//! [`PluginVerifiers`], set once the runtime exists ([`GateHandle`]).

use std::sync::{Arc, OnceLock};

use super::scheme::{Rejection, Request, Scheme, Verified};
use super::template::leak;

/// Runs a verifier plugin on a request (the host's plugins and runtime).
#[async_trait::async_trait]
pub trait PluginVerifiers: Send + Sync {
    async fn verify(&self, plugin: &str, route: &str, request: &Request<'_>) -> Result<Verified, Rejection>;
}

/// Where the runner is, once there is one.
pub type GateHandle = Arc<OnceLock<Arc<dyn PluginVerifiers>>>;

/// A route's verify entry naming a plugin.
pub struct PluginScheme {
    plugin: String,
    route: String,
    label: &'static str,
    gate: GateHandle,
}

impl PluginScheme {
    pub fn new(plugin: &str, route: &str, gate: GateHandle) -> Self {
        Self {
            plugin: plugin.to_string(),
            route: route.to_string(),
            label: leak(&format!("plugin:{plugin}")),
            gate,
        }
    }
}

#[async_trait::async_trait]
impl Scheme for PluginScheme {
    fn name(&self) -> &'static str {
        self.label
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        match self.gate.get() {
            Some(runner) => runner.verify(&self.plugin, &self.route, request).await,
            None => Err(Rejection::VerifierFailed(
                "the plugin runtime is not running".into(),
            )),
        }
    }
}
