//! The `db` grant in a plugin's manifest: `db = true`, or
//! `db = { role = "…", read = […], write = […] }`.

use serde::Deserialize;

/// The `db` grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbGrant {
    /// The PostgreSQL role statements run as (`SET LOCAL ROLE`).
    #[serde(default)]
    pub role: Option<String>,
    /// SQLite (embedded mode): tables the plugin may read.
    #[serde(default)]
    pub read: Vec<String>,
    /// SQLite (embedded mode): tables the plugin may read and write.
    #[serde(default)]
    pub write: Vec<String>,
}

/// Reads `db = true | false | { … }`, checking the role's spelling (it is
/// quoted into `SET LOCAL ROLE`, so only `[a-z0-9_]` passes).
pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<DbGrant>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Flag(bool),
        Detailed(DbGrant),
    }
    let grant = match Form::deserialize(deserializer)? {
        Form::Flag(granted) => granted.then(DbGrant::default),
        Form::Detailed(grant) => Some(grant),
    };
    if let Some(role) = grant.as_ref().and_then(|g| g.role.as_deref()) {
        let valid = role
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "db role {role:?} must be lowercase letters, digits and '_'"
            )));
        }
    }
    Ok(grant)
}
