-- The plugin store: immutable, content-addressed versions and the one active
-- version of each plugin. Component bytes live in object storage under
-- artifact_key. Times are milliseconds since the Unix epoch.
CREATE TABLE plugin_versions (
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,               -- sha256 of the component, hex
    manifest     TEXT NOT NULL,               -- the TOML manifest as deployed
    artifact_key TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE plugins (
    name           TEXT PRIMARY KEY,
    active_version TEXT NOT NULL,
    updated_at     BIGINT NOT NULL,
    updated_by     TEXT NOT NULL,
    FOREIGN KEY (name, active_version) REFERENCES plugin_versions (name, version)
);

REVOKE ALL ON plugin_versions, plugins FROM PUBLIC;
