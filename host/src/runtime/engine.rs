//! The process-wide wasmtime [`Runtime`]: one [`Engine`] (pooling
//! allocator, epoch interruption driven by a ticker thread, copy-on-write
//! memory images), one linker for every plugin, and the semaphore that keeps
//! live instances below the pool's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::CompileCache;
use super::instance::State;
use crate::caps::{self, Services};
use crate::config::RuntimeSettings;

/// One of the pool's instance slots, held while an instance lives.
pub struct InstanceSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The process-wide wasmtime engine and what every instance shares.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<State>,
    /// Keeps live instances below the pool's slots.
    slots: Arc<Semaphore>,
    max_instances: usize,
    pub(super) max_memory_bytes: usize,
    /// Tells the epoch ticker thread to stop.
    stop_ticker: Arc<AtomicBool>,
    pub(super) services: Arc<Services>,
    pub(super) cache: CompileCache,
}

impl Runtime {
    pub fn new(settings: &RuntimeSettings, services: Services) -> Result<Self> {
        let max_instances = settings.max_instances.max(1);
        let max_memory_bytes = (settings.max_memory_mb as usize) << 20;
        let keep_resident = (settings.keep_resident_kb as usize) << 10;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 16)
            .total_memories(max_instances * 4)
            .total_tables(max_instances * 8)
            .total_stacks(max_instances)
            .max_memory_size(max_memory_bytes)
            // A slot's memory and tables are reset in place (only the pages
            // the instance wrote, when the kernel can say which) instead of
            // handed back to the kernel and faulted in again by the next
            // event: most plugins touch well under a megabyte.
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident / 16)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .memory_init_cow(true)
            .wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| anyhow!("creating the wasm engine: {e}"))?;
        let cache = CompileCache::new(settings.cache_dir.clone(), &engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("linking WASI: {e}"))?;
        caps::add_to_linker(&mut linker).map_err(|e| anyhow!("linking capabilities: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("linking wasi:http: {e}"))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticking, stop) = (engine.clone(), stop_ticker.clone());
        let tick = Duration::from_millis(settings.epoch_tick_ms.max(1));
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticking.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;

        Ok(Self {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(max_instances as usize)),
            max_instances: max_instances as usize,
            max_memory_bytes,
            stop_ticker,
            services: Arc::new(services),
            cache,
        })
    }

    /// Waits for an instance slot; waiters are served in arrival order.
    pub async fn reserve(&self) -> InstanceSlot {
        InstanceSlot {
            _permit: self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the instance semaphore is never closed"),
        }
    }

    /// Live instances now, and the most there may be.
    pub fn instances(&self) -> (usize, usize) {
        let free = self.slots.available_permits();
        (self.max_instances.saturating_sub(free), self.max_instances)
    }

    /// The capabilities' shared services (the host's own outbound calls use its HTTP clients).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// How many components were compiled and how many came from the cache.
    pub fn compile_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}
