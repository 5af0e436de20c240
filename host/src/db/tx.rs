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
//! - **PostgreSQL.** Reads before the first write run as SQLite's do, each
//!   in a read-only transaction of its own that ends with it (as the
//!   plugin's database role when it has one; rolled back, as nothing of it
//!   needs keeping, in the round trip that returns the connection), so a plugin that reads, then
//!   copies a large file for minutes, then writes is never idle in a
//!   transaction and pins no vacuum horizon. The first statement that is
//!   not a plain `SELECT` begins the event's transaction, as that role, in
//!   the same round trip. Each
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

/// Where a PostgreSQL statement runs; hand its outcome to
/// [`settle`](Self::settle).
pub struct PgStatement<'t> {
    conn: PgConn<'t>,
}

enum PgConn<'t> {
    /// A read before any write: a short read-only transaction of its own
    /// (as the plugin's role), ended by `settle`.
    Read(Transaction<'static, Postgres>),
    /// The event's transaction, inside a fresh savepoint.
    Write {
        tx: &'t mut Transaction<'static, Postgres>,
        savepoint_used: &'t mut bool,
    },
}

impl PgStatement<'_> {
    pub fn conn(&mut self) -> &mut PgConnection {
        match &mut self.conn {
            PgConn::Read(tx) => tx,
            PgConn::Write { tx, .. } => tx,
        }
    }

    /// Ends a read's own transaction; in the event's, keeps a statement's
    /// effects, or rolls back to the savepoint made for it when it failed.
    pub async fn settle<T>(self, outcome: Result<T, String>) -> Result<T, String> {
        match self.conn {
            // Nothing of a read-only transaction needs keeping: dropped, it
            // queues a ROLLBACK that travels with the pool's test of the
            // returned connection, one round trip instead of a COMMIT's and
            // the test's two.
            PgConn::Read(tx) => drop(tx),
            PgConn::Write { tx, savepoint_used } => {
                if outcome.is_err() {
                    sqlx::query("ROLLBACK TO SAVEPOINT plugin_statement")
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    *savepoint_used = false;
                }
            }
        }
        outcome
    }
}

/// Whether a statement only reads: it starts with `SELECT` and takes no
/// row locks (`FOR UPDATE`, `FOR SHARE`, …: those belong to the event's
/// transaction). Anything else, including a `WITH` that might write, counts
/// as a write.
pub fn is_plain_select(sql: &str) -> bool {
    if !sql.starts_with(|c: char| c.is_whitespace() || c.is_ascii_alphabetic()) {
        return false; // a comment or anything else first
    }
    // Runs for every plugin statement: words are compared in place.
    let mut words = sql
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("select")) {
        return false;
    }
    let mut after_for = false;
    for word in words {
        let locking = ["update", "share", "no", "key"]
            .iter()
            .any(|lock| word.eq_ignore_ascii_case(lock));
        if after_for && locking {
            return false;
        }
        after_for = word.eq_ignore_ascii_case("for");
    }
    true
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
    ($tx:expr, $guard:expr, $args:expr, $what:expr, $also:expr) => {{
        let mut tx = $tx;
        let touched = bind_args!(sqlx::query($guard), $args)
            .execute(&mut *tx)
            .await
            .with_context(|| $what.to_string())?;
        if touched.rows_affected() != 1 {
            tx.rollback().await.context("rolling back after a lost lease")?;
            return Ok(false);
        }
        for (sql, args) in $also {
            bind_args!(sqlx::query(sql), args)
                .execute(&mut *tx)
                .await
                .context("storing the attempt's follow-ups")?;
        }
        tx.commit().await.context("committing")?;
        Ok(true)
    }};
}

/// Statements an attempt's commit also runs, after its guard, each with
/// its arguments (its follow-ups' inserts).
pub type Also<'a> = [(&'a str, Vec<Arg<'a>>)];

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
                    None if is_plain_select(sql) => {
                        // Not the event's transaction: one that ends with the read,
                        // so nothing stays open while the plugin calls out.
                        let begin = match role {
                            Some(role) => format!("BEGIN READ ONLY; SET LOCAL ROLE {}", quote_ident(role)),
                            None => "BEGIN READ ONLY".to_string(),
                        };
                        let read = pool.begin_with(begin).await.map_err(|e| match role {
                            Some(role) => format!("reading as the database role {role:?}: {e}"),
                            None => format!("reading: {e}"),
                        })?;
                        return Ok(Statement::Postgres(PgStatement {
                            conn: PgConn::Read(read),
                        }));
                    }
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
                    conn: PgConn::Write {
                        tx: tx.as_mut().expect("open"),
                        savepoint_used,
                    },
                }))
            }
        }
    }

    /// Ends the transaction: back to the host's own role, `guard` (an
    /// UPDATE of the host's row that proves this instance still owns the
    /// work: its lease) with `args`, and a commit only when the guard
    /// touched exactly one row (then `also` runs too, in the same
    /// transaction); otherwise a rollback and `false`. What `guard` is for
    /// names it in errors.
    pub async fn commit_if(self, guard: &str, args: &[Arg<'_>], what: &str, also: &Also<'_>) -> Result<bool> {
        match self.backend {
            Backend::Sqlite { pool, tx, .. } => {
                let tx = match tx {
                    Some(tx) => tx,
                    None => pool
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .context("opening the transaction")?,
                };
                guarded_commit!(tx, guard, args, what, also)
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
                guarded_commit!(tx, guard, args, what, also)
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
        assert!(!is_plain_select(
            "SELECT id FROM avatars WHERE id = $1 FOR UPDATE"
        ));
        assert!(!is_plain_select("select * from t for no key update skip locked"));
        assert!(!is_plain_select("SELECT 1 FOR SHARE"));
        assert!(is_plain_select("SELECT info FROM t WHERE kind = 'for'"));
        assert!(!is_plain_select(""));
    }
}
