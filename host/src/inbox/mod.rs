//! The durable inbox: every accepted webhook is a row before the sender hears
//! 200, and stays until a plugin has handled it (`done`) or it has run out of
//! attempts (`dead`).
//!
//! [`Inbox`] is one type over [`Db`]: its operations are written once, in
//! the SQL both backends accept ([`sql`]); the backends differ only where
//! the SQL really does: the batch writes ([`batch`]), the claim's lock, and
//! announcing stored events to other instances ([`notify`], PostgreSQL).
//! Intake's group commit ([`intake`]), batched completions ([`complete`])
//! and retention ([`retention`]) sit on it. The inbox knows no wasm.
//!
//! On PostgreSQL instances claim due events with `FOR UPDATE SKIP LOCKED`,
//! so two never take the same event; a claim is a lease (owner, until) that
//! the worker renews while a long event runs, and an expired lease makes the
//! event claimable again (its owner died).

mod batch;
pub mod complete;
mod counts;
pub mod event;
pub mod intake;
pub mod notify;
pub mod retention;
mod sql;

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::Notify;

pub use self::batch::INSERT_MANY_POSTGRES;
pub use self::counts::DONE_COUNTED_BELOW;
pub use self::event::{
    Backlog, Event, Filter, Finish, FollowUp, Insert, NewEvent, Replay, ScheduleGuard, Spawn, Stats, Status,
    StoredPairs, new_event_id,
};
use self::sql::event_from_row;
use crate::config::Settings;
use crate::db::pool::{Arg, Db, bind_args, on_pool};
use crate::db::tx::EventTx;
use crate::now_ms;

/// Connections of the host's own pool on PostgreSQL: claims, lease
/// renewals, completions, the console and the plugin store. Intake's batch
/// writer, the notifier and the listener hold one each of their own.
pub const HOST_CONNECTIONS: u32 = 8;

/// The inbox on the host's database.
#[derive(Clone)]
pub struct Inbox {
    db: Db,
    /// Where plugins' statements run: on PostgreSQL a pool of its own, so
    /// that slow events can never take the connections intake, claims and
    /// lease renewals need; on SQLite the same pool.
    processing: Db,
    /// PostgreSQL: asks the notifier task for a `NOTIFY` after a batch.
    stored: Option<Arc<Notify>>,
    /// This process's notification payload (see [`notify`]).
    origin: Arc<str>,
}

impl Inbox {
    /// The inbox on `db`; on PostgreSQL it starts its notifier task.
    pub fn new(db: Db) -> Self {
        let origin: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
        let stored = match &db {
            Db::Postgres(pool) => {
                let stored = Arc::new(Notify::new());
                crate::vital::spawn(
                    "inbox notifier",
                    notify::notifier(pool.clone(), stored.clone(), origin.clone()),
                );
                Some(stored)
            }
            Db::Sqlite(_) => None,
        };
        Self {
            processing: db.clone(),
            db,
            stored,
            origin,
        }
    }

    /// Opens (creating if needed) `data_dir/webhooks.db` and applies migrations.
    pub async fn open_sqlite(data_dir: &std::path::Path, max_connections: u32) -> Result<Self> {
        Ok(Self::new(Db::open_sqlite(data_dir, max_connections).await?))
    }

    /// Connects (lazily) to PostgreSQL and, when `migrate`, applies migrations.
    pub async fn connect_postgres(
        url: &crate::config::Secret,
        max_connections: u32,
        migrate: bool,
    ) -> Result<Self> {
        Ok(Self::new(
            Db::connect_postgres(url, max_connections, migrate).await?,
        ))
    }

    /// The inbox the settings name: PostgreSQL when `DATABASE_URL` is set,
    /// else the embedded SQLite file. Applies migrations. `plugins` is the
    /// most plugin statements that run at once (events and schedules):
    /// PostgreSQL gets a pool of that size for them beside the host's own
    /// [`HOST_CONNECTIONS`]; SQLite one pool of both.
    pub async fn open(settings: &Settings, plugins: u32) -> Result<Self> {
        match &settings.database_url {
            Some(url) => {
                let inbox = Self::connect_postgres(url, HOST_CONNECTIONS, true).await?;
                let processing = Db::connect_postgres(url, plugins, false).await?;
                Ok(inbox.with_processing(processing))
            }
            None => Self::open_sqlite(&settings.data_dir, plugins + HOST_CONNECTIONS).await,
        }
    }

    /// The same inbox with plugins' statements on `processing`.
    pub fn with_processing(self, processing: Db) -> Self {
        Self { processing, ..self }
    }

    /// The database underneath (the plugin store shares it).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Where plugins' statements run (events' and schedules' transactions).
    pub fn processing_db(&self) -> &Db {
        &self.processing
    }

    /// Stores deliveries in one transaction, each unless its
    /// `(route, delivery_id)` is already stored (also earlier in the same
    /// batch). Returns, in order, what happened to each, only after the
    /// commit; on PostgreSQL other instances are then told.
    pub async fn insert_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Insert>> {
        let results = match &self.db {
            Db::Sqlite(pool) => batch::insert_sqlite(pool, &events).await?,
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await.context("connecting to PostgreSQL")?;
                batch::insert_postgres(&mut conn, &events).await?
            }
        };
        Ok(self.stored(results))
    }

    /// Tells other instances of new events among `results`.
    fn stored(&self, results: Vec<Insert>) -> Vec<Insert> {
        if results.iter().any(|r| matches!(r, Insert::Accepted { .. })) {
            self.stored_new();
        }
        results
    }

    /// Stores one delivery; see [`insert_batch`](Self::insert_batch).
    pub async fn insert(&self, event: NewEvent) -> Result<Insert> {
        let mut stored = self.insert_batch(vec![event]).await?;
        stored.pop().context("the store answered an empty batch")
    }

    /// Leases up to `limit` due events to `owner` for `lease_ms`: pending ones
    /// whose time has come and processing ones whose lease expired. Counts
    /// the attempt.
    pub async fn claim(&self, owner: &str, limit: usize, lease_ms: i64) -> Result<Vec<Event>> {
        let now = now_ms();
        let sql = sql::claim(if self.db.is_shared() {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        });
        let args = [
            Arg::Text(owner),
            Arg::Int(now + lease_ms),
            Arg::Int(now),
            Arg::Int(limit as i64),
        ];
        self.events(&sql, &args).await.context("claiming due events")
    }

    /// Leases event `id` to `owner` for `lease_ms` whether or not it is due
    /// (a sync route's delivery, run by the instance that stored it); none
    /// when it is done, dead or leased to another now.
    pub async fn claim_one(&self, id: &str, owner: &str, lease_ms: i64) -> Result<Option<Event>> {
        let now = now_ms();
        let args = [
            Arg::Text(owner),
            Arg::Int(now + lease_ms),
            Arg::Int(now),
            Arg::Text(id),
        ];
        let mut claimed = self
            .events(&sql::claim_one(), &args)
            .await
            .context("claiming the event")?;
        Ok(claimed.pop())
    }

    /// Marks the event `done` inside `tx`, stores the follow-ups it
    /// queued (`spawn`) and commits. Returns false (and rolls back) when
    /// `owner` no longer holds the lease.
    pub async fn complete(&self, tx: EventTx, finish: Finish<'_>, spawn: Option<Spawn<'_>>) -> Result<bool> {
        let now = now_ms();
        let args = sql::mark_done_args(finish, now);
        self.commit_with_followups(tx, sql::MARK_DONE, &args, "marking the event done", spawn, now)
            .await
    }

    /// Commits `tx` under `guard` (see [`EventTx::commit_if`]) with the
    /// rows of the follow-ups in `spawn`, and announces them once committed.
    async fn commit_with_followups(
        &self,
        tx: EventTx,
        guard: &str,
        args: &[Arg<'_>],
        what: &str,
        spawn: Option<Spawn<'_>>,
        now: i64,
    ) -> Result<bool> {
        let rows = spawn.map(|spawn| followup_rows(spawn, now)).unwrap_or_default();
        let also: Vec<_> = rows
            .iter()
            .map(|row| (sql::INSERT_FOLLOWUP, row.args()))
            .collect();
        let done = tx.commit_if(guard, args, what, &also).await?;
        if done && !rows.is_empty() {
            self.stored_new();
        }
        Ok(done)
    }

    /// Tells the other instances that events were stored (PostgreSQL).
    fn stored_new(&self) {
        if let Some(stored) = &self.stored {
            stored.notify_one();
        }
    }

    /// Marks events `done` whose transactions the plugins never began
    /// ([`EventTx::touched`] false), all in one transaction; for each, in
    /// order, false when its owner no longer holds the lease.
    pub async fn complete_untouched(&self, finishes: &[Finish<'_>]) -> Result<Vec<bool>> {
        match &self.db {
            Db::Sqlite(pool) => batch::complete_sqlite(pool, finishes).await,
            Db::Postgres(pool) => batch::complete_postgres(pool, finishes).await,
        }
    }

    /// Commits a scheduled run's transaction if `guard.owner` still holds the
    /// schedule's lease (checked in the same transaction); false, rolled
    /// back, when another instance has taken it.
    pub async fn commit_scheduled(
        &self,
        tx: EventTx,
        guard: ScheduleGuard<'_>,
        spawn: Option<Spawn<'_>>,
    ) -> Result<bool> {
        let args = [
            Arg::Int(guard.lease_until_ms),
            Arg::Text(guard.plugin),
            Arg::Text(guard.schedule),
            Arg::Text(guard.owner),
        ];
        let what = "checking the schedule's lease";
        self.commit_with_followups(tx, sql::SCHEDULE_GUARD, &args, what, spawn, now_ms())
            .await
    }

    /// Records a failed attempt: back to `pending` at `retry_at_ms`, or `dead`
    /// when `retry_at_ms` is none. False when the attempt no longer holds
    /// the lease (nothing changed).
    pub async fn fail(&self, finish: Finish<'_>, error: &str, retry_at_ms: Option<i64>) -> Result<bool> {
        let args = [
            Arg::MaybeInt(retry_at_ms),
            Arg::Int(now_ms()),
            Arg::Text(error),
            Arg::Text(finish.plugin),
            Arg::MaybeText(finish.plugin_version),
            Arg::Text(finish.event_id),
            Arg::Text(finish.owner),
            Arg::Int(i64::from(finish.attempt)),
        ];
        let changed = self
            .db
            .execute(sql::FAIL, &args)
            .await
            .context("recording the failed attempt")?;
        Ok(changed == 1)
    }

    /// Pushes the lease of attempt `attempt` of an event `owner` is still
    /// working on `lease_ms` into the future. False when the lease was lost
    /// (expired and claimed again, or the event finished).
    pub async fn extend_lease(
        &self,
        event_id: &str,
        owner: &str,
        attempt: u32,
        lease_ms: i64,
    ) -> Result<bool> {
        let args = [
            Arg::Int(now_ms() + lease_ms),
            Arg::Text(event_id),
            Arg::Text(owner),
            Arg::Int(i64::from(attempt)),
        ];
        let extended = self
            .db
            .execute(sql::EXTEND_LEASE, &args)
            .await
            .context("renewing the lease")?;
        Ok(extended == 1)
    }

    /// Queues events to run again from their first attempt; returns how many.
    /// One event may be replayed in any state but `processing`; a selection
    /// takes the `dead` events, of one route if given.
    pub async fn replay(&self, which: Replay<'_>) -> Result<u64> {
        let now = Arg::Int(now_ms());
        let (sql, args) = match which {
            Replay::One(id) => (sql::replay_one(), vec![now, Arg::Text(id)]),
            Replay::Dead { route: None } => (sql::replay_dead(false), vec![now]),
            Replay::Dead { route: Some(route) } => (sql::replay_dead(true), vec![now, Arg::Text(route)]),
        };
        self.db.execute(&sql, &args).await.context("replaying events")
    }

    /// Deletes `done` events finished before `before_ms`; `dead` ones stay.
    /// Returns how many.
    pub async fn prune_done(&self, before_ms: i64) -> Result<u64> {
        self.db
            .execute(sql::PRUNE_DONE, &[Arg::Int(before_ms)])
            .await
            .context("pruning done events")
    }

    /// Returns every leased event to `pending`; for embedded mode at start,
    /// when no other process can hold a lease (the data folder is locked).
    /// Returns how many.
    pub async fn release_all_leases(&self) -> Result<u64> {
        self.db
            .execute(sql::RELEASE_ALL, &[])
            .await
            .context("releasing leases")
    }

    /// Newest first, optionally of one status, of one route, or both.
    pub async fn list(&self, filter: Filter<'_>, limit: u32) -> Result<Vec<Event>> {
        let mut args = vec![Arg::Int(limit as i64)];
        args.extend(filter.route.map(Arg::Text));
        self.events(&sql::list(filter), &args)
            .await
            .context("listing events")
    }

    pub async fn get(&self, id: &str) -> Result<Option<Event>> {
        let mut found = self
            .events(&sql::get(), &[Arg::Text(id)])
            .await
            .context("reading the event")?;
        Ok(found.pop())
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await
    }

    /// Starts waking `wake` whenever another instance stores an event, where
    /// the backend can announce that (PostgreSQL); otherwise the worker's
    /// poll finds them. This process's own batches wake it through intake.
    pub fn spawn_listener(&self, wake: Arc<Notify>) {
        if let Db::Postgres(pool) = &self.db {
            notify::spawn_listener(pool.clone(), wake, self.origin.clone());
        }
    }

    /// The events a statement selected or returned.
    async fn events(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Event>> {
        on_pool!(&self.db, |pool| {
            let rows = bind_args!(sqlx::query(sql), args).fetch_all(pool).await?;
            rows.iter().map(event_from_row).collect()
        })
    }
}

/// One follow-up's row, owned until its insert is bound.
struct FollowUpRow<'a> {
    id: String,
    delivery_id: String,
    now: i64,
    spawn: Spawn<'a>,
    followup: &'a FollowUp,
}

impl FollowUpRow<'_> {
    /// [`sql::INSERT_FOLLOWUP`]'s arguments.
    fn args(&self) -> Vec<Arg<'_>> {
        vec![
            Arg::Text(&self.id),
            Arg::Text(self.spawn.route),
            Arg::Text(&self.delivery_id),
            Arg::Int(self.now),
            Arg::Bytes(&self.followup.payload),
            Arg::Int(self.now.saturating_add(self.followup.delay_ms as i64)),
            Arg::MaybeText(self.spawn.request_id),
            Arg::Text(self.spawn.parent_id),
            Arg::Text(&self.followup.name),
        ]
    }
}

fn followup_rows(spawn: Spawn<'_>, now: i64) -> Vec<FollowUpRow<'_>> {
    spawn
        .followups
        .iter()
        .map(|followup| FollowUpRow {
            id: new_event_id(),
            delivery_id: followup.delivery_id(),
            now,
            spawn,
            followup,
        })
        .collect()
}
