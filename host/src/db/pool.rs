//! The database the host's tables live on: SQLite (embedded) or PostgreSQL
//! (shared by every instance), opened, migrated, and reached through one
//! type.
//!
//! Both backends run the same SQL wherever the dialects agree (`$n`
//! placeholders, `CAST`). [`on_pool!`] writes such a call once and runs it on
//! whichever pool there is; [`Arg`] carries the host's few parameter kinds
//! to either backend.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use super::migrate::{Dialect, migrator};
use crate::config::secret::Secret;

/// How long an SQLite connection waits for the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// A PostgreSQL connection idle this long is tested (a round trip) before
/// it is handed out; one used more recently is not. sqlx tests every
/// connection as it comes back, so a fresh one was alive moments ago, and a
/// statement on one that died since fails like any other (the event is
/// retried, a read answers 503).
const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);
/// The embedded database's file name inside `DATA_DIR`.
pub const DB_FILE: &str = "webhooks.db";

/// The host's database.
#[derive(Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same sqlx expression on whichever pool `$db` has.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::pool::Db::Sqlite($pool) => $body,
            $crate::db::pool::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A statement parameter of the host's own statements.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    MaybeInt(Option<i64>),
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Bytes(&'a [u8]),
}

/// Binds `args` to a sqlx query, in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match *arg {
                $crate::db::pool::Arg::Int(n) => query.bind(n),
                $crate::db::pool::Arg::MaybeInt(n) => query.bind(n),
                $crate::db::pool::Arg::Text(s) => query.bind(s),
                $crate::db::pool::Arg::MaybeText(s) => query.bind(s),
                $crate::db::pool::Arg::Bytes(b) => query.bind(b),
            };
        }
        query
    }};
}
pub(crate) use bind_args;

impl Db {
    /// Opens (creating if needed) `data_dir/webhooks.db` in WAL mode with
    /// `synchronous = FULL`, so a committed row survives a crash of the
    /// process or the machine, and applies migrations. Every connection
    /// waits up to [`BUSY_TIMEOUT`] for the write lock, so writers queue
    /// behind each other instead of failing.
    pub async fn open_sqlite(data_dir: &Path, max_connections: u32) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data folder {}", data_dir.display()))?;
        let path = data_dir.join(DB_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            // A plugin call cut short (timeout) may leave its table authorizer
            // on the connection: never hand it on with one.
            .after_release(|conn, _| {
                Box::pin(async move { super::grants::unrestrict(conn).await.map(|_| true) })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let db = Self::Sqlite(pool);
        db.migrate().await?;
        Ok(db)
    }

    /// Connects to PostgreSQL (lazily: the host starts even while the
    /// server is down and reports it on `/health`) and, when `migrate`,
    /// applies migrations.
    pub async fn connect_postgres(url: &Secret, max_connections: u32, migrate: bool) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(5))
            // sqlx's own test costs a round trip on every hand-out: under load
            // that was a tenth of the worker's CPU.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < TEST_IDLE_AFTER {
                        return Ok(true);
                    }
                    // A dead connection is dropped and another one handed out.
                    Ok(sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .connect_lazy_with(options);
        let db = Self::Postgres(pool);
        if migrate {
            db.migrate().await?;
        }
        Ok(db)
    }

    /// Applies the host's migrations; on PostgreSQL under an advisory lock,
    /// so instances starting together queue.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(pool) => migrator(Dialect::Sqlite)
                .run(pool)
                .await
                .context("applying inbox migrations"),
            Db::Postgres(pool) => migrator(Dialect::Postgres)
                .run(pool)
                .await
                .context("applying PostgreSQL migrations"),
        }
    }

    /// The SQLite pool, in embedded mode (operator commands run raw SQL on it).
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(pool) => Some(pool),
            Db::Postgres(_) => None,
        }
    }

    /// Whether other instances share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs one statement of the host's; returns the rows it changed.
    pub async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        on_pool!(self, |pool| bind_args!(sqlx::query(sql), args)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
        .context("database ping")
    }
}
