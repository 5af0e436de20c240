//! `db`: SQL inside the event's transaction.
//!
//! The plugin's statements and the event's move to `done` commit together,
//! or roll back together. Placeholders are `$1`, `$2`, … on every backend.
//! Where a statement runs (and when the transaction begins) is
//! [`crate::db::tx`]'s business; this module checks the statement, keeps
//! the per-event call budget, and converts values ([`sqlite`],
//! [`postgres`]). Results are capped at [`rows::MAX_ROWS`] rows so a
//! careless query cannot exhaust the host's memory.

pub mod grant;
mod postgres;
pub mod rows;
mod sqlite;

use self::grant::DbGrant;
use crate::caps::capability::{Capability, InstanceContext};
use crate::caps::services::Services;
use crate::caps::trace::trace_call;
use crate::db::grants::TableGrant;
use crate::db::pool::Db;
use crate::db::tx::{EventTx, Statement};
use crate::manifest::{Grants, Limits, Manifest};
use crate::wit::db::{Host, Rows, Value};

/// A plugin version's database access, prepared once at load.
pub struct DbPlugin {
    /// Whether the manifest grants `db` at all.
    pub granted: bool,
    /// The PostgreSQL role its statements run as.
    pub role: Option<String>,
    /// The tables its grant names, for SQLite's authorizer. Leaked on
    /// purpose: SQLite holds a raw pointer to it, so it must outlive every
    /// connection (one small allocation per loaded plugin version).
    pub tables: &'static TableGrant,
    /// `db` calls one event may make.
    pub max_calls: u32,
}

impl DbPlugin {
    pub fn prepare(grant: Option<&DbGrant>, max_calls: u32) -> Self {
        let tables = match grant {
            Some(db) => TableGrant::new(&db.read, &db.write),
            None => TableGrant::default(),
        };
        Self {
            granted: grant.is_some(),
            role: grant.and_then(|g| g.role.clone()),
            tables: Box::leak(Box::new(tables)),
            max_calls,
        }
    }

    /// The transaction one event's statements will run in (nothing is sent
    /// before the first statement).
    pub fn begin(&self, db: &Db) -> EventTx {
        EventTx::new(db, self.role.as_deref(), self.tables)
    }
}

/// One instance's database access: the event's transaction.
pub struct DbState {
    /// Taken back by the runtime after the call, to commit or roll back.
    tx: Option<EventTx>,
    /// Whether the manifest grants `db` (loading already refuses a component
    /// that imports it without the grant; this guards the calls too).
    granted: bool,
    /// Calls this instance may still make, and how many it had.
    calls_left: u32,
    max_calls: u32,
}

impl Capability for DbState {
    type Plugin = DbPlugin;

    fn prepare(manifest: &Manifest, limits: &Limits, _: &Services) -> anyhow::Result<DbPlugin> {
        Ok(DbPlugin::prepare(
            manifest.grants.db.as_ref(),
            limits.max_db_calls,
        ))
    }

    fn instance(plugin: &DbPlugin, cx: &mut InstanceContext<'_>) -> Self {
        Self {
            tx: cx.tx.take(),
            granted: plugin.granted,
            calls_left: plugin.max_calls,
            max_calls: plugin.max_calls,
        }
    }

    fn missing_grant(grants: &Grants) -> Option<&'static str> {
        grants.db.is_none().then_some("db = true")
    }
}

impl DbState {
    /// Hands the transaction back.
    pub fn take_tx(&mut self) -> Option<EventTx> {
        self.tx.take()
    }

    fn tx(&mut self) -> Result<&mut EventTx, String> {
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

    async fn run_query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, String> {
        check_statement(sql)?;
        match self.tx()?.statement(sql).await? {
            Statement::Sqlite(mut statement) => {
                let rows = sqlite::query(statement.conn(), sql, params).await;
                statement.finish().await?;
                rows
            }
            Statement::Postgres(mut statement) => {
                let rows = postgres::query(statement.conn(), sql, params).await;
                statement.settle(rows).await
            }
        }
    }

    async fn run_execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, String> {
        check_statement(sql)?;
        match self.tx()?.statement(sql).await? {
            Statement::Sqlite(mut statement) => {
                let done = sqlite::execute(statement.conn(), sql, params).await;
                statement.finish().await?;
                done
            }
            Statement::Postgres(mut statement) => {
                let done = postgres::execute(statement.conn(), sql, params).await;
                statement.settle(done).await
            }
        }
    }
}

impl Host for DbState {
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, String> {
        let result = self.run_query(&sql, params).await;
        match &result {
            Ok(rows) => trace_call!("db.query {sql} -> {} row(s)", rows.values.len()),
            Err(e) => trace_call!("db.query {sql} -> error: {e}"),
        }
        result
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, String> {
        let result = self.run_execute(&sql, params).await;
        match &result {
            Ok(n) => trace_call!("db.execute {sql} -> {n} row(s) changed"),
            Err(e) => trace_call!("db.execute {sql} -> error: {e}"),
        }
        result
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
