//! Group commit on the intake path.
//!
//! Request handlers hand verified deliveries to one writer task per process
//! over a channel. The writer stores everything waiting in one transaction
//! ([`Inbox::insert_batch`]) and then answers each handler. While one batch
//! commits, the next one gathers, so batches grow with load by themselves;
//! an idle host writes a lone delivery at once, with no added delay. No
//! handler hears "accepted" before its row's commit. A batch that stored
//! something wakes this instance's worker once (other instances hear the
//! inbox's `NOTIFY`).
//!
//! The writer also tells when the host is overloaded: too many deliveries
//! waiting, or commits (the last one, or the one under way) slower than the
//! limit. Handlers then turn new deliveries away at once with 503 and
//! `Retry-After` instead of queueing without bound; what was accepted is
//! still written.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use anyhow::anyhow;
use tokio::sync::{Notify, mpsc, oneshot};

use super::Inbox;
use super::batch;
use super::event::{Insert, NewEvent};
use crate::db::dedicated::{Dedicated, connection_lost};
use crate::db::pool::Db;
use crate::now_ms;

/// Stores batches as [`Inbox::insert_batch`] does, one after another, on
/// PostgreSQL on a [`Dedicated`] connection.
pub struct BatchWriter {
    inbox: Inbox,
    own: Option<Dedicated>,
}

impl BatchWriter {
    /// See [`Inbox::insert_batch`]. A batch whose connection was lost is
    /// tried once more on a new one: a first try that did commit finds its
    /// rows stored, and answers them as duplicates of themselves.
    pub async fn insert(&mut self, events: Vec<NewEvent>) -> anyhow::Result<Vec<Insert>> {
        let Some(own) = &mut self.own else {
            return self.inbox.insert_batch(events).await;
        };
        let mut tried = false;
        loop {
            let outcome = match own.conn().await {
                Ok(conn) => batch::insert_postgres(conn, &events).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(results) => return Ok(self.inbox.stored(results)),
                Err(e) => {
                    own.reset();
                    if tried || !connection_lost(&e) {
                        return Err(e);
                    }
                    tried = true;
                }
            }
        }
    }
}

impl Inbox {
    /// A writer of batches one after another (intake's): on PostgreSQL on
    /// a connection of its own.
    pub fn batch_writer(&self) -> BatchWriter {
        let own = match &self.db {
            Db::Postgres(pool) => Some(Dedicated::new(pool, "")),
            Db::Sqlite(_) => None,
        };
        BatchWriter {
            inbox: self.clone(),
            own,
        }
    }
}

/// Most deliveries in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Insert, String>>;

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Turned away before queueing: the sender should retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// When the writer counts as overloaded.
#[derive(Debug, Clone, Copy)]
pub struct IntakeLimits {
    /// Deliveries waiting (queued or in the batch being written).
    pub max_waiting: usize,
    /// Slowest acceptable commit.
    pub max_commit_ms: u64,
    /// Pending events past which new deliveries wait; 0: no limit.
    pub max_backlog: u64,
}

/// How often the backlog is counted.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the writer shares with handlers about its load.
#[derive(Default)]
struct Load {
    waiting: AtomicUsize,
    /// When the batch being written started (ms), 0 when none is.
    commit_started_ms: AtomicI64,
    /// How long the last batch took, and when it ended (ms).
    last_commit_ms: AtomicU64,
    last_commit_end_ms: AtomicI64,
    /// Pending events at the last count.
    backlog: AtomicU64,
}

/// Answers each waiter of a batch written at once: its own result, or the
/// batch's error (the intake and completion writers share this).
pub(super) fn answer_each<T>(
    replies: impl IntoIterator<Item = oneshot::Sender<Result<T, String>>>,
    outcome: anyhow::Result<Vec<T>>,
) {
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            for reply in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}

/// The handle request handlers use.
#[derive(Clone)]
pub struct IntakeWriter {
    queue: mpsc::UnboundedSender<(NewEvent, Reply)>,
    load: Arc<Load>,
    limits: IntakeLimits,
}

impl IntakeWriter {
    /// Starts the writer task over `inbox`; after each batch that stored a
    /// new event it wakes `wake` (the worker) once.
    pub fn spawn(inbox: Inbox, limits: IntakeLimits, wake: Arc<Notify>) -> Self {
        // Unbounded here because `waiting` bounds it: handlers check it
        // before sending.
        let (queue, mut waiting) = mpsc::unbounded_channel::<(NewEvent, Reply)>();
        let load = Arc::new(Load::default());
        if limits.max_backlog > 0 {
            let (inbox, load) = (inbox.clone(), load.clone());
            crate::vital::spawn("backlog count", async move {
                loop {
                    match inbox.backlog().await {
                        Ok(n) => load.backlog.store(n, Ordering::Relaxed),
                        Err(e) => tracing::warn!("counting the backlog failed: {e:#}"),
                    }
                    tokio::time::sleep(BACKLOG_EVERY).await;
                }
            });
        }
        let shared = load.clone();
        let mut writer = inbox.batch_writer();
        crate::vital::spawn("intake writer", async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
                assert!(
                    !crate::vital::failpoint("intake-writer"),
                    "failpoint intake-writer: the intake writer stops"
                );
                let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
                let started = now_ms();
                shared.commit_started_ms.store(started, Ordering::Relaxed);
                let stored = writer.insert(events).await;
                shared.commit_started_ms.store(0, Ordering::Relaxed);
                let ended = now_ms();
                shared
                    .last_commit_ms
                    .store((ended - started).max(0) as u64, Ordering::Relaxed);
                shared.last_commit_end_ms.store(ended, Ordering::Relaxed);
                shared.waiting.fetch_sub(replies.len(), Ordering::Relaxed);
                if let Ok(results) = &stored
                    && results.iter().any(|r| matches!(r, Insert::Accepted { .. }))
                {
                    wake.notify_one();
                }
                answer_each(replies, stored);
            }
        });
        Self { queue, load, limits }
    }

    /// Why new deliveries should be turned away right now, if they should.
    pub fn overload(&self) -> Option<String> {
        let waiting = self.load.waiting.load(Ordering::Relaxed);
        if waiting >= self.limits.max_waiting {
            return Some(format!("{waiting} deliveries are waiting to be stored"));
        }
        let now = now_ms();
        let started = self.load.commit_started_ms.load(Ordering::Relaxed);
        let running = if started > 0 {
            (now - started).max(0) as u64
        } else {
            0
        };
        // A slow commit counts for as long as the limit after it ended, so
        // that the next delivery probes whether commits are fast again.
        let ended = self.load.last_commit_end_ms.load(Ordering::Relaxed);
        let last = if ((now - ended).max(0) as u64) < self.limits.max_commit_ms {
            self.load.last_commit_ms.load(Ordering::Relaxed)
        } else {
            0
        };
        let slowest = running.max(last);
        if slowest > self.limits.max_commit_ms {
            return Some(format!("storing deliveries takes {slowest} ms"));
        }
        let backlog = self.load.backlog.load(Ordering::Relaxed);
        (self.limits.max_backlog > 0 && backlog >= self.limits.max_backlog)
            .then(|| format!("{backlog} events are waiting to be processed"))
    }

    /// Stores one delivery; returns after its batch committed, or at once
    /// when the writer is overloaded.
    pub async fn insert(&self, event: NewEvent) -> Result<Insert, IntakeError> {
        if let Some(why) = self.overload() {
            return Err(IntakeError::Overloaded(why));
        }
        let (reply, answer) = oneshot::channel();
        self.load.waiting.fetch_add(1, Ordering::Relaxed);
        if self.queue.send((event, reply)).is_err() {
            self.load.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(anyhow!("the intake writer stopped").into());
        }
        let stored = answer.await.map_err(|_| anyhow!("the intake writer stopped"))?;
        Ok(stored.map_err(|e| anyhow!(e))?)
    }
}
