//! Startup: builds every part from [`Settings`] and runs the HTTP server and
//! the worker until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::caps;
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::inbox::worker::Worker;
use crate::inbox::{Inbox, PostgresInbox, SqliteInbox};
use crate::plugins::{self, PluginSet};
use crate::routes::RouteTable;
use crate::runtime::Runtime;

/// A built server with its listener bound.
pub struct Application {
    /// Held while the application lives: one process per data folder
    /// (embedded mode).
    _data_lock: Option<std::fs::File>,
    listener: TcpListener,
    state: Arc<AppState>,
    worker: Arc<Worker>,
}

impl Application {
    /// Opens the store, loads plugins, builds routes and binds `HOST:PORT`.
    pub async fn build(settings: Settings) -> Result<Self> {
        let routes = Arc::new(RouteTable::build(&settings)?);
        let pool_size = settings.worker.concurrency as u32 + 4;
        let (inbox, data_lock): (Arc<dyn Inbox>, Option<std::fs::File>) = match &settings.database_url {
            Some(url) => (
                Arc::new(PostgresInbox::connect(url, pool_size, true).await?),
                None,
            ),
            None => {
                let data_lock = lock_data_dir(&settings.data_dir)?;
                let sqlite = SqliteInbox::open(&settings.data_dir, pool_size).await?;
                // Embedded mode is one process per data folder: any lease left
                // over belongs to a process that is gone.
                let released = sqlite.release_all_leases().await?;
                if released > 0 {
                    tracing::info!(
                        released,
                        "events left in flight by the previous run are pending again"
                    );
                }
                (Arc::new(sqlite), Some(data_lock))
            }
        };

        let runtime = Arc::new(Runtime::new(
            &settings.runtime,
            caps::Services::from_settings(&settings)?,
        )?);
        let plugin_set = Arc::new(PluginSet::default());
        let mut loaded = plugins::load_dir(&runtime, &settings.plugins_dir, &settings.runtime)?;
        if settings.database_url.is_some() {
            // On a shared database a plugin's table access is its role's grants.
            loaded.retain(|name, plugin| {
                let unconfined = plugin.grants.db.is_some() && plugin.grants.db_role().is_none();
                if unconfined {
                    tracing::error!(plugin = %name, "not loaded: in PostgreSQL mode a db grant must name a role (db = {{ role = \"…\" }})");
                }
                !unconfined
            });
        }
        plugin_set.replace(loaded);
        for route in routes.iter() {
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
        let state = Arc::new(AppState {
            intake: crate::inbox::intake::IntakeWriter::spawn(inbox.clone()),
            inbox: inbox.clone(),
            routes: routes.clone(),
            plugins: plugin_set.clone(),
            wake: wake.clone(),
            instance_id: settings.instance_id.clone(),
            body_limit: settings.http.body_limit_bytes,
            admin_token: settings.admin_token.clone(),
        });
        let worker = Arc::new(Worker {
            inbox,
            runtime,
            plugins: plugin_set,
            routes,
            settings: settings.worker.clone(),
            owner: settings.instance_id.clone(),
            wake,
        });
        Ok(Self {
            _data_lock: data_lock,
            listener,
            state,
            worker,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops taking requests, lets
    /// in-flight events finish and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = self
            .worker
            .settings
            .enabled
            .then(|| tokio::spawn(self.worker.clone().run(stop_rx)));
        axum::serve(self.listener, http::router(self.state))
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
                let _ = stop_tx.send(true);
            })
            .await
            .context("serving HTTP")?;
        if let Some(worker) = worker {
            worker.await.context("the worker stopped abnormally")?;
        }
        Ok(())
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

/// The inbox the settings name, for operator commands: PostgreSQL when
/// `DATABASE_URL` is set, else the embedded SQLite file. Applies migrations.
pub async fn open_inbox(settings: &Settings) -> Result<Arc<dyn Inbox>> {
    Ok(match &settings.database_url {
        Some(url) => Arc::new(PostgresInbox::connect(url, 2, true).await?),
        None => Arc::new(SqliteInbox::open(&settings.data_dir, 1).await?),
    })
}
