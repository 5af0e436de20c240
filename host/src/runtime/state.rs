//! What one `Store` holds: the WASI context (stdio only), the memory limiter,
//! and each capability's per-instance state.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::GuestOutput;
use crate::caps::{
    blob::BlobState, config::ConfigState, db::DbState, http::HttpHooks, kv::KvState, log::LogState,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of one plugin instance's `Store`; lives for one event attempt.
pub struct State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub db: DbState,
    pub config: ConfigState,
    pub log: LogState,
    pub blob: BlobState,
    pub kv: KvState,
    pub http: WasiHttpCtx,
    pub http_hooks: HttpHooks,
    /// Set by the epoch callback when the call ran out of time.
    pub timed_out: bool,
    /// The guest's stderr as captured, for the message of a trap.
    pub stderr: GuestOutput,
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
            hooks: &mut self.http_hooks,
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
