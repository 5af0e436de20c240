//! What the console's dashboard (every 2 s while open) and every `/metrics`
//! scrape read of the inbox: the counts per status, the last minute's
//! traffic and the backlog's ages. Each reads an index whose size the
//! backlog, the dead events or the last minute bound, never the table
//! retention keeps: on PostgreSQL the done events in all are estimated
//! once there are many, from the planner's own count of the table.

use anyhow::{Context, Result};

use super::event::{Backlog, Stats, Status};
use super::{Inbox, sql};
use crate::db::pool::{Db, on_pool};

/// PostgreSQL counts the done events exactly while it estimates the table
/// below this many rows (a count then costs a few milliseconds), and past
/// it reports its estimate less the exact other counts.
pub const DONE_COUNTED_BELOW: i64 = 100_000;

impl Inbox {
    /// Events per status, and how many arrived and finished since
    /// `since_ms`. The done count may be an estimate (see
    /// [`Stats::done_estimated`]).
    pub async fn stats(&self, since_ms: i64) -> Result<Stats> {
        let (pending, processing, dead, received_since, done_since): (i64, i64, i64, i64, i64) =
            on_pool!(&self.db, |pool| sqlx::query_as(sql::STATS)
                .bind(sql::first_id_at(since_ms))
                .bind(since_ms)
                .fetch_one(pool)
                .await)
            .context("counting events")?;
        let rows = match &self.db {
            Db::Postgres(pool) => sqlx::query_scalar(sql::ROWS_ESTIMATE_POSTGRES)
                .fetch_one(pool)
                .await
                .context("estimating the inbox's size")?,
            Db::Sqlite(_) => -1,
        };
        let done_estimated = rows >= DONE_COUNTED_BELOW;
        let done = if done_estimated {
            (rows - pending - processing - dead).max(0)
        } else {
            on_pool!(&self.db, |pool| sqlx::query_scalar(sql::DONE)
                .fetch_one(pool)
                .await)
            .context("counting done events")?
        };
        Ok(Stats {
            by_status: vec![
                (Status::Pending, pending),
                (Status::Processing, processing),
                (Status::Done, done),
                (Status::Dead, dead),
            ],
            received_since,
            done_since,
            done_estimated,
        })
    }

    /// Events waiting for the worker: pending and processing.
    pub async fn backlog(&self) -> Result<u64> {
        let n: i64 = on_pool!(&self.db, |pool| sqlx::query_scalar(sql::BACKLOG)
            .fetch_one(pool)
            .await)
        .context("counting the backlog")?;
        Ok(n.max(0) as u64)
    }

    /// How far behind processing is at `now_ms` (see [`Backlog`]).
    pub async fn backlog_ages(&self, now_ms: i64) -> Result<Backlog> {
        let (runnable, oldest_due_at_ms, oldest_received_at_ms): (i64, Option<i64>, Option<i64>) =
            on_pool!(&self.db, |pool| sqlx::query_as(sql::BACKLOG_AGES)
                .bind(now_ms)
                .fetch_one(pool)
                .await)
            .context("measuring the backlog")?;
        Ok(Backlog {
            runnable,
            oldest_due_at_ms,
            oldest_received_at_ms,
        })
    }
}
