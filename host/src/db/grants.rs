//! Table grants on SQLite, enforced by SQLite's authorizer: while a plugin
//! statement is prepared, SQLite asks, for every table it would read or
//! write, whether that is allowed; anything not granted fails with "not
//! authorized". Schema changes, PRAGMA, ATTACH and `load_extension` are never
//! allowed; the host's own tables are never grantable.
//!
//! Plugin statements are prepared fresh (not from the statement cache) so
//! that every one of them meets the authorizer, and the authorizer is
//! removed from a connection before it goes back to the pool.

use std::collections::HashSet;
use std::ffi::{CStr, c_char, c_int, c_void};

use libsqlite3_sys as ffi;
use sqlx::sqlite::SqliteConnection;

/// Tables the host owns; no grant reaches them.
const HOST_TABLES: [&str; 5] = [
    "webhook_events",
    "plugins",
    "plugin_versions",
    "plugin_activations",
    "_sqlx_migrations",
];

/// What one plugin may touch on SQLite.
#[derive(Debug, Default)]
pub struct TableGrant {
    read: HashSet<String>,
    write: HashSet<String>,
}

impl TableGrant {
    pub fn new(read: &[String], write: &[String]) -> Self {
        let set = |names: &[String]| {
            names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .filter(|n| !HOST_TABLES.contains(&n.as_str()))
                .collect::<HashSet<_>>()
        };
        Self {
            read: set(read),
            write: set(write),
        }
    }

    fn can_read(&self, table: &str) -> bool {
        let table = table.to_ascii_lowercase();
        self.read.contains(&table) || self.write.contains(&table)
    }

    fn can_write(&self, table: &str) -> bool {
        self.write.contains(&table.to_ascii_lowercase())
    }
}

/// SQLite's authorizer callback; `user` is a `&'static TableGrant`.
unsafe extern "C" fn authorize(
    user: *mut c_void,
    action: c_int,
    first: *const c_char,
    second: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: `user` is the `&'static TableGrant` passed to
    // `sqlite3_set_authorizer` in `restrict`; it is never freed.
    let grant = unsafe { &*(user as *const TableGrant) };
    let name = |text: *const c_char| {
        // SAFETY: SQLite passes NUL-terminated strings or null.
        (!text.is_null()).then(|| unsafe { CStr::from_ptr(text) }.to_str().unwrap_or(""))
    };
    let allowed = match action {
        // The host's own transaction control, and plain query structure.
        ffi::SQLITE_SELECT | ffi::SQLITE_RECURSIVE | ffi::SQLITE_TRANSACTION | ffi::SQLITE_SAVEPOINT => true,
        ffi::SQLITE_FUNCTION => !name(second).is_some_and(|f| f.eq_ignore_ascii_case("load_extension")),
        ffi::SQLITE_READ => name(first).is_some_and(|t| grant.can_read(t)),
        ffi::SQLITE_INSERT | ffi::SQLITE_UPDATE | ffi::SQLITE_DELETE => {
            name(first).is_some_and(|t| grant.can_write(t))
        }
        _ => false,
    };
    if allowed { ffi::SQLITE_OK } else { ffi::SQLITE_DENY }
}

/// Makes `conn` check every statement prepared from now on against `grant`.
pub async fn restrict(conn: &mut SqliteConnection, grant: &'static TableGrant) -> Result<(), String> {
    let mut handle = conn.lock_handle().await.map_err(|e| e.to_string())?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, locked for us; the
    // callback and its 'static user data stay valid for as long as they are set.
    unsafe {
        ffi::sqlite3_set_authorizer(db, Some(authorize), grant as *const TableGrant as *mut c_void);
    }
    Ok(())
}

/// Removes the authorizer from `conn`.
pub async fn unrestrict(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: as in `restrict`; a null callback removes the authorizer.
    unsafe {
        ffi::sqlite3_set_authorizer(handle.as_raw_handle().as_ptr(), None, std::ptr::null_mut());
    }
    Ok(())
}
