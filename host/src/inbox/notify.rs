//! Waking workers across instances (PostgreSQL): a stored batch is
//! announced with `NOTIFY webhook_events`, sent after the commit by one
//! task per process, which collapses requests made while one is on its way
//! into one more after it (a NOTIFY inside the intake transaction would
//! serialise concurrent commits on PostgreSQL's notification lock). Its
//! payload names the process that sent it, so a listener is not woken a
//! second time by its own batches: the intake writer has woken the local
//! worker already. The worker's poll interval is the backstop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

/// The channel intake notifies on.
pub const CHANNEL: &str = "webhook_events";

/// Sends one `NOTIFY` (payload `origin`) per wake of `stored`, forever.
pub async fn notifier(pool: PgPool, stored: Arc<Notify>, origin: Arc<str>) {
    loop {
        stored.notified().await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&*origin)
            .execute(&pool)
            .await
        {
            tracing::debug!("NOTIFY after intake failed (the poll covers it): {e}");
        }
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
