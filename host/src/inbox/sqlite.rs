//! The embedded inbox: one SQLite file under `DATA_DIR`, in WAL mode with
//! `synchronous = FULL`, so a committed row survives a crash of the process
//! or the machine.
//!
//! SQLite has one writer at a time; every connection waits up to
//! `BUSY_TIMEOUT` for the write lock, so intake and workers queue behind each
//! other instead of failing. An event's transaction ([`SqliteEventTx`]) takes
//! the lock only at its first write, so a plugin that reads, then talks to
//! the network, then writes does not hold up intake while it waits.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::SqlitePool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::sql::{self, event_from_row, pairs_to_json};
use super::{
    Event, Filter, Finish, Inbox, Insert, NewEvent, Replay, ScheduleGuard, Stats, Status, Tx, new_event_id,
};
use crate::now_ms;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The database file's name inside `DATA_DIR`.
pub const DB_FILE: &str = "webhooks.db";

fn migrator() -> Migrator {
    let migration = |version, description, sql| {
        Migration::new(
            version,
            Cow::Borrowed(description),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )
    };
    Migrator {
        migrations: Cow::Owned(vec![
            migration(
                1,
                "webhook events",
                include_str!("../../migrations/sqlite/0001_webhook_events.sql"),
            ),
            migration(
                2,
                "plugin store",
                include_str!("../../migrations/sqlite/0002_plugin_store.sql"),
            ),
            migration(
                3,
                "plugin activations",
                include_str!("../../migrations/sqlite/0003_plugin_activations.sql"),
            ),
            migration(
                4,
                "schedules",
                include_str!("../../migrations/sqlite/0004_schedules.sql"),
            ),
        ]),
        ignore_missing: true,
        locking: true,
        no_tx: false,
    }
}

/// The SQLite-backed inbox.
#[derive(Clone)]
pub struct SqliteInbox {
    pool: SqlitePool,
}

impl SqliteInbox {
    /// Opens (creating if needed) `data_dir/webhooks.db` and applies migrations.
    pub async fn open(data_dir: &Path, max_connections: u32) -> Result<Self> {
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
                Box::pin(async move {
                    crate::caps::db_sqlite_grants::unrestrict(conn)
                        .await
                        .map(|_| true)
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        migrator().run(&pool).await.context("applying inbox migrations")?;
        Ok(Self { pool })
    }

    /// Returns every leased event to `pending`; for embedded mode at start,
    /// when no other process can hold a lease (the data folder is locked).
    /// Returns how many.
    pub async fn release_all_leases(&self) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE webhook_events SET status = 'pending', lease_owner = NULL, lease_until = NULL \
             WHERE status = 'processing'",
        )
        .execute(&self.pool)
        .await
        .context("releasing leases")?;
        Ok(released.rows_affected())
    }

    /// The pool, for operator commands (`webhook-host db`).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// An event's transaction on SQLite, begun lazily.
///
/// Reads before the first write run on their own and see the latest committed
/// data (as PostgreSQL's READ COMMITTED would). The first statement that is
/// not a plain `SELECT` opens the transaction with `BEGIN IMMEDIATE`, taking
/// the write lock up front: a deferred transaction that read first could
/// not upgrade to writing after any other commit and would fail with "database
/// is locked". From then on every statement, and the event's move to `done`,
/// run in that one transaction. Dropped uncommitted, it rolls back.
pub struct SqliteEventTx {
    pool: SqlitePool,
    tx: Option<sqlx::Transaction<'static, sqlx::Sqlite>>,
}

impl SqliteEventTx {
    /// Where a read-only statement runs while no write has happened yet.
    pub fn pool(&self) -> Option<&SqlitePool> {
        self.tx.is_none().then_some(&self.pool)
    }

    /// The open transaction, beginning it (and taking the write lock) if needed.
    pub async fn open(&mut self) -> Result<&mut sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        if self.tx.is_none() {
            self.tx = Some(self.pool.begin_with("BEGIN IMMEDIATE").await?);
        }
        Ok(self.tx.as_mut().expect("just opened"))
    }
}

/// Whether a statement only reads: it starts with `SELECT`. Anything else,
/// including a `WITH` that might write, counts as a write.
pub fn is_plain_select(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    first.eq_ignore_ascii_case("select")
}

#[async_trait::async_trait]
impl Inbox for SqliteInbox {
    async fn insert_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Insert>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("opening the intake transaction")?;
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let id = new_event_id();
            let inserted = sqlx::query(
                "INSERT INTO webhook_events \
                 (id, route, delivery_id, received_at, headers, query, body, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $4) \
                 ON CONFLICT (route, delivery_id) DO NOTHING",
            )
            .bind(&id)
            .bind(&event.route)
            .bind(&event.delivery_id)
            .bind(event.received_at_ms)
            .bind(pairs_to_json(&event.headers))
            .bind(pairs_to_json(&event.query))
            .bind(&event.body)
            .execute(&mut *tx)
            .await
            .context("storing the event")?;
            if inserted.rows_affected() == 1 {
                results.push(Insert::Accepted { event_id: id });
                continue;
            }
            let existing: String = sqlx::query_scalar(sql::FIND_DUPLICATE)
                .bind(&event.route)
                .bind(&event.delivery_id)
                .fetch_one(&mut *tx)
                .await
                .context("finding the stored duplicate")?;
            results.push(Insert::Duplicate { event_id: existing });
        }
        tx.commit().await.context("committing the intake batch")?;
        Ok(results)
    }

    async fn claim(&self, owner: &str, limit: usize, lease_ms: i64) -> Result<Vec<Event>> {
        let now = now_ms();
        let sql = sql::claim("");
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .context("claiming due events")?;
        rows.iter().map(event_from_row).collect()
    }

    async fn begin(&self, _db_role: Option<&str>) -> Result<Tx> {
        Ok(Tx::Sqlite(SqliteEventTx {
            pool: self.pool.clone(),
            tx: None,
        }))
    }

    async fn complete(&self, tx: Tx, finish: Finish<'_>) -> Result<bool> {
        let Tx::Sqlite(tx) = tx else {
            anyhow::bail!("a non-SQLite transaction was handed to the SQLite inbox");
        };
        commit_if_one(tx, sql::mark_done(finish, now_ms()), "marking the event done").await
    }

    async fn complete_untouched(&self, finishes: &[Finish<'_>]) -> Result<Vec<bool>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("opening the completion transaction")?;
        let now = now_ms();
        let mut marked = Vec::with_capacity(finishes.len());
        for &finish in finishes {
            let done = sql::mark_done(finish, now)
                .execute(&mut *tx)
                .await
                .context("marking an event done")?;
            marked.push(done.rows_affected() == 1);
        }
        tx.commit().await.context("committing the completions")?;
        Ok(marked)
    }

    async fn commit_scheduled(&self, tx: Tx, guard: ScheduleGuard<'_>) -> Result<bool> {
        let Tx::Sqlite(tx) = tx else {
            anyhow::bail!("a non-SQLite transaction was handed to the SQLite inbox");
        };
        let check = sqlx::query(sql::SCHEDULE_GUARD)
            .bind(guard.lease_until_ms)
            .bind(guard.plugin)
            .bind(guard.schedule)
            .bind(guard.owner);
        commit_if_one(tx, check, "checking the schedule's lease").await
    }

    async fn fail(&self, finish: Finish<'_>, error: &str, retry_at_ms: Option<i64>) -> Result<()> {
        sqlx::query(sql::FAIL)
            .bind(retry_at_ms)
            .bind(now_ms())
            .bind(error)
            .bind(finish.plugin)
            .bind(finish.plugin_version)
            .bind(finish.event_id)
            .bind(finish.owner)
            .execute(&self.pool)
            .await
            .context("recording the failed attempt")?;
        Ok(())
    }

    async fn extend_lease(&self, event_id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let extended = sqlx::query(sql::EXTEND_LEASE)
            .bind(now_ms() + lease_ms)
            .bind(event_id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .context("renewing the lease")?;
        Ok(extended.rows_affected() == 1)
    }

    async fn replay(&self, which: Replay<'_>) -> Result<u64> {
        let done = match which {
            Replay::One(id) => {
                sqlx::query(&sql::replay_one())
                    .bind(now_ms())
                    .bind(id)
                    .execute(&self.pool)
                    .await
            }
            Replay::Dead { route } => {
                sqlx::query(&sql::replay_dead())
                    .bind(now_ms())
                    .bind(route)
                    .execute(&self.pool)
                    .await
            }
        };
        Ok(done.context("replaying events")?.rows_affected())
    }

    async fn prune_done(&self, before_ms: i64) -> Result<u64> {
        let pruned = sqlx::query(sql::PRUNE_DONE)
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .context("pruning done events")?;
        Ok(pruned.rows_affected())
    }

    async fn list(&self, filter: Filter<'_>, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(&sql::list())
            .bind(filter.status.map(Status::as_str))
            .bind(filter.route)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .context("listing events")?;
        rows.iter().map(event_from_row).collect()
    }

    async fn stats(&self, since_ms: i64) -> Result<Stats> {
        let rows = sqlx::query_as(sql::STATS)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await
            .context("counting events")?;
        Ok(sql::stats_from_rows(rows))
    }

    async fn backlog(&self) -> Result<u64> {
        sql::backlog(&self.pool).await
    }

    async fn get(&self, id: &str) -> Result<Option<Event>> {
        let row = sqlx::query(&sql::get())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("reading the event")?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("database ping")?;
        Ok(())
    }
}

/// Ends a plugin's transaction: `guard` (an UPDATE of the host's row that
/// proves this instance still owns the work: its lease), and a commit only
/// when it touched exactly one row; otherwise a rollback and `false`.
async fn commit_if_one<'q>(
    mut event_tx: SqliteEventTx,
    guard: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    what: &str,
) -> Result<bool> {
    event_tx.open().await.context("opening the transaction")?;
    let mut tx = event_tx.tx.take().expect("opened above");
    let touched = guard.execute(&mut *tx).await.with_context(|| what.to_string())?;
    if touched.rows_affected() != 1 {
        tx.rollback().await.context("rolling back after a lost lease")?;
        return Ok(false);
    }
    tx.commit().await.context("committing")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_selects_count_as_reads() {
        assert!(is_plain_select("  select id FROM avatars"));
        assert!(is_plain_select("SELECT(1)"));
        assert!(!is_plain_select("UPDATE avatars SET status = 'x'"));
        assert!(!is_plain_select("WITH x AS (SELECT 1) UPDATE t SET a = 1"));
        assert!(!is_plain_select("-- comment\nSELECT 1"));
        assert!(!is_plain_select(""));
    }
}
