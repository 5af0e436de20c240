//! Capabilities: what a plugin can reach, one module each.
//!
//! Each capability has its per-instance state (held in the runtime's
//! `State`), its host implementation of the WIT interface, and, where access
//! is not universal, a grant in the plugin manifest checked when the plugin
//! loads. Adding one means a module here and a line in [`add_to_linker`].

pub mod config;
pub mod db;
pub mod log;

use anyhow::{Result, bail};
use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use crate::runtime::State;
use crate::runtime::bindings::webhook::plugin;

/// What a plugin's manifest grants it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// May run SQL in its event's transaction.
    #[serde(default)]
    pub db: bool,
}

/// Links every capability's host implementation.
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    plugin::types::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    plugin::db::add_to_linker::<State, HasSelf<db::DbState>>(linker, |s| &mut s.db)?;
    plugin::config::add_to_linker::<State, HasSelf<config::ConfigState>>(linker, |s| &mut s.config)?;
    plugin::log::add_to_linker::<State, HasSelf<log::LogState>>(linker, |s| &mut s.log)?;
    Ok(())
}

/// `types` has no functions; its (empty) host side sits on the store's state.
impl plugin::types::Host for State {}

/// Checks one import of a component against what the host provides and what
/// the plugin is granted. Names the missing grant.
pub fn check_import(import: &str, grants: &Grants) -> Result<()> {
    let (interface, _version) = import.split_once('@').unwrap_or((import, ""));
    match interface {
        "webhook:plugin/db" if !grants.db => {
            bail!(
                "the component imports {import} but its manifest does not grant it: add `db = true` under [grants]"
            )
        }
        "webhook:plugin/db" | "webhook:plugin/types" | "webhook:plugin/config" | "webhook:plugin/log" => {
            Ok(())
        }
        wasi if wasi.starts_with("wasi:") => Ok(()),
        _ => bail!("the component imports {import}, which this host does not provide"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_import_needs_the_db_grant() {
        let err = check_import("webhook:plugin/db@0.1.0", &Grants { db: false }).unwrap_err();
        assert!(err.to_string().contains("db = true"));
        assert!(check_import("webhook:plugin/db@0.1.0", &Grants { db: true }).is_ok());
    }

    #[test]
    fn unknown_imports_are_named() {
        let err = check_import("acme:secret/vault@1.0.0", &Grants::default()).unwrap_err();
        assert!(err.to_string().contains("acme:secret/vault@1.0.0"));
        assert!(check_import("wasi:cli/stdout@0.2.6", &Grants::default()).is_ok());
    }
}
