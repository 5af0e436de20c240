//! Integration tests: the real `webhook-host` binary on loopback, real SQLite,
//! real plugins built for wasm32-wasip2.

mod alarms;
mod browser;
mod capabilities;
mod completions;
mod console;
mod counts;
mod crash;
mod deployment;
mod edge;
mod effects;
mod gates;
mod handshakes;
mod harness;
mod intake;
mod isolation;
mod lifecycle;
mod observability;
mod operations;
mod ordering;
mod postgres;
mod processing;
mod providers;
mod remote;
mod schedules;
mod services;
mod soak;
mod sync;
mod verification;
mod workspace;
