//! # webhook-host
//!
//! Receives webhooks, proves each one authentic, stores it durably and hands it
//! to a sandboxed WebAssembly component (a *plugin*) that does the
//! provider-specific work through capabilities the host grants.
//!
//! ## Layout, from the ground up
//! - [`config`]: settings from defaults, the TOML file and the environment;
//!   the route schema; secrets.
//! - [`vital`]: the background tasks the host cannot serve without, watched:
//!   one that dies fails `/health` and stops the process.
//! - [`wit`], [`manifest`]: the plugin contract's bindings and plugin
//!   manifests: leaves every room above may read.
//! - [`db`]: the host's database (SQLite or PostgreSQL), migrations, and the
//!   event transaction.
//! - [`inbox`]: the durable event store on it: intake's group commit,
//!   batched completions, retention.
//! - [`caps`]: the capabilities plugins import (`db`, `blob`, `http`, `kv`,
//!   `config`, `log`), each with its grant, preparation and instance state.
//! - [`runtime`]: wasmtime: the engine, the compile cache, loading, instances
//!   and calls.
//! - [`plugins`]: the loaded set, the version store, hot swap, OCI.
//! - [`worker`]: claims due events and runs them: above the runtime and the
//!   inbox.
//! - [`verify`]: signature schemes, one file each, behind one trait.
//! - [`routes`]: the route table (plugin, verifier, body kind).
//! - [`schedule`]: scheduled plugin runs.
//! - [`alarms`]: operational webhooks (dead events, an old backlog), signed
//!   as Standard Webhooks, and the backlog monitor behind them.
//! - [`http`]: the axum edge: intake, health, metrics, admin API, console.
//! - [`app`]: builds the whole server from settings and runs it until shutdown.
//! - [`cli`]: the commands behind the `webhook-host` binary.
//!
//! ## Invariants
//! - The HTTP 200 for a webhook is sent only after its row is committed.
//! - A plugin's `db` statements and its event's move to `done` commit in one
//!   transaction; any failure rolls both back. Only `db/tx.rs` opens one.
//! - Only `runtime/` and `caps/` touch wasmtime types; the inbox knows no wasm.
//! - A plugin reaches nothing but the capabilities linked for it: WASI gets no
//!   filesystem, environment or sockets.
//! - No module imports one that imports it back (`ARCHITECTURE.md`).

pub mod alarms;
pub mod app;
pub mod caps;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod inbox;
pub mod manifest;
pub mod plugins;
pub mod routes;
pub mod runtime;
pub mod schedule;
pub mod telemetry;
pub mod verify;
pub mod vital;
pub mod wit;
pub mod worker;

/// The host's version, as reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC (console,
/// CLI listings).
pub fn format_time(ms: i64) -> String {
    rfc3339_ms(ms)[..19].replacen('T', " ", 1)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-12-02T17:30:00.123Z`; operational webhooks).
pub fn rfc3339_ms(ms: i64) -> String {
    let (date, rest) = civil_date(ms);
    let secs = rest / 1000;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        rest % 1000
    )
}

/// The UTC date (`YYYY-MM-DD`) of `ms` since the epoch, and the
/// milliseconds into that day.
fn civil_date(ms: i64) -> (String, i64) {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), rest)
}

#[cfg(test)]
mod tests {
    use super::{format_time, rfc3339_ms};

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_795_912_496_789), "2026-11-29 00:34:56");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_232_600_123), "2026-12-02T17:30:00.123Z");
    }
}
