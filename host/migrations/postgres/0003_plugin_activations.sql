-- Every activation of a plugin version, in order: the history rollback walks.
CREATE TABLE plugin_activations (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    activated_at BIGINT NOT NULL,
    activated_by TEXT NOT NULL,
    FOREIGN KEY (name, version) REFERENCES plugin_versions (name, version)
);
CREATE INDEX plugin_activations_by_name ON plugin_activations (name, id);

REVOKE ALL ON plugin_activations FROM PUBLIC;
