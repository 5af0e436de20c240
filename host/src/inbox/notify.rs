//! Waking workers across instances (PostgreSQL): a stored batch is
//! announced with `NOTIFY webhook_events`, sent after the commit by one
//! task per process, which collapses requests made while one is on its way
//! into one more after it (a NOTIFY inside the intake transaction would
//! serialise concurrent commits on PostgreSQL's notification lock). Its
//! payload names the process that sent it, so a listener is not woken a
//! second time by its own batches: the intake writer has woken the local
//! worker already. Notifications are at least [`SPACING`] apart, and the
//! worker's poll interval is the backstop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::db::dedicated::Dedicated;

/// The channel intake notifies on.
pub const CHANNEL: &str = "webhook_events";

/// Session settings of the notifier's connection. A transaction that
/// notifies is given a transaction id, so its commit writes a commit record
/// and, under `synchronous_commit = on`, waits for the WAL flush like a
/// real write: as many flushes as intake's own. Nothing of a notification
/// needs to survive a crash (the poll is the backstop), and listeners hear
/// it at commit whether or not the record is flushed, so it commits
/// without waiting.
const SETUP: &str = "SET synchronous_commit = off";

/// Least time between two notifications of one process. Batches stored
/// meanwhile are announced by the next one: under load that is one
/// `NOTIFY` for many batches (each one wakes every listening instance),
/// and another instance's worker hears of an event at most this much later
/// (this instance's own worker is woken at once, by the intake writer).
const SPACING: Duration = Duration::from_millis(10);

/// Sends one `NOTIFY` (payload `origin`) per wake of `stored`, at most one
/// per [`SPACING`], forever, on a connection of its own.
pub async fn notifier(pool: PgPool, stored: Arc<Notify>, origin: Arc<str>) {
    let mut own = Dedicated::new(&pool, SETUP);
    loop {
        stored.notified().await;
        let next = tokio::time::Instant::now() + SPACING;
        let sent = match own.conn().await {
            Ok(conn) => sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&*origin)
                .execute(conn)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            own.reset();
            tracing::debug!("NOTIFY after intake failed (the poll covers it): {e:#}");
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Wakes `wake` on every other process's notification, re-listening after
/// a lost connection.
pub fn spawn_listener(pool: PgPool, wake: Arc<Notify>, origin: Arc<str>) {
    crate::vital::spawn("inbox listener", async move {
        loop {
            match listen(&pool, &wake, &origin).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!("LISTEN {CHANNEL} lost; polling until it is back: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen(pool: &PgPool, wake: &Notify, origin: &str) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything stored while we were not listening is found by this wake-up.
    wake.notify_one();
    loop {
        let notification = listener.recv().await?;
        if notification.payload() != origin {
            wake.notify_one();
        }
    }
}
