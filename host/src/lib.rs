//! # webhook-host
//!
//! Receives webhooks, proves each one authentic, stores it durably and hands it
//! to a sandboxed WebAssembly component (a *plugin*) that does the
//! provider-specific work through capabilities the host grants.
//!
//! ## Layout
//! - [`config`]: settings from defaults, the TOML file and the environment.
//! - [`app`]: builds the whole server from settings and runs it until shutdown.
//! - [`http`]: the axum router: webhook intake, health.
//! - [`verify`]: signature schemes, one file each, behind one trait.
//! - [`inbox`]: the durable event store (SQLite now) and the worker loop that
//!   claims due events and dispatches them.
//! - [`runtime`]: wasmtime: the engine, limits, instantiation and calls.
//! - [`caps`]: capabilities plugins import (`db`, `config`, `log`).
//! - [`plugins`]: plugin manifests and the loaded plugin set.
//! - [`cli`]: the commands behind the `webhook-host` binary.
//!
//! ## Invariants
//! - The HTTP 200 for a webhook is sent only after its row is committed.
//! - A plugin's `db` statements and its event's move to `done` commit in one
//!   transaction; any failure rolls both back.
//! - Only `runtime/` and `caps/` touch wasmtime types.
//! - A plugin reaches nothing but the capabilities linked for it: WASI gets no
//!   filesystem, environment or sockets.

pub mod app;
pub mod caps;
pub mod cli;
pub mod config;
pub mod http;
pub mod inbox;
pub mod plugins;
pub mod routes;
pub mod runtime;
pub mod schedule;
pub mod telemetry;
pub mod verify;

/// The host's version, as reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
