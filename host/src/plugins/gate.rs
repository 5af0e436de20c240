//! Running the routes' verifier and responder plugins on a request, before
//! anything is stored: the plugin's active version is looked up by name at
//! each request (a deploy, activation or rollback takes effect on the next
//! one, on every instance), called in a fresh instance under its limits,
//! and whatever goes wrong in it — a trap, a loop, a memory bomb, a missing
//! plugin — is answered for its route only (503: the sender retries).

use std::sync::Arc;

use super::PluginSet;
use crate::db::Db;
use crate::runtime::Runtime;
use crate::runtime::gate::{Incoming, Rejection as PluginRejection, Response};
use crate::verify::plugin::PluginVerifiers;
use crate::verify::{Rejection, Request, Verified};
use crate::wit::types::Header;

/// What a plugin may say in a reason or an id, at most (longer is cut).
const MAX_TEXT: usize = 200;

/// The host's verifier and responder runner.
pub struct Gate {
    pub plugins: Arc<PluginSet>,
    pub runtime: Arc<Runtime>,
    /// For the instances' (unused: no grant) database capability.
    pub db: Db,
}

impl Gate {
    /// `plugin`'s answer to `request` on `route`, if it gives one; why not
    /// when it failed.
    pub async fn respond(
        &self,
        plugin: &str,
        route: &str,
        request: &Request<'_>,
    ) -> Result<Option<Response>, String> {
        let loaded = self
            .plugins
            .get(plugin)
            .ok_or_else(|| format!("responder plugin {plugin:?} is not loaded"))?;
        let incoming = incoming(route, request);
        self.runtime
            .respond(&loaded, &incoming, &format!("{route}/respond"), &self.db)
            .await
            .map_err(|e| failed(plugin, e.kind(), &e.to_string()))
    }
}

#[async_trait::async_trait]
impl PluginVerifiers for Gate {
    async fn verify(&self, plugin: &str, route: &str, request: &Request<'_>) -> Result<Verified, Rejection> {
        let Some(loaded) = self.plugins.get(plugin) else {
            return Err(Rejection::VerifierFailed(format!(
                "verifier plugin {plugin:?} is not loaded"
            )));
        };
        let incoming = incoming(route, request);
        match self
            .runtime
            .verify_request(&loaded, &incoming, &format!("{route}/verify"), &self.db)
            .await
        {
            Ok(Ok(verdict)) => Ok(Verified {
                delivery_id: verdict.delivery_id.map(|id| cut(&id)).filter(|id| !id.is_empty()),
            }),
            Ok(Err(PluginRejection::Unauthentic(reason))) => Err(Rejection::PluginRejected(cut(&reason))),
            Ok(Err(PluginRejection::Unavailable(reason))) => Err(Rejection::VerifierFailed(cut(&reason))),
            Err(e) => Err(Rejection::VerifierFailed(failed(
                plugin,
                e.kind(),
                &e.to_string(),
            ))),
        }
    }
}

/// Counts and logs a verifier's or responder's failure; the reason given.
fn failed(plugin: &str, kind: &'static str, message: &str) -> String {
    metrics::counter!(crate::telemetry::PLUGIN_FAILURES, "plugin" => plugin.to_string(), "kind" => kind)
        .increment(1);
    tracing::warn!(plugin, kind, "a plugin run before storing failed: {message}");
    cut(message)
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The request as the `request` interface gives it.
pub fn incoming(route: &str, request: &Request<'_>) -> Incoming {
    Incoming {
        route: route.to_string(),
        method: request.method.to_string(),
        query: request.query.to_string(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_string(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            })
            .collect(),
        body: request.body.to_vec(),
        now_unix: request.now_unix,
    }
}
