//! A PostgreSQL connection of one task's own, outside the pool.
//!
//! sqlx's pool tests a connection with a round trip when it hands it out
//! and again when it takes it back (a `Sync` and its `ReadyForQuery`). For
//! a task that runs one statement after another all day — intake's batch
//! writer, the inbox notifier — that made three round trips of every one,
//! and the pings alone were an eighth of the host's CPU under load. Such a
//! task keeps a connection of its own: opened on first use with the pool's
//! options, dropped after any error so that the next use opens a new one.

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// How long opening the connection may take (the pool's acquire timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One task's connection.
pub struct Dedicated {
    options: PgConnectOptions,
    /// Run once on every new connection (session settings), if not empty.
    setup: &'static str,
    conn: Option<PgConnection>,
}

impl Dedicated {
    /// A connection to `pool`'s database, opened when first used.
    pub fn new(pool: &PgPool, setup: &'static str) -> Self {
        Self {
            options: (*pool.connect_options()).clone(),
            setup,
            conn: None,
        }
    }

    /// The connection, opened (and set up) if there is none.
    pub async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options))
                .await
                .context("connecting to PostgreSQL timed out")?
                .context("connecting to PostgreSQL")?;
            if !self.setup.is_empty() {
                conn.execute(self.setup)
                    .await
                    .context("setting up the connection")?;
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// Forgets the connection after an error: the next use opens another.
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// Whether `error` says the connection was lost (rather than that the
/// statement failed): worth one more try on a new connection.
pub fn connection_lost(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))
        )
    })
}
