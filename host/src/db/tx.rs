//! THE event transaction: the one place a plugin's database work is
//! begun, run and ended, on both backends.
//!
//! An [`EventTx`] is made for every attempt and sends nothing until the
//! plugin's first statement needs it, so an event whose plugin never writes
//! has no transaction at all ([`EventTx::touched`]); its `done` then joins
//! a batch of such completions.
//!
//! - **SQLite.** Reads before the first write run on a pooled connection of
//!   their own and see the latest committed data (as PostgreSQL's READ
//!   COMMITTED would). The first statement that is not a plain `SELECT`
//!   opens the transaction with `BEGIN IMMEDIATE`, taking the write lock up
//!   front: a deferred transaction that read first could not upgrade to
//!   writing after any other commit and would fail with "database is
//!   locked". So a plugin that reads, then talks to the network, then writes
//!   does not hold up intake while it waits. Every plugin statement is
//!   checked by SQLite's authorizer against the plugin's table grant
//!   ([`super::grants`]).
//! - **PostgreSQL.** The first statement begins the transaction, as the
//!   plugin's database role when it has one, in the same round trip. Each
//!   plugin statement runs inside a savepoint, so a failed one is rolled back
//!   alone and the plugin may go on, as on SQLite (PostgreSQL would otherwise
//!   abort the whole transaction). The savepoint is made with the `BEGIN`,
//!   and renewed (released and made again, one round trip) only before a
//!   statement that follows a successful one; a failed statement's
//!   `ROLLBACK TO` leaves it ready for the next. `COMMIT` releases the last.
//!
//! It ends in [`EventTx::commit_if`]: a guard statement that proves this
//! instance still owns the work (its lease) and a commit only when the guard
//! touched exactly one row. Dropped uncommitted, it rolls back.

use anyhow::{Context, Result};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::grants::{TableGrant, restrict, unrestrict};
use super::pool::{Arg, Db, bind_args};

const SAVEPOINT: &str = "SAVEPOINT plugin_statement";

/// An event's transaction, begun at the plugin's first statement.
pub struct EventTx {
    backend: Backend,
}

enum Backend {
    Sqlite {
        pool: SqlitePool,
        /// The tables the authorizer lets the plugin touch.
        tables: &'static TableGrant,
        tx: Option<Transaction<'static, Sqlite>>,
    },
    Postgres {
        pool: PgPool,
        /// The role the plugin's statements run as.
        role: Option<String>,
        tx: Option<Transaction<'static, Postgres>>,
        /// Whether a statement ran inside the current savepoint.
        savepoint_used: bool,
    },
}

/// Where one plugin statement runs; see [`EventTx::statement`].
pub enum Statement<'t> {
    Sqlite(SqliteStatement<'t>),
    Postgres(PgStatement<'t>),
}

/// An SQLite connection with the plugin's table grant in force; call
/// [`finish`](Self::finish) once the statement is done.
pub struct SqliteStatement<'t> {
    conn: SqliteConn<'t>,
}

enum SqliteConn<'t> {
    /// A read before any write: a pooled connection of its own.
    Read(PoolConnection<Sqlite>),
    Write(&'t mut Transaction<'static, Sqlite>),
}

impl SqliteStatement<'_> {
    pub fn conn(&mut self) -> &mut SqliteConnection {
        match &mut self.conn {
            SqliteConn::Read(conn) => conn,
            SqliteConn::Write(tx) => tx,
        }
    }

    /// Lifts the table grant off the connection.
    pub async fn finish(mut self) -> Result<(), String> {
        unrestrict(self.conn()).await.map_err(|e| e.to_string())
    }
}

/// The PostgreSQL transaction, inside a fresh savepoint; hand the
/// statement's outcome to [`settle`](Self::settle).
pub struct PgStatement<'t> {
    tx: &'t mut Transaction<'static, Postgres>,
    savepoint_used: &'t mut bool,
}

impl PgStatement<'_> {
    pub fn conn(&mut self) -> &mut PgConnection {
        self.tx
    }

    /// Keeps a statement's effects, or rolls back to the savepoint made for
    /// it when it failed.
    pub async fn settle<T>(self, outcome: Result<T, String>) -> Result<T, String> {
        if outcome.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT plugin_statement")
                .execute(&mut **self.tx)
                .await
                .map_err(|e| e.to_string())?;
            *self.savepoint_used = false;
        }
        outcome
    }
}

/// Whether a statement only reads: it starts with `SELECT`. Anything else,
/// including a `WITH` that might write, counts as a write.
pub fn is_plain_select(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    first.eq_ignore_ascii_case("select")
}

/// Quotes a role name for `SET LOCAL ROLE` (manifests only allow
/// `[a-z0-9_]`, this is the second guard).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs `guard` in `tx`; commits when it touched one row, else rolls back
/// and answers `false`. (A macro: the two backends' transactions are
/// different types running the same code.)
macro_rules! guarded_commit {
    ($tx:expr, $guard:expr, $args:expr, $what:expr) => {{
        let mut tx = $tx;
        let touched = bind_args!(sqlx::query($guard), $args)
            .execute(&mut *tx)
            .await
            .with_context(|| $what.to_string())?;
        if touched.rows_affected() != 1 {
            tx.rollback().await.context("rolling back after a lost lease")?;
            return Ok(false);
        }
        tx.commit().await.context("committing")?;
        Ok(true)
    }};
}

impl EventTx {
    /// A transaction on `db` that begins at its first statement, as `role`
    /// (PostgreSQL) or within `tables` (SQLite's authorizer).
    pub fn new(db: &Db, role: Option<&str>, tables: &'static TableGrant) -> Self {
        let backend = match db {
            Db::Sqlite(pool) => Backend::Sqlite {
                pool: pool.clone(),
                tables,
                tx: None,
            },
            Db::Postgres(pool) => Backend::Postgres {
                pool: pool.clone(),
                role: role.map(str::to_owned),
                tx: None,
                savepoint_used: false,
            },
        };
        Self { backend }
    }

    /// Whether the plugin began the transaction (and so may have written).
    pub fn touched(&self) -> bool {
        match &self.backend {
            Backend::Sqlite { tx, .. } => tx.is_some(),
            Backend::Postgres { tx, .. } => tx.is_some(),
        }
    }

    /// Where the plugin statement `sql` runs: SQLite's read connection or
    /// its write transaction (begun now if needed), with the table grant
    /// applied; PostgreSQL's transaction (begun now if needed) in a fresh
    /// savepoint.
    pub async fn statement(&mut self, sql: &str) -> Result<Statement<'_>, String> {
        match &mut self.backend {
            Backend::Sqlite { pool, tables, tx } => {
                let conn = match tx {
                    None if is_plain_select(sql) => {
                        SqliteConn::Read(pool.acquire().await.map_err(|e| e.to_string())?)
                    }
                    _ => {
                        if tx.is_none() {
                            *tx = Some(
                                pool.begin_with("BEGIN IMMEDIATE")
                                    .await
                                    .map_err(|e| e.to_string())?,
                            );
                        }
                        SqliteConn::Write(tx.as_mut().expect("just opened"))
                    }
                };
                let mut statement = SqliteStatement { conn };
                restrict(statement.conn(), tables).await?;
                Ok(Statement::Sqlite(statement))
            }
            Backend::Postgres {
                pool,
                role,
                tx,
                savepoint_used,
            } => {
                match tx {
                    None => {
                        let begin = match role {
                            // One round trip: the role switch and the savepoint travel with the BEGIN.
                            Some(role) => format!("BEGIN; SET LOCAL ROLE {}; {SAVEPOINT}", quote_ident(role)),
                            None => format!("BEGIN; {SAVEPOINT}"),
                        };
                        let begun = pool.begin_with(begin).await.map_err(|e| match role {
                            Some(role) => {
                                format!("opening the event transaction as the database role {role:?}: {e}")
                            }
                            None => format!("opening the event transaction: {e}"),
                        })?;
                        *tx = Some(begun);
                    }
                    Some(open) if *savepoint_used => {
                        // A plain string goes as a simple query: both in one round trip.
                        let conn: &mut PgConnection = open;
                        sqlx::Executor::execute(
                            conn,
                            "RELEASE SAVEPOINT plugin_statement; SAVEPOINT plugin_statement",
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    }
                    Some(_) => {}
                }
                *savepoint_used = true;
                Ok(Statement::Postgres(PgStatement {
                    tx: tx.as_mut().expect("open"),
                    savepoint_used,
                }))
            }
        }
    }

    /// Ends the transaction: back to the host's own role, `guard` (an
    /// UPDATE of the host's row that proves this instance still owns the
    /// work: its lease) with `args`, and a commit only when the guard
    /// touched exactly one row; otherwise a rollback and `false`. What
    /// `guard` is for names it in errors.
    pub async fn commit_if(self, guard: &str, args: &[Arg<'_>], what: &str) -> Result<bool> {
        match self.backend {
            Backend::Sqlite { pool, tx, .. } => {
                let tx = match tx {
                    Some(tx) => tx,
                    None => pool
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .context("opening the transaction")?,
                };
                guarded_commit!(tx, guard, args, what)
            }
            Backend::Postgres { pool, role, tx, .. } => {
                let tx = match tx {
                    Some(mut tx) => {
                        if role.is_some() {
                            sqlx::query("RESET ROLE")
                                .execute(&mut *tx)
                                .await
                                .context("leaving the plugin's role")?;
                        }
                        tx
                    }
                    // The plugin never began it: the guard alone, under the host's role.
                    None => pool.begin().await.context("opening the transaction")?,
                };
                guarded_commit!(tx, guard, args, what)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_selects_count_as_reads() {
        assert!(is_plain_select("  select id FROM avatars"));
        assert!(is_plain_select("SELECT(1)"));
        assert!(!is_plain_select("UPDATE avatars SET status = 'x'"));
        assert!(!is_plain_select("WITH x AS (SELECT 1) UPDATE t SET a = 1"));
        assert!(!is_plain_select("-- comment\nSELECT 1"));
        assert!(!is_plain_select(""));
    }
}
