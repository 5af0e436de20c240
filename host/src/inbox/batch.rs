//! The two writes whose SQL really differs between the backends, both made
//! for batches: storing deliveries (intake's group commit) and marking
//! events `done` whose plugins wrote nothing (the completion writer's).
//!
//! SQLite runs one statement per row inside one `BEGIN IMMEDIATE`
//! transaction (one writer at a time, each statement cheap); PostgreSQL
//! sends one statement over arrays (`UNNEST`) for the whole batch, its own
//! transaction, with rows in a fixed lock order so that two instances'
//! batches never wait on each other in a cycle.

use std::collections::HashSet;

use anyhow::{Context, Result};
use sqlx::{PgConnection, PgPool, SqlitePool};

use super::event::{Finish, Insert, NewEvent, new_event_id};
use super::sql;
use crate::db::pool::bind_args;
use crate::now_ms;

const INSERT_ONE: &str = "INSERT INTO webhook_events \
     (id, route, delivery_id, received_at, headers, query, body, next_attempt_at, request_id, \
      order_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $10) \
     ON CONFLICT (route, delivery_id) DO NOTHING";

/// PostgreSQL's batch insert: one statement over arrays, answering one row:
/// how many of its rows were new (public for the campaign's storage floor,
/// which runs this very statement without the host around it).
pub const INSERT_MANY_POSTGRES: &str = "WITH stored AS (INSERT INTO webhook_events \
     (id, route, delivery_id, received_at, headers, query, body, next_attempt_at, request_id, \
      order_key) \
     SELECT id, route, delivery_id, received_at, headers, query, body, due_at, request_id, \
            order_key \
     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], \
                 $7::BYTEA[], $8::TEXT[], $9::BIGINT[], $10::TEXT[]) \
          AS batch(id, route, delivery_id, received_at, headers, query, body, request_id, due_at, \
                   order_key) \
     ON CONFLICT (route, delivery_id) DO NOTHING \
     RETURNING 1) \
     SELECT count(*) FROM stored";

/// Which of a batch's ids were stored, asked only when some were not.
const STORED_OF: &str = "SELECT id FROM webhook_events WHERE id = ANY($1::TEXT[])";

/// SQLite: every delivery in one transaction, in order.
pub async fn insert_sqlite(pool: &SqlitePool, events: &[NewEvent]) -> Result<Vec<Insert>> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .context("opening the intake transaction")?;
    let mut results = Vec::with_capacity(events.len());
    for event in events {
        let id = new_event_id();
        let inserted = sqlx::query(INSERT_ONE)
            .bind(&id)
            .bind(&event.route)
            .bind(&event.delivery_id)
            .bind(event.received_at_ms)
            .bind(event.headers.as_str())
            .bind(event.query.as_str())
            .bind(&event.body)
            .bind(&event.request_id)
            .bind(event.due_at_ms)
            .bind(&event.order_key)
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

/// PostgreSQL: one multi-row INSERT for the whole batch.
///
/// Rows go in (route, delivery id) order, so that concurrent batches
/// holding the same deliveries lock them in the same order (no deadlock);
/// the answers come back in the callers' order.
pub async fn insert_postgres(conn: &mut PgConnection, events: &[NewEvent]) -> Result<Vec<Insert>> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| {
        (&events[a].route, &events[a].delivery_id).cmp(&(&events[b].route, &events[b].delivery_id))
    });
    let ids: Vec<String> = events.iter().map(|_| new_event_id()).collect();
    // Every column is bound in row order, borrowed from the events: sqlx
    // encodes each array straight from them, no copy of a body, an id or
    // the headers' JSON (written once, at the edge).
    //
    // A transaction of its own (committed when it returns: no BEGIN or
    // COMMIT round trips); rows whose delivery is already stored (or
    // earlier in this batch) are skipped.
    let new: i64 = sqlx::query_scalar(INSERT_MANY_POSTGRES)
        .bind(in_order(&order, |i| ids[i].as_str()))
        .bind(in_order(&order, |i| events[i].route.as_str()))
        .bind(in_order(&order, |i| events[i].delivery_id.as_str()))
        .bind(in_order(&order, |i| events[i].received_at_ms))
        .bind(in_order(&order, |i| events[i].headers.as_str()))
        .bind(in_order(&order, |i| events[i].query.as_str()))
        .bind(in_order(&order, |i| events[i].body.as_slice()))
        .bind(in_order(&order, |i| events[i].request_id.as_deref()))
        .bind(in_order(&order, |i| events[i].due_at_ms))
        .bind(in_order(&order, |i| events[i].order_key.as_deref()))
        .fetch_one(&mut *conn)
        .await
        .context("storing the events")?;
    // One count, not a row per stored event: decoding rows was a twelfth of
    // the host's intake CPU. A batch with repeats asks which ids went in.
    if new as usize == events.len() {
        return Ok(ids
            .into_iter()
            .map(|event_id| Insert::Accepted { event_id })
            .collect());
    }
    let stored: HashSet<String> = sqlx::query_scalar::<_, String>(STORED_OF)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .context("finding which events were stored")?
        .into_iter()
        .collect();
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
            .fetch_one(&mut *conn)
            .await
            .context("finding the stored duplicate")?;
        results.push(Insert::Duplicate { event_id: existing });
    }
    Ok(results)
}

/// `column(i)` of each row, in `order`.
fn in_order<T>(order: &[usize], column: impl Fn(usize) -> T) -> Vec<T> {
    order.iter().map(|&i| column(i)).collect()
}

/// SQLite: each finish in one transaction; false where the lease was lost.
pub async fn complete_sqlite(pool: &SqlitePool, finishes: &[Finish<'_>]) -> Result<Vec<bool>> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .context("opening the completion transaction")?;
    let now = now_ms();
    let mut marked = Vec::with_capacity(finishes.len());
    for &finish in finishes {
        let done = bind_args!(sqlx::query(sql::MARK_DONE), &sql::mark_done_args(finish, now))
            .execute(&mut *tx)
            .await
            .context("marking an event done")?;
        marked.push(done.rows_affected() == 1);
    }
    tx.commit().await.context("committing the completions")?;
    Ok(marked)
}

/// PostgreSQL: one `UPDATE … FROM UNNEST` for all, rows locked in id order.
pub async fn complete_postgres(pool: &PgPool, finishes: &[Finish<'_>]) -> Result<Vec<bool>> {
    let mut order: Vec<usize> = (0..finishes.len()).collect();
    order.sort_by_key(|&i| finishes[i].event_id);
    let (mut ids, mut owners, mut plugins, mut versions, mut attempts) =
        (vec![], vec![], vec![], vec![], vec![]);
    for &i in &order {
        ids.push(finishes[i].event_id);
        owners.push(finishes[i].owner);
        plugins.push(finishes[i].plugin);
        versions.push(finishes[i].plugin_version);
        attempts.push(i64::from(finishes[i].attempt));
    }
    let marked: Vec<String> = sqlx::query_scalar(sql::MARK_DONE_MANY_POSTGRES)
        .bind(now_ms())
        .bind(ids)
        .bind(owners)
        .bind(plugins)
        .bind(versions)
        .bind(attempts)
        .fetch_all(pool)
        .await
        .context("marking events done")?;
    // An id listed twice is marked once: only its first finish counts.
    let mut marked: HashSet<&str> = marked.iter().map(String::as_str).collect();
    Ok(finishes.iter().map(|f| marked.remove(f.event_id)).collect())
}
