//! The `db` capability on PostgreSQL: binding WIT values and reading rows.
//!
//! Values map to PostgreSQL types as: `null` → a NULL of whatever type the
//! statement needs, `boolean` → bool, `int` → int8, `float` → float8,
//! `text` → text, `bytes` → bytea, `json` → json. Columns come back as bool,
//! int (int2/4/8), float (float4/8), text (text, varchar, char, name),
//! bytes (bytea) and json (json, jsonb); cast anything else (uuid,
//! timestamps, numeric) to TEXT in the SQL.

use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgConnection, PgRow, PgTypeInfo};
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};

use super::rows::collect_rows;
use crate::wit::db::{Rows, Value};

/// A NULL whose type the server infers from the statement.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// JSON text sent as the `json` type (whose binary form is the text itself).
struct JsonText(String);

impl sqlx::Type<Postgres> for JsonText {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(114))
    }
}

impl sqlx::Encode<'_, Postgres> for JsonText {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn bind(mut query: PgQuery<'_>, params: Vec<Value>) -> PgQuery<'_> {
    for value in params {
        query = match value {
            Value::Null => query.bind(UntypedNull),
            Value::Boolean(b) => query.bind(b),
            Value::Int(n) => query.bind(n),
            Value::Float(f) => query.bind(f),
            Value::Text(s) => query.bind(s),
            Value::Bytes(b) => query.bind(b),
            Value::Json(s) => query.bind(JsonText(s)),
        };
    }
    query
}

/// Runs one plugin statement on `conn`; the rows it changed.
pub async fn execute(conn: &mut PgConnection, sql: &str, params: Vec<Value>) -> Result<u64, String> {
    bind(sqlx::query(sql), params)
        .execute(conn)
        .await
        .map(|d| d.rows_affected())
        .map_err(|e| e.to_string())
}

/// Runs one plugin query on `conn`.
pub async fn query(conn: &mut PgConnection, sql: &str, params: Vec<Value>) -> Result<Rows, String> {
    collect_rows(bind(sqlx::query(sql), params).fetch(conn), read_row).await
}

fn read_row(row: &PgRow) -> Result<Vec<Value>, String> {
    let err = |e: sqlx::Error| e.to_string();
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i).map_err(err)?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let kind = raw.type_info().name().to_string();
            Ok(match kind.as_str() {
                "BOOL" => Value::Boolean(row.try_get(i).map_err(err)?),
                "INT2" => Value::Int(row.try_get::<i16, _>(i).map_err(err)?.into()),
                "INT4" => Value::Int(row.try_get::<i32, _>(i).map_err(err)?.into()),
                "INT8" => Value::Int(row.try_get(i).map_err(err)?),
                "FLOAT4" => Value::Float(row.try_get::<f32, _>(i).map_err(err)?.into()),
                "FLOAT8" => Value::Float(row.try_get(i).map_err(err)?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => Value::Text(row.try_get(i).map_err(err)?),
                "BYTEA" => Value::Bytes(row.try_get(i).map_err(err)?),
                "JSON" | "JSONB" => {
                    let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
                    // jsonb's binary form starts with a version byte.
                    let binary = raw.format() == sqlx::postgres::PgValueFormat::Binary;
                    let text = if kind == "JSONB" && binary {
                        bytes.get(1..).unwrap_or_default()
                    } else {
                        bytes
                    };
                    Value::Json(String::from_utf8_lossy(text).into_owned())
                }
                other => {
                    let column = row.columns()[i].name();
                    return Err(format!(
                        "column {column} has type {other}; cast it to TEXT in the query"
                    ));
                }
            })
        })
        .collect()
}
