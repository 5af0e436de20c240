//! What both inbox backends share: the column list, the row mapping, and
//! the statements written once in the SQL both SQLite and PostgreSQL accept
//! (`$n` placeholders, `CAST`).

use anyhow::{Context, Result};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::event::{Event, Filter, Finish, Status};
use crate::db::pool::Arg;

/// The columns of an [`Event`], in the order `event_from_row` reads them.
pub const COLUMNS: &str = "id, route, delivery_id, received_at, headers, query, body, status, \
     CAST(attempts AS BIGINT) AS attempts, next_attempt_at, lease_owner, plugin, plugin_version, \
     last_error, finished_at, request_id, parent_id, task, order_key";

/// Why a leased attempt ended when its lease is taken back (the row as it
/// was: `attempts` is that attempt's number).
macro_rules! ended_without_result {
    () => {
        "'attempt ' || attempts || ' ended without a result: ' || \
         COALESCE(lease_owner, 'its instance') || ' stopped or lost the lease while running it'"
    };
}

/// What a claim sets: the lease, the next attempt number (every claim is
/// an attempt, and its number fences the attempt's later writes), and, when
/// it takes over an expired lease, why the attempt before ended (the
/// right-hand side reads the row as it was).
const CLAIM_SET: &str = concat!(
    "SET status = 'processing', lease_owner = $1, lease_until = $2, attempts = attempts + 1, \
     last_error = CASE WHEN status = 'processing' THEN ",
    ended_without_result!(),
    " ELSE last_error END"
);

/// Every leased event back to `pending`, saying why its attempt ended
/// (embedded mode at start: no other process can hold a lease).
pub const RELEASE_ALL: &str = concat!(
    "UPDATE webhook_events SET status = 'pending', lease_owner = NULL, lease_until = NULL, \
     last_error = ",
    ended_without_result!(),
    " WHERE status = 'processing'"
);

/// Whether pending event `e` is first in line: it has no ordering key, or
/// no other event of its route and key is running, and none stored before
/// it (by `received_at`, then id) still waits. An event retrying holds the
/// ones after it back; a dead one does not. Once claimed, an event is
/// running and holds back the rest of its key, and an expired lease is
/// taken over whatever waits behind it, so a line never blocks itself.
macro_rules! first_in_line {
    () => {
        "(e.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_events AS b \
           WHERE b.route = e.route AND b.order_key = e.order_key \
             AND b.status IN ('pending', 'processing') AND b.id <> e.id \
             AND (b.status = 'processing' OR b.received_at < e.received_at \
                  OR (b.received_at = e.received_at AND b.id < e.id))))"
    };
}

/// Leases due events: $1 owner, $2 lease end, $3 now, $4 limit. `lock` ends
/// the selection of due rows (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
/// that concurrent claimers pass each other by). Of each ordering key at
/// most the first in line is taken.
pub fn claim(lock: &str) -> String {
    format!(
        concat!(
            "UPDATE webhook_events {CLAIM_SET} \
             WHERE id IN (SELECT e.id FROM webhook_events AS e \
                 WHERE e.status IN ('pending', 'processing') \
                   AND ((e.status = 'pending' AND e.next_attempt_at <= $3 AND ",
            first_in_line!(),
            ") OR (e.status = 'processing' AND e.lease_until < $3)) \
                 ORDER BY e.next_attempt_at LIMIT $4 {lock}) \
             RETURNING {COLUMNS}"
        ),
        CLAIM_SET = CLAIM_SET,
        lock = lock,
        COLUMNS = COLUMNS,
    )
}

/// Leases one event by id, due or not, unless it is done, dead, leased
/// to someone now, or behind others of its ordering key: $1 owner, $2
/// lease end, $3 now, $4 id.
pub fn claim_one() -> String {
    format!(
        concat!(
            "UPDATE webhook_events AS e {CLAIM_SET} \
             WHERE e.id = $4 AND ((e.status = 'pending' AND ",
            first_in_line!(),
            ") OR (e.status = 'processing' AND e.lease_until < $3)) \
             RETURNING {COLUMNS}"
        ),
        CLAIM_SET = CLAIM_SET,
        COLUMNS = COLUMNS,
    )
}

/// Events that are running or due ($1 now): how many, the oldest due
/// time of those waiting, and the oldest arrival.
pub const BACKLOG_AGES: &str = "SELECT CAST(COUNT(*) AS BIGINT), \
     MIN(CASE WHEN status = 'pending' THEN next_attempt_at END), MIN(received_at) \
     FROM webhook_events \
     WHERE status = 'processing' OR (status = 'pending' AND next_attempt_at <= $1)";

/// Pending and processing events (read from the due index).
pub const BACKLOG: &str = "SELECT COUNT(*) FROM webhook_events WHERE status IN ('pending', 'processing')";

pub const FIND_DUPLICATE: &str = "SELECT id FROM webhook_events WHERE route = $1 AND delivery_id = $2";

/// [`MARK_DONE`]'s arguments for `finish` at `now`.
pub fn mark_done_args(finish: Finish<'_>, now: i64) -> [Arg<'_>; 6] {
    [
        Arg::Int(now),
        Arg::Text(finish.plugin),
        Arg::MaybeText(finish.plugin_version),
        Arg::Text(finish.event_id),
        Arg::Text(finish.owner),
        Arg::Int(i64::from(finish.attempt)),
    ]
}

/// Stores a follow-up in its parent's transaction, unless the route has it
/// already: $1 id, $2 route, $3 delivery id, $4 now, $5 payload, $6 due,
/// $7 request id, $8 parent id, $9 name.
pub const INSERT_FOLLOWUP: &str = "INSERT INTO webhook_events \
     (id, route, delivery_id, received_at, headers, query, body, next_attempt_at, request_id, \
      parent_id, task) \
     VALUES ($1, $2, $3, $4, '[]', '[]', $5, $6, $7, $8, $9) \
     ON CONFLICT (route, delivery_id) DO NOTHING";

/// $1 now, $2 plugin, $3 version, $4 id, $5 owner, $6 attempt (the fence).
pub const MARK_DONE: &str = "UPDATE webhook_events SET status = 'done', finished_at = $1, plugin = $2, \
     plugin_version = $3, last_error = NULL, lease_owner = NULL, lease_until = NULL \
     WHERE id = $4 AND lease_owner = $5 AND attempts = $6 AND status = 'processing'";

/// Many events at once: $1 now, then arrays of ids, owners, plugins,
/// versions and attempts (PostgreSQL). Returns the ids marked.
pub const MARK_DONE_MANY_POSTGRES: &str = "UPDATE webhook_events AS e SET status = 'done', \
     finished_at = $1, plugin = b.plugin, plugin_version = b.version, last_error = NULL, \
     lease_owner = NULL, lease_until = NULL \
     FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
         AS b(id, owner, plugin, version, attempt) \
     WHERE e.id = b.id AND e.lease_owner = b.owner AND e.attempts = b.attempt \
       AND e.status = 'processing' \
     RETURNING e.id";

/// $1 retry time or NULL (dead), $2 now, $3 error, $4 plugin, $5 version, $6 id, $7 owner,
/// $8 attempt (the fence: a stale attempt cannot undo a newer one's lease).
pub const FAIL: &str = "UPDATE webhook_events SET \
       status = CASE WHEN CAST($1 AS BIGINT) IS NULL THEN 'dead' ELSE 'pending' END, \
       next_attempt_at = COALESCE(CAST($1 AS BIGINT), next_attempt_at), \
       finished_at = CASE WHEN CAST($1 AS BIGINT) IS NULL THEN $2 ELSE NULL END, \
       last_error = $3, plugin = $4, plugin_version = $5, \
       lease_owner = NULL, lease_until = NULL \
     WHERE id = $6 AND lease_owner = $7 AND attempts = $8 AND status = 'processing'";

/// $1 new lease end, $2 plugin, $3 schedule, $4 owner.
pub const SCHEDULE_GUARD: &str = "UPDATE schedule_leases SET lease_until = $1 \
     WHERE plugin = $2 AND schedule = $3 AND owner = $4";

/// $1 new lease end, $2 id, $3 owner, $4 attempt.
pub const EXTEND_LEASE: &str = "UPDATE webhook_events SET lease_until = $1 \
     WHERE id = $2 AND lease_owner = $3 AND attempts = $4 AND status = 'processing'";

const REPLAY: &str = "UPDATE webhook_events SET status = 'pending', attempts = 0, next_attempt_at = $1, \
     lease_owner = NULL, lease_until = NULL, finished_at = NULL";

/// $1 now, $2 id.
pub fn replay_one() -> String {
    format!("{REPLAY} WHERE id = $2 AND status <> 'processing'")
}

/// $1 now, then $2 the route when `of_route` (dead events, from their
/// index).
pub fn replay_dead(of_route: bool) -> String {
    let route = if of_route { " AND route = $2" } else { "" };
    format!("{REPLAY} WHERE status = 'dead'{route}")
}

/// $1 cut-off time.
pub const PRUNE_DONE: &str = "DELETE FROM webhook_events WHERE status = 'done' AND finished_at < $1";

/// Events as `filter` selects them, newest first (an id begins with its
/// arrival time, see migration 0008): $1 limit, then $2 the route if the
/// filter names one. Each shape of filter is a statement of its own, its
/// status written in, so that each is planned for its index: dead events
/// read from theirs, a route's events from the unique key, pending and
/// processing ones from the due index, done ones backwards along the
/// primary key.
pub fn list(filter: Filter<'_>) -> String {
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        conditions.push(format!("status = '{}'", status.as_str()));
    }
    if filter.route.is_some() {
        conditions.push("route = $2".to_string());
    }
    let selection = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    format!("SELECT {COLUMNS} FROM webhook_events {selection}ORDER BY id DESC LIMIT $1")
}

/// The counts an index bounds: pending and processing events (from the due
/// index), dead ones (the dead index), those received since $2 (a range of
/// the primary key from $1, the first id of that millisecond: an event's id
/// is made after it arrived) and those done since $2 (the finished index).
/// The done events in all are [`DONE`], or an estimate where counting them
/// would read most of the table.
pub const STATS: &str = "SELECT \
     (SELECT COUNT(*) FROM webhook_events WHERE status = 'pending'), \
     (SELECT COUNT(*) FROM webhook_events WHERE status = 'processing'), \
     (SELECT COUNT(*) FROM webhook_events WHERE status = 'dead'), \
     (SELECT COUNT(*) FROM webhook_events WHERE id >= $1 AND received_at >= $2), \
     (SELECT COUNT(*) FROM webhook_events WHERE status = 'done' AND finished_at >= $2)";

/// The first id an event stored at `ms` or later can have (see [`STATS`]).
pub fn first_id_at(ms: i64) -> String {
    format!("evt_{:012x}", ms.max(0))
}

pub const DONE: &str = "SELECT COUNT(*) FROM webhook_events WHERE status = 'done'";

/// PostgreSQL's own estimate of the inbox's rows, the planner's: the count
/// its last vacuum or analyse made, scaled to the table's size now; -1
/// before the first.
pub const ROWS_ESTIMATE_POSTGRES: &str = "SELECT CAST(CASE WHEN relpages > 0 \
     THEN reltuples / relpages * (pg_relation_size(oid) / current_setting('block_size')::int) \
     ELSE -1 END AS BIGINT) \
     FROM pg_class WHERE oid = 'webhook_events'::regclass";

/// $1 id.
pub fn get() -> String {
    format!("SELECT {COLUMNS} FROM webhook_events WHERE id = $1")
}

/// Reads an [`Event`] from a row selected with [`COLUMNS`].
pub fn event_from_row<'r, R>(row: &'r R) -> Result<Event>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let pairs = |column: &str| -> Result<Vec<(String, String)>> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).with_context(|| format!("column {column} is not JSON pairs"))
    };
    let status: String = row.try_get("status")?;
    Ok(Event {
        id: row.try_get("id")?,
        route: row.try_get("route")?,
        delivery_id: row.try_get("delivery_id")?,
        received_at_ms: row.try_get("received_at")?,
        headers: pairs("headers")?,
        query: pairs("query")?,
        body: row.try_get("body")?,
        status: Status::parse(&status).with_context(|| format!("unknown status {status:?}"))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_attempt_at_ms: row.try_get("next_attempt_at")?,
        lease_owner: row.try_get("lease_owner")?,
        plugin: row.try_get("plugin")?,
        plugin_version: row.try_get("plugin_version")?,
        last_error: row.try_get("last_error")?,
        finished_at_ms: row.try_get("finished_at")?,
        request_id: row.try_get("request_id")?,
        parent_id: row.try_get("parent_id")?,
        task: row.try_get("task")?,
        order_key: row.try_get("order_key")?,
    })
}
