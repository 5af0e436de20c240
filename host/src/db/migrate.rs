//! The host's schema, one migration list for both dialects: the same
//! versions and names, each dialect's SQL from `host/migrations/<dialect>/`.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Which folder of `host/migrations/` to apply.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// `(version, description, SQL)` of every migration, in order, for one
/// dialect's folder.
macro_rules! migrations {
    ($dialect:literal) => {
        [
            (
                1,
                "webhook events",
                include_str!(concat!("../../migrations/", $dialect, "/0001_webhook_events.sql")),
            ),
            (
                2,
                "plugin store",
                include_str!(concat!("../../migrations/", $dialect, "/0002_plugin_store.sql")),
            ),
            (
                3,
                "plugin activations",
                include_str!(concat!(
                    "../../migrations/",
                    $dialect,
                    "/0003_plugin_activations.sql"
                )),
            ),
            (
                4,
                "schedules",
                include_str!(concat!("../../migrations/", $dialect, "/0004_schedules.sql")),
            ),
            (
                5,
                "request ids",
                include_str!(concat!("../../migrations/", $dialect, "/0005_request_id.sql")),
            ),
            (
                6,
                "follow-ups",
                include_str!(concat!("../../migrations/", $dialect, "/0006_followups.sql")),
            ),
            (
                7,
                "ordering keys",
                include_str!(concat!("../../migrations/", $dialect, "/0007_order_key.sql")),
            ),
            (
                8,
                "no received_at index",
                include_str!(concat!(
                    "../../migrations/",
                    $dialect,
                    "/0008_drop_received_index.sql"
                )),
            ),
            (
                9,
                "dead events index",
                include_str!(concat!("../../migrations/", $dialect, "/0009_dead_index.sql")),
            ),
        ]
    };
}

/// The migrator for `dialect`. It locks while it runs (PostgreSQL: an
/// advisory lock), and ignores versions it does not know (a newer host's).
pub fn migrator(dialect: Dialect) -> Migrator {
    let list = match dialect {
        Dialect::Sqlite => migrations!("sqlite"),
        Dialect::Postgres => migrations!("postgres"),
    };
    let migrations = list
        .into_iter()
        .map(|(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: true,
        locking: true,
        no_tx: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of each dialect's folder is in the list, under its own
    /// number, and the dialects list the same migrations.
    #[test]
    fn every_migration_file_is_applied() {
        for (dialect, folder) in [(Dialect::Sqlite, "sqlite"), (Dialect::Postgres, "postgres")] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(folder);
            let mut files: Vec<i64> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| {
                    let name = entry.unwrap().file_name().into_string().unwrap();
                    name.split('_').next().unwrap().parse().unwrap()
                })
                .collect();
            files.sort();
            let listed: Vec<i64> = migrator(dialect).iter().map(|m| m.version).collect();
            assert_eq!(
                listed, files,
                "{folder}: the migrations listed are the folder's files"
            );
        }
    }
}
