//! The WebAssembly runtime: one wasmtime engine per process, one
//! pre-linked [`LoadedPlugin`] per plugin version, and a fresh `Store` per
//! event attempt, so nothing leaks between events.
//!
//! - [`engine`]: the engine, the linker, the instance slots;
//! - [`cache`]: compiled components on disk;
//! - [`load`]: a plugin version compiled, checked against its grants,
//!   prepared and pre-linked;
//! - [`instance`]: what one `Store` holds;
//! - [`run`]: one attempt, its limits and its outcome;
//! - [`output`]: the guest's stdout and stderr into the log.
//!
//! Isolation, in the order a misbehaving plugin meets it:
//! - memory: a [`instance::MemoryLimiter`] per store; growth past the plugin's limit traps;
//! - time: epoch interruption (a ticker thread bumps the epoch every
//!   `epoch_tick_ms`); at each tick a running guest yields to tokio, and past
//!   its deadline it is interrupted. A wall-clock timeout around the whole
//!   call also covers time spent waiting inside host calls;
//! - instances: a semaphore keeps live instances below the pooling
//!   allocator's slots;
//! - WASI: stdio only (into the log); no files, environment, sockets or args.
//!
//! A trap, timeout or limit hit fails that one event; the host goes on.
//! Only this module and `caps/` touch wasmtime types.

pub mod cache;
pub mod engine;
pub mod gate;
pub mod instance;
pub mod load;
mod output;
pub mod run;

pub use engine::{InstanceSlot, Runtime};
pub use instance::{MemoryLimiter, State};
pub use load::LoadedPlugin;
pub use run::{DispatchError, Dispatched, to_wit};
