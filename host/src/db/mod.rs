//! The ground floor: the host's database and everything that touches it
//! below the inbox.
//!
//! - [`pool`]: [`Db`], SQLite or PostgreSQL, opened and migrated, with
//!   `on_pool!` to write a statement once for both;
//! - [`dedicated`]: a PostgreSQL connection of one busy task's own, outside
//!   the pool (no test round trips around every statement);
//! - [`migrate`]: one migration list over both dialects' SQL;
//! - [`tx`]: the event transaction (lazy begin, role, savepoints, SQLite
//!   grants, guarded commit), the only place one is opened;
//! - [`grants`]: SQLite's authorizer enforcing a plugin's table grant.
//!
//! Nothing here knows of events, plugins or wasm.

pub mod dedicated;
pub mod grants;
pub mod migrate;
pub mod pool;
pub mod tx;

pub use pool::{Arg, Db};
pub use tx::EventTx;
