//! The WebAssembly runtime: one wasmtime [`Engine`] per process, one
//! pre-linked [`LoadedPlugin`] per plugin version, and a fresh `Store` per
//! event attempt, so nothing leaks between events.
//!
//! Isolation, in the order a misbehaving plugin meets it:
//! - memory: a [`MemoryLimiter`] per store; growth past the plugin's limit traps;
//! - time: epoch interruption (a ticker thread bumps the epoch every
//!   `epoch_tick_ms`); at each tick a running guest yields to tokio, and past
//!   its deadline it is interrupted. A wall-clock timeout around the whole
//!   call also covers time spent waiting inside host calls;
//! - instances: a semaphore keeps live instances below the pooling
//!   allocator's slots;
//! - WASI: stdio only (into the log); no files, environment, sockets or args.
//!
//! A trap, timeout or limit hit fails that one event; the host goes on.

pub mod bindings;
mod output;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::caps::blob::BlobState;
use crate::caps::db_sqlite_grants::TableGrant;
use crate::caps::http::{HttpHooks, HttpPolicy};
use crate::caps::kv::KvState;
use crate::caps::{self, Grants, Services, config::ConfigState, db::DbState, log::LogState};
use crate::config::{RuntimeSettings, SecretRef};
use crate::inbox::{Event, Tx};
use crate::plugins::Manifest;
use bindings::types::HandlerError;
use bindings::with_schedules::{ScheduledHandler, ScheduledHandlerPre};
use bindings::{Handler, HandlerPre};
use output::GuestOutput;
pub use state::{MemoryLimiter, State};
use wasmtime_wasi_http::WasiHttpCtx;

/// Extra wall-clock time beyond a plugin's budget before the call is dropped,
/// for guests that are waiting in a host call when the deadline passes.
const HOST_CALL_GRACE: Duration = Duration::from_secs(2);

/// One of the pool's instance slots, held while an instance lives.
pub struct InstanceSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// `db` calls one event may make.
    pub max_db_calls: u32,
}

/// A plugin version compiled, checked against its grants and pre-linked.
pub struct LoadedPlugin {
    pub name: String,
    /// The version id: sha256 over the component and the manifest, hex.
    pub version: String,
    pub limits: Limits,
    pub grants: Grants,
    /// Operator-set values the plugin reads through the `config` capability.
    pub config: Arc<BTreeMap<String, String>>,
    /// Its `[secrets]` references, read when the plugin asks.
    pub secrets: Arc<BTreeMap<String, SecretRef>>,
    /// Its `http` grant with the host's limits filled in.
    pub http_policy: Arc<HttpPolicy>,
    /// The interfaces the component imports.
    pub imports: Vec<String>,
    /// The tables its `db` grant names, for SQLite's authorizer. Leaked on
    /// purpose: SQLite holds a raw pointer to it, so it must outlive every
    /// connection (one small allocation per loaded plugin version).
    pub table_grant: &'static TableGrant,
    /// The schedules its manifest declares (their component exports
    /// `scheduled`, checked at load).
    pub schedules: Vec<crate::plugins::ManifestSchedule>,
    pre: HandlerPre<State>,
    /// Present when the plugin declares schedules.
    scheduled: Option<ScheduledHandlerPre<State>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

/// Why one attempt of an event did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The plugin says the event can never succeed: not retried.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("retry: {0}")]
    Retry(String),
    #[error("fatal: {0}")]
    Fatal(String),
    #[error("trap: {0}")]
    Trap(String),
    #[error("timeout: the plugin ran longer than {0} ms")]
    Timeout(u64),
    #[error("memory limit: the plugin asked for {asked_mib} MiB, its limit is {limit_mib} MiB")]
    MemoryLimit { asked_mib: usize, limit_mib: usize },
}

impl DispatchError {
    /// Whether another attempt could succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, DispatchError::Invalid(_))
    }

    /// The metrics label: `invalid`, `retry`, `fatal`, `trap`, `timeout` or
    /// `memory_limit`.
    pub fn kind(&self) -> &'static str {
        match self {
            DispatchError::Invalid(_) => "invalid",
            DispatchError::Retry(_) => "retry",
            DispatchError::Fatal(_) => "fatal",
            DispatchError::Trap(_) => "trap",
            DispatchError::Timeout(_) => "timeout",
            DispatchError::MemoryLimit { .. } => "memory_limit",
        }
    }
}

/// The result of one attempt, with the event's transaction handed back.
pub struct Dispatched {
    pub result: Result<Option<Vec<u8>>, DispatchError>,
    /// The transaction the plugin's statements ran in; commit it on success.
    pub tx: Option<Tx>,
    pub elapsed: Duration,
}

/// The process-wide wasmtime engine and what every instance shares.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    /// Keeps live instances below the pool's slots.
    slots: Arc<Semaphore>,
    max_instances: usize,
    max_memory_bytes: usize,
    /// Tells the epoch ticker thread to stop.
    stop_ticker: Arc<AtomicBool>,
    services: Arc<Services>,
    /// The compile cache folder and this engine's compatibility hash.
    cache: Option<(PathBuf, String)>,
    stats: CompileStats,
}

#[derive(Default)]
struct CompileStats {
    compiles: AtomicU64,
    cache_hits: AtomicU64,
}

/// Writes a compiled component next to its final name, then renames it, so
/// a reader never sees half a file.
fn write_cache(path: &Path, component: &Component) -> Result<()> {
    let bytes = component.serialize().map_err(|e| anyhow!("serialising: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

impl Runtime {
    pub fn new(settings: &RuntimeSettings, services: Services) -> Result<Self> {
        let max_instances = settings.max_instances.max(1);
        let max_memory_bytes = (settings.max_memory_mb as usize) << 20;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 16)
            .total_memories(max_instances * 4)
            .total_tables(max_instances * 8)
            .total_stacks(max_instances)
            .max_memory_size(max_memory_bytes);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .memory_init_cow(true)
            .wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| anyhow!("creating the wasm engine: {e}"))?;

        let cache = settings.cache_dir.clone().map(|dir| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            (dir, format!("{:016x}", hasher.finish()))
        });
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("linking WASI: {e}"))?;
        caps::add_to_linker(&mut linker).map_err(|e| anyhow!("linking capabilities: {e}"))?;

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
            stats: CompileStats::default(),
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

    /// Compiles a component and links it; fails with a clear message when the
    /// component imports something the host does not provide or its grants
    /// do not cover.
    /// `version` names this component + manifest pair (see
    /// [`crate::plugins::store::version_of`]); compiled code is cached by the
    /// component's own hash.
    pub fn load(
        &self,
        manifest: &Manifest,
        version: &str,
        bytes: &[u8],
        defaults: &RuntimeSettings,
    ) -> Result<LoadedPlugin> {
        let name = manifest.name.as_str();
        let limits = manifest.limits(defaults);
        let grants = manifest.grants.clone();
        let http_policy = HttpPolicy::new(grants.http.as_ref(), &self.services.outbound)
            .with_context(|| format!("plugin {name}"))?;
        let secrets = manifest.secret_refs().with_context(|| format!("plugin {name}"))?;
        if limits.memory_bytes > self.max_memory_bytes {
            bail!(
                "plugin {name}: memory limit {} MiB exceeds the host's runtime.max_memory_mb ({} MiB)",
                limits.memory_bytes >> 20,
                self.max_memory_bytes >> 20
            );
        }
        let component_hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(bytes))
        };
        let component = self.compile(name, &component_hash, bytes)?;
        let mut imports = Vec::new();
        for (import, _) in component.component_type().imports(&self.engine) {
            caps::check_import(import, &grants).with_context(|| format!("plugin {name}"))?;
            imports.push(import.to_string());
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("plugin {name}: cannot be linked: {e}"))?;
        let scheduled = if manifest.schedules.is_empty() {
            None
        } else {
            Some(ScheduledHandlerPre::new(pre.clone()).map_err(|e| {
                anyhow!("plugin {name}: declares schedules but does not export `scheduled`: {e}")
            })?)
        };
        let pre =
            HandlerPre::new(pre).map_err(|e| anyhow!("plugin {name}: does not export `handle`: {e}"))?;
        let table_grant = match &grants.db {
            Some(db) => TableGrant::new(&db.read, &db.write),
            None => TableGrant::default(),
        };
        let table_grant = Box::leak(Box::new(table_grant));
        Ok(LoadedPlugin {
            name: name.to_string(),
            version: version.to_string(),
            limits,
            grants,
            config: Arc::new(manifest.config.clone()),
            secrets: Arc::new(secrets),
            http_policy: Arc::new(http_policy),
            imports,
            table_grant,
            schedules: manifest.schedules.clone(),
            pre,
            scheduled,
        })
    }

    /// The component for `bytes`: from the compile cache when this engine
    /// compiled it before, else compiled now and cached.
    fn compile(&self, name: &str, version: &str, bytes: &[u8]) -> Result<Component> {
        let cached = self
            .cache
            .as_ref()
            .map(|(dir, engine_hash)| dir.join(format!("{version}-{engine_hash}.cwasm")));
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the cache folder is the host's own, and its files are
            // written only by `Component::serialize` of an engine whose
            // compatibility hash is in the file name, so they match this one.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        plugin = name,
                        version = crate::plugins::short_version(version),
                        "plugin loaded from the compile cache"
                    );
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(
                        plugin = name,
                        "compile cache entry unusable, compiling again: {e}"
                    );
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| anyhow!("plugin {name}: not a valid component: {e}"))?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            plugin = name,
            version = crate::plugins::short_version(version),
            ms = started.elapsed().as_millis() as u64,
            "plugin compiled"
        );
        if let Some(path) = &cached
            && let Err(e) = write_cache(path, &component)
        {
            tracing::warn!(plugin = name, "could not write the compile cache: {e:#}");
        }
        Ok(component)
    }

    /// How many components were compiled and how many came from the cache.
    pub fn compile_stats(&self) -> (u64, u64) {
        (
            self.stats.compiles.load(Ordering::Relaxed),
            self.stats.cache_hits.load(Ordering::Relaxed),
        )
    }

    /// Runs one attempt of `event` on `plugin` in `tx`, on `slot` when the caller reserved
    /// one (the worker does, in claim order), else on the next free one.
    pub async fn dispatch(
        &self,
        plugin: &LoadedPlugin,
        event: &Event,
        tx: Tx,
        slot: Option<InstanceSlot>,
    ) -> Dispatched {
        let wit_event = to_wit(event);
        self.run(plugin, &event.id, tx, slot, async |store| {
            let handler: Handler = plugin.pre.instantiate_async(&mut *store).await?;
            handler.call_handle(&mut *store, &wit_event).await
        })
        .await
    }

    /// Runs schedule `schedule` of `plugin` once (`run_id` tags its log
    /// lines and budgets), inside `tx`, with the plugin's limits.
    pub async fn run_scheduled(
        &self,
        plugin: &LoadedPlugin,
        schedule: &str,
        run_id: &str,
        tx: Tx,
    ) -> Dispatched {
        let Some(scheduled) = &plugin.scheduled else {
            return Dispatched {
                result: Err(DispatchError::Fatal(format!(
                    "plugin {} declares no schedules",
                    plugin.name
                ))),
                tx: Some(tx),
                elapsed: Duration::ZERO,
            };
        };
        self.run(plugin, run_id, tx, None, async |store| {
            let handler: ScheduledHandler = scheduled.instantiate_async(&mut *store).await?;
            handler
                .webhook_plugin_scheduled()
                .call_run_scheduled(&mut *store, schedule)
                .await
                .map(|result| result.map(|()| None))
        })
        .await
    }

    /// What one instance of `plugin` gets: its capabilities (bound to `tx`
    /// and its grants), output capture tagged `tag`, and memory limiter.
    /// `run` puts it in a `Store`; the native benchmark of the fal logic
    /// calls the same capabilities without one.
    pub fn state(&self, plugin: &LoadedPlugin, tag: &str, tx: Tx) -> State {
        let (stdout, stderr) = GuestOutput::pair(&plugin.name, tag);
        let services = &self.services;
        let sent = Arc::new(AtomicU32::new(0));
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
                max_bytes: plugin.limits.memory_bytes,
                exceeded: None,
            },
            db: DbState::new(
                tx,
                plugin.grants.db.is_some(),
                plugin.table_grant,
                plugin.limits.max_db_calls,
            ),
            config: ConfigState::new(plugin.config.clone(), plugin.secrets.clone()),
            log: LogState::new(&plugin.name, tag),
            blob: BlobState::new(
                services.blob.clone(),
                plugin.grants.blob.clone(),
                services.http.clone(),
                plugin.http_policy.clone(),
                sent.clone(),
            ),
            kv: KvState::new(plugin.grants.kv.then(|| services.kv.clone()), &plugin.name),
            http: WasiHttpCtx::new(),
            http_hooks: HttpHooks::new(
                services.http.clone(),
                plugin.http_policy.clone(),
                sent,
                &plugin.name,
                tag,
            ),
            timed_out: false,
            stderr,
        }
    }

    /// A fresh store for `plugin` (limits, deadline, capabilities bound to
    /// `tx`), then `call` in it; the outcome classified and the transaction
    /// handed back.
    async fn run<F>(
        &self,
        plugin: &LoadedPlugin,
        tag: &str,
        tx: Tx,
        slot: Option<InstanceSlot>,
        call: F,
    ) -> Dispatched
    where
        F: AsyncFnOnce(&mut Store<State>) -> wasmtime::Result<Result<Option<Vec<u8>>, HandlerError>>,
    {
        // Waiting for a slot (in arrival order: the semaphore is fair) is
        // not the plugin's time; its budget starts once it has an instance.
        let _slot = match slot {
            Some(slot) => slot,
            None => self.reserve().await,
        };
        let started = Instant::now();
        let state = self.state(plugin, tag, tx);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let deadline = started + plugin.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let outcome = tokio::time::timeout(plugin.limits.timeout + HOST_CALL_GRACE, call(&mut store)).await;
        let timeout_ms = plugin.limits.timeout.as_millis() as u64;
        let result = match outcome {
            Err(_) => Err(DispatchError::Timeout(timeout_ms)),
            Ok(Ok(Ok(body))) => Ok(body),
            Ok(Ok(Err(HandlerError::Invalid(m)))) => Err(DispatchError::Invalid(m)),
            Ok(Ok(Err(HandlerError::Retry(m)))) => Err(DispatchError::Retry(m)),
            Ok(Ok(Err(HandlerError::Fatal(m)))) => Err(DispatchError::Fatal(m)),
            Ok(Err(trap)) => {
                let state = store.data();
                Err(if state.timed_out {
                    DispatchError::Timeout(timeout_ms)
                } else if let Some(asked) = state.limiter.exceeded {
                    DispatchError::MemoryLimit {
                        asked_mib: asked >> 20,
                        limit_mib: plugin.limits.memory_bytes >> 20,
                    }
                } else {
                    let mut message = match trap.downcast_ref::<wasmtime::Trap>() {
                        Some(code) => code.to_string(),
                        None => trap.root_cause().to_string(),
                    };
                    if let Some(said) = state.stderr.recent_lines() {
                        message = format!("{message} (guest stderr: {said})");
                    }
                    DispatchError::Trap(message)
                })
            }
        };
        let tx = store.data_mut().db.take_tx();
        Dispatched {
            result,
            tx,
            elapsed: started.elapsed(),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// The WIT record of `event`, as a plugin receives it.
pub fn to_wit(event: &Event) -> bindings::types::Event {
    bindings::types::Event {
        id: event.id.clone(),
        route: event.route.clone(),
        delivery_id: event.delivery_id.clone(),
        received_at_ms: event.received_at_ms.max(0) as u64,
        attempt: event.attempts,
        headers: event
            .headers
            .iter()
            .map(|(name, value)| bindings::types::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        query: event.query.clone(),
        body: event.body.clone(),
    }
}
