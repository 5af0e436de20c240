//! What one instance's `Store` holds for one event attempt: the WASI
//! context (stdio only, into the log), the memory limiter, and the
//! instance's capabilities, each capability's own per-instance state.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::output::GuestOutput;
use crate::caps::{HasCaps, InstanceCaps, PluginCaps, Services};
use crate::db::tx::EventTx;

/// The data of one plugin instance's `Store`; lives for one event attempt.
pub struct State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub caps: InstanceCaps,
    pub http: WasiHttpCtx,
    /// Set by the epoch callback when the call ran out of time.
    pub timed_out: bool,
    /// When the component was instantiated (the call's phases).
    pub instantiated: Option<std::time::Instant>,
    /// The guest's stderr as captured, for the message of a trap.
    pub stderr: GuestOutput,
}

impl State {
    /// What one instance of plugin `name` gets: its capabilities (bound to
    /// `tx` and what its grants prepared), output capture tagged `tag`, and
    /// a memory limit of `memory_bytes`. The runtime puts it in a `Store`;
    /// the native benchmark of the fal logic calls the same capabilities
    /// without one.
    pub fn new(
        name: &str,
        caps: &PluginCaps,
        memory_bytes: usize,
        services: &Services,
        tag: &str,
        tx: EventTx,
    ) -> Self {
        let (name, tag): (Arc<str>, Arc<str>) = (name.into(), tag.into());
        let (stdout, stderr) = GuestOutput::pair(&name, &tag);
        State {
            wasi: WasiCtxBuilder::new()
                .stdout(stdout)
                .stderr(stderr.clone())
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                exceeded: None,
            },
            caps: InstanceCaps::new(caps, services, &name, &tag, tx),
            http: WasiHttpCtx::new(),
            timed_out: false,
            instantiated: None,
            stderr,
        }
    }
}

impl HasCaps for State {
    fn caps(&mut self) -> &mut InstanceCaps {
        &mut self.caps
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.caps.http,
        }
    }
}

/// Caps linear memory per instance and remembers when the cap was hit, so
/// the resulting trap can be reported as what it is.
pub struct MemoryLimiter {
    pub max_bytes: usize,
    /// The size the guest asked for when it hit the cap.
    pub exceeded: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = Some(desired);
            return Err(wasmtime::format_err!(
                "memory limit of {} MiB exceeded",
                self.max_bytes >> 20
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
