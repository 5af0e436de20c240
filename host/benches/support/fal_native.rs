//! The imports of fal-avatar-status for its native build in the dispatch
//! benchmark: each call goes to the host's own capability implementation
//! (the code a Wasm call reaches through the component linker), on the
//! [`State`] of the call in progress, so native and Wasm differ only in how
//! the logic runs, not in what it calls.
//!
//! The plugin's logic (`avatar.rs`, `body.rs`, `notice.rs`) is included by
//! path next to this module; it finds these functions at
//! `crate::webhook::plugin::*` just as in the component.

use std::cell::RefCell;

use tokio::runtime::Handle;
use webhook_host::runtime::State;

thread_local! {
    static CURRENT: RefCell<Option<(State, Handle)>> = const { RefCell::new(None) };
}

/// Runs `handle` with `state` as the capabilities of the calling thread
/// (not a tokio worker: each import blocks on `runtime`); gives the state
/// back so its transaction can be rolled back.
pub fn run<T>(state: State, runtime: Handle, handle: impl FnOnce() -> T) -> (T, State) {
    CURRENT.with(|current| *current.borrow_mut() = Some((state, runtime)));
    let out = handle();
    let (state, _) = CURRENT
        .with(|current| current.borrow_mut().take())
        .expect("the state is set for the call");
    (out, state)
}

fn call<T>(f: impl AsyncFnOnce(&mut State) -> T) -> T {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let (state, runtime) = current.as_mut().expect("called inside `run`");
        runtime.clone().block_on(f(state))
    })
}

pub mod plugin {
    pub mod db {
        use webhook_host::wit::db::Host;
        pub use webhook_host::wit::db::{Rows, Value};

        pub fn query(sql: &str, params: &[Value]) -> Result<Rows, String> {
            super::super::call(async |s| Host::query(&mut s.caps.db, sql.into(), params.to_vec()).await)
        }

        pub fn execute(sql: &str, params: &[Value]) -> Result<u64, String> {
            super::super::call(async |s| Host::execute(&mut s.caps.db, sql.into(), params.to_vec()).await)
        }
    }

    pub mod config {
        use webhook_host::wit::config::Host;

        pub fn get(key: &str) -> Option<String> {
            super::super::call(async |s| Host::get(&mut s.caps.config, key.into()).await)
        }

        pub fn secret(name: &str) -> Option<String> {
            super::super::call(async |s| Host::secret(&mut s.caps.config, name.into()).await)
        }
    }

    pub mod log {
        use webhook_host::wit::log::Host;
        pub use webhook_host::wit::log::Level;

        pub fn log(level: Level, message: &str) {
            super::super::call(async |s| Host::log(&mut s.caps.log, level, message.into()).await)
        }
    }

    pub mod blob {
        use webhook_host::wit::blob::Host;

        pub fn list_keys(prefix: &str) -> Result<Vec<String>, String> {
            super::super::call(async |s| Host::list_keys(&mut s.caps.blob, prefix.into()).await)
        }

        pub fn copy_from_url(key: &str, url: &str) -> Result<u64, String> {
            super::super::call(async |s| Host::copy_from_url(&mut s.caps.blob, key.into(), url.into()).await)
        }

        pub fn object_url(key: &str) -> Result<String, String> {
            super::super::call(async |s| Host::object_url(&mut s.caps.blob, key.into()).await)
        }

        pub fn delete(key: &str) -> Result<(), String> {
            super::super::call(async |s| Host::delete(&mut s.caps.blob, key.into()).await)
        }
    }

    pub mod followups {
        use webhook_host::wit::followups::Host;

        pub fn enqueue(name: &str, payload: &[u8], delay_ms: u64) -> Result<(), String> {
            super::super::call(async |s| {
                Host::enqueue(&mut s.caps.followups, name.into(), payload.to_vec(), delay_ms).await
            })
        }
    }

    pub mod attempt {
        use webhook_host::wit::attempt::Host;

        pub fn retry_after(delay_ms: u64) {
            super::super::call(async |s| Host::retry_after(&mut s.caps.attempt, delay_ms).await)
        }
    }
}
