//! `log`: plugin messages into the host log, tagged with plugin and event.

use std::sync::Arc;

use crate::caps::capability::{Capability, InstanceContext};
use crate::caps::services::Services;
use crate::manifest::{Limits, Manifest};
use crate::wit::log::{Host, Level};

/// Longest message kept; the rest is cut.
const MAX_MESSAGE: usize = 4096;

pub struct LogState {
    plugin: Arc<str>,
    event_id: Arc<str>,
}

impl LogState {
    pub fn new(plugin: impl Into<Arc<str>>, event_id: impl Into<Arc<str>>) -> Self {
        Self {
            plugin: plugin.into(),
            event_id: event_id.into(),
        }
    }
}

impl Capability for LogState {
    /// Nothing: every plugin may log.
    type Plugin = ();

    fn prepare(_: &Manifest, _: &Limits, _: &Services) -> anyhow::Result<()> {
        Ok(())
    }

    fn instance(_: &(), cx: &mut InstanceContext<'_>) -> Self {
        LogState::new(cx.plugin.clone(), cx.tag.clone())
    }
}

impl Host for LogState {
    async fn log(&mut self, level: Level, message: String) {
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let (plugin, event_id, message) = (&self.plugin, &self.event_id, &message[..end]);
        match level {
            Level::Trace => tracing::trace!(%plugin, %event_id, "plugin: {message}"),
            Level::Debug => tracing::debug!(%plugin, %event_id, "plugin: {message}"),
            Level::Info => tracing::info!(%plugin, %event_id, "plugin: {message}"),
            Level::Warn => tracing::warn!(%plugin, %event_id, "plugin: {message}"),
            Level::Error => tracing::error!(%plugin, %event_id, "plugin: {message}"),
        }
    }
}
