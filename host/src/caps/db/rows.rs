//! A plugin query's rows, gathered from either backend under one cap.

use futures_util::TryStreamExt;
use sqlx::{Column, Row};

use crate::wit::db::{Rows, Value};

/// Most rows one query may return.
pub const MAX_ROWS: usize = 10_000;

/// Gathers a query's rows, at most [`MAX_ROWS`], converting each with `read`.
pub async fn collect_rows<R: Row>(
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
