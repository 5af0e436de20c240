//! What every capability is to the registry in `caps/mod.rs`: its
//! per-instance state type implements [`Capability`].

use std::sync::Arc;

use anyhow::Result;

use super::http::policy::Outbound;
use super::services::Services;
use crate::db::tx::EventTx;
use crate::manifest::{Grants, Limits, Manifest};

/// One capability: the per-instance state of a `webhook:plugin/<name>`
/// interface, and what it prepares per plugin version.
pub trait Capability: Sized + Send + 'static {
    /// What it prepared for one plugin version when that loaded.
    type Plugin: Send + Sync + 'static;

    /// Checks and prepares what `manifest` grants (a bad grant fails the load).
    fn prepare(manifest: &Manifest, limits: &Limits, services: &Services) -> Result<Self::Plugin>;

    /// One instance's state.
    fn instance(plugin: &Self::Plugin, cx: &mut InstanceContext<'_>) -> Self;

    /// The grant to add, when `grants` lacks the one importing it needs.
    fn missing_grant(_grants: &Grants) -> Option<&'static str> {
        None
    }
}

/// What building one instance's capabilities has at hand.
pub struct InstanceContext<'a> {
    pub services: &'a Services,
    /// The plugin's name and the event or run id its log lines carry,
    /// allocated once per instance and shared by whatever logs.
    pub plugin: &'a Arc<str>,
    pub tag: &'a Arc<str>,
    /// The event's transaction, for `db` to take.
    pub tx: Option<EventTx>,
    /// The instance's outbound gate, shared by everything that sends.
    pub outbound: Arc<Outbound>,
}
