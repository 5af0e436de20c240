//! The durable inbox: every accepted webhook is a row before the sender hears
//! 200, and stays until a plugin has handled it (`done`) or it has run out of
//! attempts (`dead`).
//!
//! [`Inbox`] is the small trait the rest of the host uses; [`SqliteInbox`] is
//! the embedded backend. The [`worker`] claims due events and dispatches them.

pub mod backoff;
pub mod complete;
pub mod intake;
mod postgres;
pub mod retention;
mod sql;
mod sqlite;
pub mod worker;

use anyhow::{Context, Result};
use serde::Serialize;

pub use postgres::{PgEventTx, PostgresInbox};
pub use sqlite::{SqliteEventTx, SqliteInbox, is_plain_select as sqlite_is_plain_select};

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Processing,
    Done,
    Dead,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pending, Status::Processing, Status::Done, Status::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Done => "done",
            Status::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A verified delivery, about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub route: String,
    pub delivery_id: String,
    pub received_at_ms: i64,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    Accepted {
        event_id: String,
    },
    /// The same delivery id was already stored on this route.
    Duplicate {
        event_id: String,
    },
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub route: String,
    pub delivery_id: String,
    pub received_at_ms: i64,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub status: Status,
    /// Attempts started so far, this one included once claimed.
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub lease_owner: Option<String>,
    pub plugin: Option<String>,
    pub plugin_version: Option<String>,
    pub last_error: Option<String>,
    pub finished_at_ms: Option<i64>,
}

/// An event's transaction on the inbox's database: the plugin's `db`
/// statements run in it, and [`Inbox::complete`] commits it with the event's
/// move to `done`. Both kinds begin at the plugin's first statement that
/// needs them, so an event whose plugin never writes has no transaction.
pub enum Tx {
    Sqlite(SqliteEventTx),
    Postgres(PgEventTx),
}

impl Tx {
    /// Whether the plugin began the transaction (and so may have written).
    pub fn touched(&self) -> bool {
        match self {
            Tx::Sqlite(tx) => tx.pool().is_none(),
            Tx::Postgres(tx) => tx.is_open(),
        }
    }
}

/// Who is finishing which event, with which plugin version.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    pub event_id: &'a str,
    /// The lease owner that claimed it; a finish from anyone else is ignored.
    pub owner: &'a str,
    pub plugin: &'a str,
    pub plugin_version: Option<&'a str>,
}

/// Which events to list: each field narrows, none lists every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub status: Option<Status>,
    pub route: Option<&'a str>,
}

/// The inbox at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Events per status (statuses with none left out).
    pub by_status: Vec<(Status, i64)>,
    /// Events received since the given time.
    pub received_since: i64,
    /// Events done since the given time.
    pub done_since: i64,
}

impl Stats {
    pub fn count(&self, status: Status) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// Whose lease on which schedule a scheduled run commits under.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleGuard<'a> {
    pub plugin: &'a str,
    pub schedule: &'a str,
    pub owner: &'a str,
    /// The lease's new end.
    pub lease_until_ms: i64,
}

/// Which events to replay.
#[derive(Debug, Clone, Copy)]
pub enum Replay<'a> {
    One(&'a str),
    Dead { route: Option<&'a str> },
}

/// The inbox's storage operations.
#[async_trait::async_trait]
pub trait Inbox: Send + Sync {
    /// Stores deliveries in one transaction, each unless its
    /// `(route, delivery_id)` is already stored (also earlier in the same
    /// batch). Returns, in order, what happened to each, only after the
    /// commit.
    async fn insert_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Insert>>;

    /// Stores one delivery; see [`insert_batch`](Self::insert_batch).
    async fn insert(&self, event: NewEvent) -> Result<Insert> {
        let mut stored = self.insert_batch(vec![event]).await?;
        stored.pop().context("the store answered an empty batch")
    }

    /// Leases up to `limit` due events to `owner` for `lease_ms`: pending ones
    /// whose time has come and processing ones whose lease expired. Counts
    /// the attempt.
    async fn claim(&self, owner: &str, limit: usize, lease_ms: i64) -> Result<Vec<Event>>;

    /// Opens the transaction an event's plugin runs in, as the plugin's
    /// database role when it has one.
    async fn begin(&self, db_role: Option<&str>) -> Result<Tx>;

    /// Marks the event `done` inside `tx` and commits. Returns false (and
    /// rolls back) when `owner` no longer holds the lease.
    async fn complete(&self, tx: Tx, finish: Finish<'_>) -> Result<bool>;

    /// Marks events `done` whose transactions the plugins never began
    /// ([`Tx::touched`] false), all in one transaction; for each, in order,
    /// false when its owner no longer holds the lease.
    async fn complete_untouched(&self, finishes: &[Finish<'_>]) -> Result<Vec<bool>>;

    /// Records a failed attempt: back to `pending` at `retry_at_ms`, or `dead`
    /// when `retry_at_ms` is none.
    async fn fail(&self, finish: Finish<'_>, error: &str, retry_at_ms: Option<i64>) -> Result<()>;
    /// Commits a scheduled run's transaction if `guard.owner` still holds the
    /// schedule's lease (checked in the same transaction); false, rolled
    /// back, when another instance has taken it.
    async fn commit_scheduled(&self, tx: Tx, guard: ScheduleGuard<'_>) -> Result<bool>;

    /// Pushes the lease of an event `owner` is still working on `lease_ms`
    /// into the future. False when the lease was lost.
    async fn extend_lease(&self, event_id: &str, owner: &str, lease_ms: i64) -> Result<bool>;

    /// Queues events to run again from their first attempt; returns how many.
    /// One event may be replayed in any state but `processing`; a selection
    /// takes the `dead` events, of one route if given.
    async fn replay(&self, which: Replay<'_>) -> Result<u64>;

    /// Deletes `done` events finished before `before_ms`; `dead` ones stay.
    /// Returns how many.
    async fn prune_done(&self, before_ms: i64) -> Result<u64>;

    /// Newest first, optionally of one status.
    async fn list(&self, filter: Filter<'_>, limit: u32) -> Result<Vec<Event>>;
    /// Events per status, and how many arrived and finished since `since_ms`.
    async fn stats(&self, since_ms: i64) -> Result<Stats>;
    /// Events waiting for the worker: pending and processing.
    async fn backlog(&self) -> Result<u64>;

    async fn get(&self, id: &str) -> Result<Option<Event>>;

    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;

    /// Starts waking `wake` whenever any instance stores an event, where the
    /// backend can announce that; otherwise the worker's poll finds them.
    fn spawn_listener(&self, _wake: std::sync::Arc<tokio::sync::Notify>) {}
}

/// A fresh event id: `evt_` and a time-ordered UUID.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}
