//! Capabilities: what a plugin can reach, one module each.
//!
//! Every capability has the same parts, as Spin's factors do: its grant in
//! the manifest (`<cap>/grant.rs`, where access is not universal), what it
//! prepares once per plugin version when that loads (checked then: an
//! allow-list parsed, secrets resolved to references, a table grant built),
//! its per-instance state living in the instance's `Store` for one event
//! attempt, and its host implementation of the WIT interface on that state.
//! The state type implements [`Capability`], and one line of
//! [`capabilities!`] below registers it: the prepared and per-instance
//! structs, the linker and the import check follow from that list.
//!
//! Outbound HTTP is the standard `wasi:http`, linked by the runtime (its
//! view lives on the store's data); its gate ([`http::Outbound`]) is shared
//! with `blob.copy-from-url`. Capabilities know nothing of the runtime that
//! hosts them: the store's data reaches them through [`HasCaps`].

pub mod blob;
pub mod capability;
pub mod config;
pub mod db;
pub mod effects;
pub mod http;
pub mod kv;
pub mod log;
pub mod services;
pub mod trace;

use std::sync::Arc;

use anyhow::{Result, bail};
use wasmtime::component::{HasSelf, Linker};

pub use self::capability::{Capability, InstanceContext};
use self::http::{HttpHooks, HttpPolicy, Outbound};
pub use self::services::Services;
use crate::db::tx::EventTx;
use crate::manifest::{Grants, Limits, Manifest};
use crate::wit::webhook::plugin;

/// Registers the capabilities: `name: State` per line, `name` being the
/// interface (`webhook:plugin/<name>`) and the field of [`PluginCaps`] and
/// [`InstanceCaps`].
macro_rules! capabilities {
    ($($name:ident: $state:ty),* $(,)?) => {
        /// What the capabilities prepared for one plugin version when it loaded.
        pub struct PluginCaps {
            $(pub $name: <$state as Capability>::Plugin,)*
            /// Its `http` grant with the host's limits filled in (also what
            /// `blob.copy-from-url` may fetch).
            pub http: Arc<HttpPolicy>,
        }

        impl PluginCaps {
            /// Checks and prepares every capability `manifest` grants.
            pub fn prepare(manifest: &Manifest, limits: &Limits, services: &Services) -> Result<Self> {
                Ok(Self {
                    $($name: <$state as Capability>::prepare(manifest, limits, services)?,)*
                    http: Arc::new({
                        let mut policy = HttpPolicy::new(manifest.grants.http.as_ref(), &services.outbound)?;
                        policy.cache_gets = manifest.kind != crate::manifest::PluginKind::Handler;
                        policy
                    }),
                })
            }
        }

        /// One instance's capabilities, for one event attempt.
        pub struct InstanceCaps {
            $(pub $name: $state,)*
            /// The `wasi:http` send hook.
            pub http: HttpHooks,
        }

        impl InstanceCaps {
            /// The capabilities of one instance of `plugin` (named `name`),
            /// whose statements run in `tx`; `tag` (the event or run id)
            /// marks its log lines.
            pub fn new(plugin: &PluginCaps, services: &Services, name: &Arc<str>, tag: &Arc<str>, tx: EventTx) -> Self {
                let outbound = Outbound::new(plugin.http.clone(), name.clone(), tag.clone());
                let mut cx = InstanceContext {
                    services,
                    plugin: name,
                    tag,
                    tx: Some(tx),
                    outbound: outbound.clone(),
                };
                Self {
                    $($name: <$state as Capability>::instance(&plugin.$name, &mut cx),)*
                    http: HttpHooks::new(services.http.clone(), outbound),
                }
            }
        }

        /// Links every capability's host implementation (`wasi:http` is
        /// linked by the runtime, whose store data implements its view).
        pub fn add_to_linker<T: HasCaps>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            plugin::types::add_to_linker::<T, HasSelf<InstanceCaps>>(linker, |s| s.caps())?;
            $(plugin::$name::add_to_linker::<T, HasSelf<$state>>(linker, |s| &mut s.caps().$name)?;)*
            Ok(())
        }

        /// Each interface's name and its grant check.
        const REGISTERED: &[(&str, fn(&Grants) -> Option<&'static str>)] =
            &[$((stringify!($name), <$state as Capability>::missing_grant),)*];
    };
}

capabilities! {
    db: db::DbState,
    config: config::ConfigState,
    log: log::LogState,
    blob: blob::BlobState,
    kv: kv::KvState,
    followups: effects::FollowupsState,
    attempt: effects::AttemptState,
}

/// A store's data that holds an instance's capabilities.
pub trait HasCaps: Send + 'static {
    fn caps(&mut self) -> &mut InstanceCaps;
}

/// `types` has no functions; its (empty) host side sits on the instance's capabilities.
impl plugin::types::Host for InstanceCaps {}

/// Checks one import of a component against what the host provides and what
/// the plugin is granted. Names the missing grant.
pub fn check_import(import: &str, grants: &Grants) -> Result<()> {
    let (interface, _version) = import.split_once('@').unwrap_or((import, ""));
    let missing = |grant: &str| {
        bail!(
            "the component imports {import} but its manifest does not grant it: add `{grant}` under [grants]"
        )
    };
    if let Some(name) = interface.strip_prefix("webhook:plugin/") {
        if name == "types" || name == "request" {
            return Ok(());
        }
        if let Some((_, needs)) = REGISTERED.iter().find(|(registered, _)| *registered == name) {
            return needs(grants).map_or(Ok(()), missing);
        }
    } else if interface.starts_with("wasi:") {
        if interface.starts_with("wasi:http/") && grants.http.is_none() {
            return missing("http = { allow = [\"https://<host>\"] }");
        }
        return Ok(());
    }
    bail!("the component imports {import}, which this host does not provide")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::blob::grant::BlobGrant;
    use crate::caps::db::grant::DbGrant;
    use crate::caps::http::grant::HttpGrant;

    #[test]
    fn db_import_needs_the_db_grant() {
        let err = check_import("webhook:plugin/db@0.1.0", &Grants::default()).unwrap_err();
        assert!(err.to_string().contains("db = true"));
        let granted = Grants {
            db: Some(DbGrant::default()),
            ..Grants::default()
        };
        assert!(check_import("webhook:plugin/db@0.1.0", &granted).is_ok());
    }

    #[test]
    fn blob_kv_and_http_imports_name_their_grants() {
        let none = Grants::default();
        for (import, grant) in [
            ("webhook:plugin/blob@0.1.0", "blob = {"),
            ("webhook:plugin/kv@0.1.0", "kv = true"),
            ("wasi:http/outgoing-handler@0.2.6", "http = {"),
            ("wasi:http/types@0.2.6", "http = {"),
        ] {
            let err = check_import(import, &none).unwrap_err().to_string();
            assert!(err.contains(grant) && err.contains(import), "{err}");
        }
        let all = Grants {
            blob: Some(BlobGrant {
                prefix: "x/".into(),
                ..BlobGrant::default()
            }),
            http: Some(HttpGrant::default()),
            kv: true,
            ..Grants::default()
        };
        for import in [
            "webhook:plugin/blob@0.1.0",
            "webhook:plugin/kv@0.1.0",
            "wasi:http/types@0.2.6",
        ] {
            assert!(check_import(import, &all).is_ok(), "{import}");
        }
    }

    #[test]
    fn unknown_imports_are_named() {
        let err = check_import("acme:secret/vault@1.0.0", &Grants::default()).unwrap_err();
        assert!(err.to_string().contains("acme:secret/vault@1.0.0"));
        assert!(check_import("wasi:cli/stdout@0.2.6", &Grants::default()).is_ok());
    }
}
