//! Startup: builds every part from [`Settings`] and runs the HTTP server and
//! the worker until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::alarms::Alarms;
use crate::caps;
use crate::config::Settings;
use crate::db::Db;
use crate::http::{self, state::AppState};
use crate::inbox::Inbox;
use crate::inbox::complete::Completer;
use crate::inbox::intake::{IntakeLimits, IntakeWriter};
use crate::plugins::PluginSet;
use crate::plugins::store::PluginStore;
use crate::plugins::sync::PluginSync;
use crate::routes::RouteTable;
use crate::runtime::Runtime;
use crate::schedule::Scheduler;
use crate::worker::Worker;
use crate::worker::threads::EventThreads;

/// A built server with its listener bound.
pub struct Application {
    /// Held while the application lives: one process per data folder
    /// (embedded mode).
    _data_lock: Option<std::fs::File>,
    listener: TcpListener,
    state: Arc<AppState>,
    worker: Arc<Worker>,
    scheduler: Arc<Scheduler>,
    /// The HTTP edge's limits.
    http: crate::config::HttpSettings,
    /// The backlog monitor's threshold and pace.
    alerts: crate::config::AlertSettings,
}

impl Application {
    /// Opens the store, loads plugins, builds routes and binds `HOST:PORT`.
    pub async fn build(settings: Settings) -> Result<Self> {
        let routes = Arc::new(RouteTable::build(&settings)?);
        // Every running event, and a scheduled run or two beside them.
        let pool_size = settings.worker.concurrency as u32 + 2;
        let data_lock = match &settings.database_url {
            Some(_) => None,
            None => Some(lock_data_dir(&settings.data_dir)?),
        };
        let inbox = Inbox::open(&settings, pool_size).await?;
        if data_lock.is_some() {
            // Embedded mode is one process per data folder: any lease left
            // over belongs to a process that is gone.
            let released = inbox.release_all_leases().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "events left in flight by the previous run are pending again"
                );
            }
        }
        let db = inbox.db().clone();

        crate::telemetry::prometheus();
        let services = caps::Services::from_settings(&settings)?;
        if settings.database_url.is_some() && settings.storage.s3.is_none() {
            tracing::warn!(
                "PostgreSQL mode without MINIO_ENDPOINT: blobs and deployed plugin versions stay in this \
                 instance's DATA_DIR; other instances cannot load versions deployed here"
            );
        }
        let store = Arc::new(PluginStore::new(db.clone(), services.blob.clone()));
        let runtime = Arc::new(Runtime::new(&settings.runtime, services)?);
        let plugin_set = Arc::new(PluginSet::default());
        let gate = Arc::new(crate::plugins::gate::Gate {
            plugins: plugin_set.clone(),
            runtime: runtime.clone(),
            db: db.clone(),
        });
        routes.run_verifiers_with(gate.clone());
        let sync = Arc::new(PluginSync::new(
            store,
            routes.clone(),
            runtime.clone(),
            plugin_set.clone(),
            settings.runtime.clone(),
        ));
        // Embedded mode follows the plugin folder; a shared database takes
        // from it only plugins it does not know yet.
        let embedded = settings.database_url.is_none();
        if let Err(e) = sync.seed_from(&settings.plugins_dir, embedded).await {
            tracing::error!(
                "seeding the plugin store from {}: {e:#}",
                settings.plugins_dir.display()
            );
        }
        if let Err(e) = sync.sync_once().await {
            tracing::error!("loading the active plugins: {e:#}");
        }
        let listen_on = match &db {
            Db::Postgres(pool) => Some(pool.clone()),
            Db::Sqlite(_) => None,
        };
        sync.clone()
            .spawn(listen_on, embedded.then(|| settings.plugins_dir.clone()));
        for route in routes.all() {
            if plugin_set.get(&route.plugin).is_none() {
                tracing::warn!(route = %route.name, plugin = %route.plugin, "the route's plugin is not loaded; its events wait");
            }
        }

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .await
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let wake = Arc::new(Notify::new());
        inbox.spawn_listener(wake.clone());
        crate::inbox::retention::spawn(inbox.clone(), settings.retention.clone());
        let alarms = Alarms::new(&settings.alerts, &settings.instance_id)?;
        let worker = Arc::new(Worker {
            completer: Completer::spawn(inbox.clone()),
            alarms,
            inbox: inbox.clone(),
            runtime: runtime.clone(),
            plugins: plugin_set.clone(),
            routes: routes.clone(),
            settings: settings.worker.clone(),
            owner: settings.instance_id.clone(),
            wake: wake.clone(),
            threads: EventThreads::start(settings.worker.threads).context("starting the event threads")?,
        });
        let state = Arc::new(AppState {
            intake: IntakeWriter::spawn(
                inbox.clone(),
                IntakeLimits {
                    max_waiting: settings.http.max_intake_waiting,
                    max_commit_ms: settings.http.max_commit_ms,
                    max_backlog: settings.http.max_backlog,
                },
                wake.clone(),
            ),
            inbox: inbox.clone(),
            routes: routes.clone(),
            plugins: plugin_set.clone(),
            runtime: runtime.clone(),
            plugin_sync: sync,
            wake: wake.clone(),
            instance_id: settings.instance_id.clone(),
            body_limit: settings.http.body_limit_bytes,
            body_timeout: std::time::Duration::from_millis(settings.http.body_timeout_ms),
            json_max_depth: settings.http.json_max_depth,
            admin_token: settings.admin_token.clone(),
            handshakes: Default::default(),
            worker: worker.clone(),
            gate,
        });
        let scheduler = Arc::new(Scheduler::new(
            inbox.clone(),
            runtime.clone(),
            plugin_set.clone(),
            routes.clone(),
            settings.instance_id.clone(),
        ));
        Ok(Self {
            _data_lock: data_lock,
            listener,
            state,
            worker,
            scheduler,
            http: settings.http.clone(),
            alerts: settings.alerts.clone(),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops taking requests, lets
    /// in-flight events finish and returns. When a background task dies
    /// (see [`crate::vital`]) it stops the same way after the grace time,
    /// and returns the death as an error: the process exits non-zero.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        crate::alarms::backlog::spawn(
            self.state.inbox.clone(),
            self.worker.alarms.clone(),
            self.alerts.clone(),
            stop_rx.clone(),
        );
        let worker = self.worker.settings.enabled.then(|| {
            self.scheduler.clone().spawn(stop_rx.clone());
            crate::vital::spawn("worker", self.worker.clone().run(stop_rx))
        });
        let stopping = async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutting down"),
                dead = crate::vital::died() => {
                    tracing::error!(task = dead.task, "stopping in {:?}: a background task died", crate::vital::GRACE);
                    tokio::time::sleep(crate::vital::GRACE).await;
                }
            }
            let _ = stop_tx.send(true);
        };
        http::server::serve(self.listener, http::router(self.state), &self.http, stopping).await?;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        match crate::vital::dead().into_iter().next() {
            Some(dead) => anyhow::bail!("the {} task died: {}", dead.task, dead.reason),
            None => Ok(()),
        }
    }
}

/// Takes the data folder's lock file, so that a second host on the same
/// folder fails at start instead of taking over the first one's leases.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    let path = data_dir.join("webhook-host.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another webhook-host is already serving from {}; embedded mode is one process per data folder",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}
