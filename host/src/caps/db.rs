//! `db`: SQL inside the event's transaction.
//!
//! The plugin's statements and the event's move to `done` commit together,
//! or roll back together. Placeholders are `$1`, `$2`, … on every backend.
//! Results are capped at [`MAX_ROWS`] rows so a careless query cannot exhaust
//! the host's memory.

use futures_util::TryStreamExt;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

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
}

impl DbState {
    pub fn new(tx: Tx, granted: bool) -> Self {
        Self {
            tx: Some(tx),
            granted,
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
        self.tx
            .as_mut()
            .ok_or_else(|| "the event's transaction is closed".into())
    }
}

impl Host for DbState {
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, String> {
        match self.tx()? {
            Tx::Sqlite(tx) => match tx.pool().filter(|_| is_plain_select(&sql)) {
                Some(pool) => sqlite_query(pool, &sql, params).await,
                None => sqlite_query(&mut **tx.open().await.map_err(|e| e.to_string())?, &sql, params).await,
            },
        }
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, String> {
        match self.tx()? {
            Tx::Sqlite(tx) => {
                let tx = tx.open().await.map_err(|e| e.to_string())?;
                let done = bind_sqlite(sqlx::query(&sql), params)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(done.rows_affected())
            }
        }
    }
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
    let mut stream = bind_sqlite(sqlx::query(sql), params).fetch(executor);
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
        rows.values.push(sqlite_row(&row)?);
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
