-- The durable inbox: one row per accepted webhook delivery.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,             -- evt_<uuid v7>
    route           TEXT NOT NULL,
    delivery_id     TEXT NOT NULL,                -- sender's id, or sha256 of the body
    received_at     INTEGER NOT NULL,
    headers         TEXT NOT NULL,                -- JSON [[name, value], ...]
    query           TEXT NOT NULL,                -- JSON [[key, value], ...]
    body            BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    plugin          TEXT,
    plugin_version  TEXT,
    last_error      TEXT,
    finished_at     INTEGER,
    UNIQUE (route, delivery_id)
);

CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);
CREATE INDEX webhook_events_received ON webhook_events (received_at);
