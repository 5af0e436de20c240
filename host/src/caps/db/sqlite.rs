//! The `db` capability on SQLite: binding WIT values and reading rows.
//! Statements are prepared fresh (never from the statement cache), so that
//! every one meets the table grant's authorizer.
//!
//! SQLite types values, not columns: each value comes back by its own
//! storage class (INTEGER → int, REAL → float, BLOB → bytes, the rest text).

use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Row, TypeInfo, ValueRef};

use super::rows::collect_rows;
use crate::wit::db::{Rows, Value};

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind(mut query: SqliteQuery<'_>, params: Vec<Value>) -> SqliteQuery<'_> {
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

/// Runs one plugin query on `conn`.
pub async fn query(conn: &mut SqliteConnection, sql: &str, params: Vec<Value>) -> Result<Rows, String> {
    let stream = bind(sqlx::query(sql).persistent(false), params).fetch(conn);
    collect_rows(stream, read_row).await
}

/// Runs one plugin statement on `conn`; the rows it changed.
pub async fn execute(conn: &mut SqliteConnection, sql: &str, params: Vec<Value>) -> Result<u64, String> {
    bind(sqlx::query(sql).persistent(false), params)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string())
}

/// Converts by each value's own storage class.
fn read_row(row: &SqliteRow) -> Result<Vec<Value>, String> {
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
