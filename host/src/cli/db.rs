//! `webhook-host db exec|query`: SQL on the embedded database, for operators
//! (loading the bot's example schema, looking at an avatar).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sqlx::{Column, Row, ValueRef};

use crate::config::Settings;
use crate::db::Db;

#[derive(Subcommand)]
pub enum Command {
    /// Run statements (from a file or the argument); prints nothing on success.
    Exec {
        #[arg(long, conflicts_with = "sql")]
        file: Option<PathBuf>,
        sql: Option<String>,
    },
    /// Run one query and print its rows, tab-separated, with a header line.
    Query { sql: String },
}

pub async fn run(settings: Settings, command: Command) -> Result<()> {
    if settings.database_url.is_some() {
        bail!("`db` works on the embedded SQLite database; with DATABASE_URL set, use psql");
    }
    let db = Db::open_sqlite(&settings.data_dir, 1).await?;
    let pool = db.sqlite().expect("opened as SQLite");
    match command {
        Command::Exec { file, sql } => {
            let sql = match (file, sql) {
                (Some(file), None) => {
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
                }
                (None, Some(sql)) => sql,
                _ => bail!("give SQL or --file"),
            };
            sqlx::raw_sql(&sql)
                .execute(pool)
                .await
                .context("running the SQL")?;
        }
        Command::Query { sql } => {
            let rows = sqlx::query(&sql)
                .fetch_all(pool)
                .await
                .context("running the query")?;
            if let Some(first) = rows.first() {
                let names: Vec<&str> = first.columns().iter().map(|c| c.name()).collect();
                println!("{}", names.join("\t"));
            }
            for row in &rows {
                let cells: Vec<String> = (0..row.len()).map(|i| cell(row, i)).collect();
                println!("{}", cells.join("\t"));
            }
        }
    }
    Ok(())
}

fn cell(row: &sqlx::sqlite::SqliteRow, i: usize) -> String {
    if row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true) {
        return "NULL".into();
    }
    row.try_get::<String, _>(i)
        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string()))
        .or_else(|_| row.try_get::<f64, _>(i).map(|n| n.to_string()))
        .unwrap_or_else(|_| "<blob>".into())
}
