//! `db`: SQL inside the event's transaction.
//!
//! The plugin's statements and the event's move to `done` commit together,
//! or roll back together. Placeholders are `$1`, `$2`, … on every backend.
//! Results are capped at [`MAX_ROWS`] rows so a careless query cannot exhaust
//! the host's memory.

use futures_util::TryStreamExt;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::db_postgres as postgres;
use super::db_sqlite_grants::{TableGrant, restrict, unrestrict};
use crate::inbox::Tx;
use crate::inbox::sqlite_is_plain_select as is_plain_select;
use crate::runtime::bindings::db::{Host, Rows, Value};

/// Most rows one query may return.
pub const MAX_ROWS: usize = 10_000;

/// One instance's database access: the event's transaction.
pub struct DbState {
    /// Taken back by the runtime after the call, to commit or roll back.
    tx: Option<Tx>,
    /// Whether the manifest grants `db` (loading already refuses a component
    /// that imports it without the grant; this guards the calls too).
    granted: bool,
    /// The tables SQLite's authorizer lets this plugin touch.
    tables: &'static TableGrant,
    /// Calls this instance may still make, and how many it had.
    calls_left: u32,
    max_calls: u32,
}

impl DbState {
    pub fn new(tx: Tx, granted: bool, tables: &'static TableGrant, max_calls: u32) -> Self {
        Self {
            tx: Some(tx),
            granted,
            tables,
            calls_left: max_calls,
            max_calls,
        }
    }

    /// Hands the transaction back.
    pub fn take_tx(&mut self) -> Option<Tx> {
        self.tx.take()
    }

    fn tx(&mut self) -> Result<&mut Tx, String> {
        if !self.granted {
            return Err("db is not granted to this plugin".into());
        }
        if self.calls_left == 0 {
            return Err(format!(
                "the budget of {} db calls per event is used up (limits.max_db_calls)",
                self.max_calls
            ));
        }
        self.calls_left -= 1;
        self.tx
            .as_mut()
            .ok_or_else(|| "the event's transaction is closed".into())
    }
}

impl Host for DbState {
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, String> {
        let result = self.run_query(&sql, params).await;
        match &result {
            Ok(rows) => crate::caps::trace_call!("db.query {sql} -> {} row(s)", rows.values.len()),
            Err(e) => crate::caps::trace_call!("db.query {sql} -> error: {e}"),
        }
        result
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, String> {
        let result = self.run_execute(&sql, params).await;
        match &result {
            Ok(n) => crate::caps::trace_call!("db.execute {sql} -> {n} row(s) changed"),
            Err(e) => crate::caps::trace_call!("db.execute {sql} -> error: {e}"),
        }
        result
    }
}

impl DbState {
    async fn run_query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, String> {
        let sql = sql.to_string();
        check_statement(&sql)?;
        let tables = self.tables;
        match self.tx()? {
            Tx::Sqlite(tx) => match tx.pool().filter(|_| is_plain_select(&sql)) {
                Some(pool) => {
                    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
                    restrict(&mut conn, tables).await?;
                    let rows = sqlite_query(&mut *conn, &sql, params).await;
                    unrestrict(&mut conn).await.map_err(|e| e.to_string())?;
                    rows
                }
                None => {
                    let tx = tx.open().await.map_err(|e| e.to_string())?;
                    restrict(tx, tables).await?;
                    let rows = sqlite_query(&mut **tx, &sql, params).await;
                    unrestrict(tx).await.map_err(|e| e.to_string())?;
                    rows
                }
            },
            Tx::Postgres(tx) => postgres::query(tx, &sql, params).await,
        }
    }

    async fn run_execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, String> {
        let sql = sql.to_string();
        check_statement(&sql)?;
        let tables = self.tables;
        match self.tx()? {
            Tx::Sqlite(tx) => {
                let tx = tx.open().await.map_err(|e| e.to_string())?;
                restrict(tx, tables).await?;
                let done = bind_sqlite(sqlx::query(&sql).persistent(false), params)
                    .execute(&mut **tx)
                    .await;
                unrestrict(tx).await.map_err(|e| e.to_string())?;
                Ok(done.map_err(|e| e.to_string())?.rows_affected())
            }
            Tx::Postgres(tx) => postgres::execute(tx, &sql, params).await,
        }
    }
}

/// Statement kinds a plugin may run.
const ALLOWED: [&str; 6] = ["select", "insert", "update", "delete", "with", "values"];

/// Lets through one data statement, nothing that changes the session: a
/// plugin must not leave its database role (`RESET ROLE`, `SET ROLE`,
/// `set_config('role', …)`), end the event's transaction, attach files or
/// change settings. Grants on tables are then the database's to enforce.
pub fn check_statement(sql: &str) -> Result<(), String> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    let first = trimmed
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ALLOWED.contains(&first.as_str()) {
        return Err(format!(
            "only SELECT, INSERT, UPDATE, DELETE, WITH and VALUES statements are allowed, not {:?}",
            trimmed.chars().take(24).collect::<String>()
        ));
    }
    if trimmed.contains(';') {
        return Err("one statement per call: pass values as parameters, not inside the SQL".into());
    }
    if trimmed.to_ascii_lowercase().contains("set_config") {
        return Err("set_config is not allowed: it changes the session".into());
    }
    Ok(())
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind_sqlite(mut query: SqliteQuery<'_>, params: Vec<Value>) -> SqliteQuery<'_> {
    for value in params {
        query = match value {
            Value::Null => query.bind(None::<String>),
            Value::Boolean(b) => query.bind(b),
            Value::Int(n) => query.bind(n),
            Value::Float(f) => query.bind(f),
            Value::Text(s) | Value::Json(s) => query.bind(s),
            Value::Bytes(b) => query.bind(b),
        };
    }
    query
}

async fn sqlite_query<'c>(
    executor: impl sqlx::Executor<'c, Database = Sqlite>,
    sql: &str,
    params: Vec<Value>,
) -> Result<Rows, String> {
    // Prepared fresh, so that the authorizer sees it.
    let stream = bind_sqlite(sqlx::query(sql).persistent(false), params).fetch(executor);
    collect_rows(stream, sqlite_row).await
}

/// Gathers a query's rows, at most [`MAX_ROWS`], converting each with `read`.
pub(super) async fn collect_rows<R: Row>(
    mut stream: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    read: impl Fn(&R) -> Result<Vec<Value>, String>,
) -> Result<Rows, String> {
    let mut rows = Rows {
        columns: Vec::new(),
        values: Vec::new(),
    };
    while let Some(row) = stream.try_next().await.map_err(|e| e.to_string())? {
        if rows.values.len() == MAX_ROWS {
            return Err(format!(
                "the query returned more than {MAX_ROWS} rows; add a LIMIT"
            ));
        }
        if rows.columns.is_empty() {
            rows.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        }
        rows.values.push(read(&row)?);
    }
    Ok(rows)
}

/// Converts by each value's own storage class: SQLite types values, not columns.
fn sqlite_row(row: &SqliteRow) -> Result<Vec<Value>, String> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let class = raw.type_info().name().to_string();
            let value = match class.as_str() {
                "INTEGER" | "BOOLEAN" => Value::Int(row.try_get(i).map_err(|e| e.to_string())?),
                "REAL" => Value::Float(row.try_get(i).map_err(|e| e.to_string())?),
                "BLOB" => Value::Bytes(row.try_get(i).map_err(|e| e.to_string())?),
                _ => Value::Text(row.try_get(i).map_err(|e| e.to_string())?),
            };
            Ok(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::check_statement;

    #[test]
    fn data_statements_pass_and_session_changes_do_not() {
        for ok in [
            "SELECT 1",
            "  update avatars SET status = $1 WHERE fal_request_id = $2;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "INSERT INTO t (a) VALUES ($1)",
        ] {
            assert!(check_statement(ok).is_ok(), "{ok}");
        }
        for bad in [
            "RESET ROLE",
            "SET ROLE postgres",
            "set local role x",
            "SELECT set_config('role', 'postgres', true)",
            "DROP TABLE webhook_events",
            "COMMIT",
            "SELECT 1; DROP TABLE avatars",
            "ATTACH DATABASE 'x' AS y",
            "PRAGMA writable_schema = 1",
            "-- hidden\nRESET ROLE",
            "",
        ] {
            assert!(check_statement(bad).is_err(), "{bad}");
        }
    }
}
