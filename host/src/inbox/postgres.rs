//! The production inbox: PostgreSQL, shared by every host instance.
//!
//! Instances claim due events with `FOR UPDATE SKIP LOCKED`, so two never
//! take the same event; a claim is a lease (owner, until) that the worker
//! renews while a long event runs, and an expired lease makes the event
//! claimable again (its owner died). A stored event is announced with
//! `NOTIFY webhook_events` (delivered on commit), which wakes idle workers on
//! every instance; the poll interval is the backstop.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;

use super::sql::{self, event_from_row, pairs_to_json};
use super::{
    Event, Filter, Finish, Inbox, Insert, NewEvent, Replay, ScheduleGuard, Stats, Status, Tx, new_event_id,
};
use crate::config::Secret;
use crate::now_ms;

/// The channel intake notifies on.
pub const CHANNEL: &str = "webhook_events";

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
                include_str!("../../migrations/postgres/0001_webhook_events.sql"),
            ),
            migration(
                2,
                "plugin store",
                include_str!("../../migrations/postgres/0002_plugin_store.sql"),
            ),
            migration(
                3,
                "plugin activations",
                include_str!("../../migrations/postgres/0003_plugin_activations.sql"),
            ),
            migration(
                4,
                "schedules",
                include_str!("../../migrations/postgres/0004_schedules.sql"),
            ),
        ]),
        ignore_missing: true,
        // Takes a PostgreSQL advisory lock: instances starting together queue.
        locking: true,
        no_tx: false,
    }
}

/// The PostgreSQL-backed inbox.
#[derive(Clone)]
pub struct PostgresInbox {
    pool: PgPool,
    /// Asks the notifier task for a `NOTIFY` (see [`Self::notify_stored`]).
    stored: Arc<Notify>,
}

impl PostgresInbox {
    /// One batch, its rows already in lock order: one multi-row INSERT.
    async fn insert_sorted(&self, events: Vec<NewEvent>) -> Result<Vec<Insert>> {
        let ids: Vec<String> = events.iter().map(|_| new_event_id()).collect();
        let column = |f: &dyn Fn(&NewEvent) -> String| events.iter().map(f).collect::<Vec<String>>();
        // One multi-row INSERT for the whole batch, a transaction of its own
        // (committed when it returns: no BEGIN or COMMIT round trips); rows
        // whose delivery is already stored (or earlier in this batch) are
        // skipped.
        let stored: Vec<String> = sqlx::query_scalar(
            "INSERT INTO webhook_events \
             (id, route, delivery_id, received_at, headers, query, body, next_attempt_at) \
             SELECT id, route, delivery_id, received_at, headers, query, body, received_at \
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::BYTEA[]) \
                  AS batch(id, route, delivery_id, received_at, headers, query, body) \
             ON CONFLICT (route, delivery_id) DO NOTHING \
             RETURNING id",
        )
        .bind(&ids)
        .bind(column(&|e| e.route.clone()))
        .bind(column(&|e| e.delivery_id.clone()))
        .bind(events.iter().map(|e| e.received_at_ms).collect::<Vec<i64>>())
        .bind(column(&|e| pairs_to_json(&e.headers)))
        .bind(column(&|e| pairs_to_json(&e.query)))
        .bind(events.iter().map(|e| e.body.clone()).collect::<Vec<Vec<u8>>>())
        .fetch_all(&self.pool)
        .await
        .context("storing the events")?;
        let stored: std::collections::HashSet<String> = stored.into_iter().collect();
        let mut results = Vec::with_capacity(events.len());
        for (event, id) in events.iter().zip(ids) {
            if stored.contains(&id) {
                results.push(Insert::Accepted { event_id: id });
                continue;
            }
            // Committed before this batch's statement ended, or by it.
            let existing: String = sqlx::query_scalar(sql::FIND_DUPLICATE)
                .bind(&event.route)
                .bind(&event.delivery_id)
                .fetch_one(&self.pool)
                .await
                .context("finding the stored duplicate")?;
            results.push(Insert::Duplicate { event_id: existing });
        }
        if !stored.is_empty() {
            self.notify_stored();
        }
        Ok(results)
    }

    /// Tells every instance that events were stored, after the commit (a
    /// NOTIFY inside the intake transaction would serialise the commits of
    /// concurrent batches on PostgreSQL's notification lock). Requests made
    /// while one NOTIFY is on its way collapse into one more after it.
    fn notify_stored(&self) {
        self.stored.notify_one();
    }
    /// Connects (lazily: the host starts even while PostgreSQL is down and
    /// reports it on `/health`) and, when `migrate`, applies migrations.
    pub async fn connect(url: &Secret, max_connections: u32, migrate: bool) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let stored = Arc::new(Notify::new());
        tokio::spawn(notifier(pool.clone(), stored.clone()));
        let inbox = Self { pool, stored };
        if migrate {
            inbox.migrate().await?;
        }
        Ok(inbox)
    }

    /// Applies migrations under an advisory lock (safe to run from several
    /// instances at once).
    pub async fn migrate(&self) -> Result<()> {
        migrator()
            .run(&self.pool)
            .await
            .context("applying PostgreSQL migrations")
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Quotes a role name for `SET LOCAL ROLE` (manifests only allow
/// `[a-z0-9_]`, this is the second guard).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[async_trait::async_trait]
impl Inbox for PostgresInbox {
    async fn insert_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Insert>> {
        // Rows go in (route, delivery id) order, so that concurrent batches
        // holding the same deliveries lock them in the same order (no
        // deadlock); the answers come back in the callers' order.
        let mut indexed: Vec<(usize, NewEvent)> = events.into_iter().enumerate().collect();
        indexed.sort_by(|(_, a), (_, b)| (&a.route, &a.delivery_id).cmp(&(&b.route, &b.delivery_id)));
        let (order, events): (Vec<usize>, Vec<NewEvent>) = indexed.into_iter().unzip();
        let sorted = self.insert_sorted(events).await?;
        let mut results: Vec<Option<Insert>> = vec![None; sorted.len()];
        for (result, &i) in sorted.into_iter().zip(&order) {
            results[i] = Some(result);
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every slot answered"))
            .collect())
    }

    async fn claim(&self, owner: &str, limit: usize, lease_ms: i64) -> Result<Vec<Event>> {
        let now = now_ms();
        let sql = sql::claim("FOR UPDATE SKIP LOCKED");
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

    async fn begin(&self, db_role: Option<&str>) -> Result<Tx> {
        Ok(Tx::Postgres(PgEventTx {
            pool: self.pool.clone(),
            role: db_role.map(str::to_owned),
            tx: None,
            savepoint_used: false,
        }))
    }

    async fn complete(&self, tx: Tx, finish: Finish<'_>) -> Result<bool> {
        let Tx::Postgres(tx) = tx else {
            anyhow::bail!("a non-PostgreSQL transaction was handed to the PostgreSQL inbox");
        };
        commit_if_one(tx, sql::mark_done(finish, now_ms()), "marking the event done").await
    }

    async fn complete_untouched(&self, finishes: &[Finish<'_>]) -> Result<Vec<bool>> {
        // Rows locked in id order, as every batch does, so two instances'
        // batches never wait on each other in a cycle.
        let mut order: Vec<usize> = (0..finishes.len()).collect();
        order.sort_by_key(|&i| finishes[i].event_id);
        let (mut ids, mut owners, mut plugins, mut versions) = (vec![], vec![], vec![], vec![]);
        for &i in &order {
            ids.push(finishes[i].event_id);
            owners.push(finishes[i].owner);
            plugins.push(finishes[i].plugin);
            versions.push(finishes[i].plugin_version);
        }
        let marked: Vec<String> = sqlx::query_scalar(sql::MARK_DONE_MANY_POSTGRES)
            .bind(now_ms())
            .bind(ids)
            .bind(owners)
            .bind(plugins)
            .bind(versions)
            .fetch_all(&self.pool)
            .await
            .context("marking events done")?;
        // An id listed twice is marked once: only its first finish counts.
        let mut marked: std::collections::HashSet<&str> = marked.iter().map(String::as_str).collect();
        Ok(finishes.iter().map(|f| marked.remove(f.event_id)).collect())
    }

    async fn commit_scheduled(&self, tx: Tx, guard: ScheduleGuard<'_>) -> Result<bool> {
        let Tx::Postgres(tx) = tx else {
            anyhow::bail!("a non-PostgreSQL transaction was handed to the PostgreSQL inbox");
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

    fn spawn_listener(&self, wake: Arc<Notify>) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                match listen(&pool, &wake).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!("LISTEN {CHANNEL} lost; polling until it is back: {e:#}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

/// Wakes the worker on every notification until the connection fails.
/// Sends `NOTIFY` once per request from [`PostgresInbox::notify_stored`],
/// coalescing requests that arrive while one is being sent.
async fn notifier(pool: PgPool, stored: Arc<Notify>) {
    loop {
        stored.notified().await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!("NOTIFY after intake failed (the poll covers it): {e}");
        }
    }
}

/// An event's PostgreSQL transaction, begun at the plugin's first statement
/// (as the plugin's database role, when it has one, in the same round trip).
///
/// Each plugin statement runs inside a savepoint, so a failed one is rolled
/// back alone and the plugin may go on, as on SQLite (PostgreSQL would
/// otherwise abort the whole transaction). The savepoint is made with the
/// `BEGIN`, and renewed (released and made again, one round trip) only
/// before a statement that follows a successful one; a failed statement's
/// `ROLLBACK TO` leaves it ready for the next. `COMMIT` releases the last.
pub struct PgEventTx {
    pool: PgPool,
    role: Option<String>,
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    /// Whether a statement ran inside the current savepoint.
    savepoint_used: bool,
}

const SAVEPOINT: &str = "SAVEPOINT plugin_statement";

impl PgEventTx {
    /// Whether a statement has begun the transaction.
    pub fn is_open(&self) -> bool {
        self.tx.is_some()
    }

    /// The transaction, begun if needed, with a fresh savepoint for the
    /// plugin's next statement; pass the statement's outcome to
    /// [`settle`](Self::settle).
    pub async fn statement(&mut self) -> Result<&mut sqlx::Transaction<'static, sqlx::Postgres>, String> {
        match &mut self.tx {
            None => {
                let begin = match &self.role {
                    // One round trip: the role switch and the savepoint travel with the BEGIN.
                    Some(role) => format!("BEGIN; SET LOCAL ROLE {}; {SAVEPOINT}", quote_ident(role)),
                    None => format!("BEGIN; {SAVEPOINT}"),
                };
                let tx = self.pool.begin_with(begin).await.map_err(|e| match &self.role {
                    Some(role) => format!("opening the event transaction as the database role {role:?}: {e}"),
                    None => format!("opening the event transaction: {e}"),
                })?;
                self.tx = Some(tx);
            }
            Some(tx) if self.savepoint_used => {
                // A plain string goes as a simple query: both in one round trip.
                let conn: &mut sqlx::PgConnection = tx;
                sqlx::Executor::execute(
                    conn,
                    "RELEASE SAVEPOINT plugin_statement; SAVEPOINT plugin_statement",
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            Some(_) => {}
        }
        self.savepoint_used = true;
        Ok(self.tx.as_mut().expect("open"))
    }

    /// Keeps a statement's effects, or rolls back to the savepoint made for
    /// it when it failed.
    pub async fn settle<T>(&mut self, outcome: Result<T, String>) -> Result<T, String> {
        if outcome.is_err()
            && let Some(tx) = &mut self.tx
        {
            sqlx::query("ROLLBACK TO SAVEPOINT plugin_statement")
                .execute(&mut **tx)
                .await
                .map_err(|e| e.to_string())?;
            self.savepoint_used = false;
        }
        outcome
    }
}

/// Ends a plugin's transaction: back to the host's own role, `guard` (an
/// UPDATE of the host's row that proves this instance still owns the work:
/// its lease), and a commit only when the guard touched exactly one row;
/// otherwise a rollback and `false`.
async fn commit_if_one(
    mut event_tx: PgEventTx,
    guard: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    what: &str,
) -> Result<bool> {
    let mut tx = match event_tx.tx.take() {
        Some(mut tx) => {
            if event_tx.role.is_some() {
                sqlx::query("RESET ROLE")
                    .execute(&mut *tx)
                    .await
                    .context("leaving the plugin's role")?;
            }
            tx
        }
        // The plugin never began it: the guard alone, under the host's role.
        None => event_tx.pool.begin().await.context("opening the transaction")?,
    };
    let touched = guard.execute(&mut *tx).await.with_context(|| what.to_string())?;
    if touched.rows_affected() != 1 {
        tx.rollback().await.context("rolling back after a lost lease")?;
        return Ok(false);
    }
    tx.commit().await.context("committing")?;
    Ok(true)
}

async fn listen(pool: &PgPool, wake: &Notify) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything stored while we were not listening is found by this wake-up.
    wake.notify_one();
    loop {
        listener.recv().await?;
        wake.notify_one();
    }
}
