//! Calls to the plugins that run on a request before anything is stored:
//! a verifier's `verify` and a responder's `respond`, each in a fresh
//! instance with the plugin's (tight) limits, like any other call. A trap,
//! timeout or memory limit comes back as the [`DispatchError`] it is; the
//! caller answers for the route.

use super::engine::Runtime;
use super::load::{Entry, LoadedPlugin};
use super::run::DispatchError;
use crate::db::Db;
use crate::wit::as_responder::Responder;
use crate::wit::as_verifier::Verifier;
pub use crate::wit::as_verifier::webhook::plugin::request::{Incoming, Rejection, Response, Verdict};

impl Runtime {
    /// `plugin`'s verdict on `request` (`tag` labels its log lines).
    pub async fn verify_request(
        &self,
        plugin: &LoadedPlugin,
        request: &Incoming,
        tag: &str,
        db: &Db,
    ) -> Result<Result<Verdict, Rejection>, DispatchError> {
        let Entry::Verifier(pre) = &plugin.entry else {
            return Err(wrong_kind(plugin, "verifier"));
        };
        let tx = plugin.caps.db.begin(db);
        self.run(plugin, tag, tx, None, async |store| {
            let verifier: Verifier = pre.instantiate_async(&mut *store).await?;
            store.data_mut().instantiated = Some(std::time::Instant::now());
            verifier.call_verify(&mut *store, request).await
        })
        .await
        .result
    }

    /// `plugin`'s answer to `request`, if it gives one.
    pub async fn respond(
        &self,
        plugin: &LoadedPlugin,
        request: &Incoming,
        tag: &str,
        db: &Db,
    ) -> Result<Option<Response>, DispatchError> {
        let Entry::Responder(pre) = &plugin.entry else {
            return Err(wrong_kind(plugin, "responder"));
        };
        let tx = plugin.caps.db.begin(db);
        self.run(plugin, tag, tx, None, async |store| {
            let responder: Responder = pre.instantiate_async(&mut *store).await?;
            store.data_mut().instantiated = Some(std::time::Instant::now());
            responder.call_respond(&mut *store, request).await
        })
        .await
        .result
    }
}

fn wrong_kind(plugin: &LoadedPlugin, wanted: &str) -> DispatchError {
    DispatchError::Fatal(format!(
        "plugin {} is a {}, not a {wanted}",
        plugin.name,
        plugin.kind.as_str()
    ))
}
