-- The durable inbox: one row per accepted webhook delivery.
-- Times are milliseconds since the Unix epoch (the same on every backend).
CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,             -- evt_<uuid v7>
    route           TEXT NOT NULL,
    delivery_id     TEXT NOT NULL,                -- sender's id, or sha256 of the body
    received_at     BIGINT NOT NULL,
    headers         TEXT NOT NULL,                -- JSON [[name, value], ...]
    query           TEXT NOT NULL,                -- JSON [[key, value], ...]
    body            BYTEA NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    plugin          TEXT,
    plugin_version  TEXT,
    last_error      TEXT,
    finished_at     BIGINT,
    UNIQUE (route, delivery_id)
);

-- Claiming looks only at live rows.
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status IN ('pending', 'processing');
CREATE INDEX webhook_events_received ON webhook_events (received_at);
CREATE INDEX webhook_events_finished ON webhook_events (finished_at) WHERE status = 'done';

-- Plugin roles get nothing on the host's tables.
REVOKE ALL ON webhook_events FROM PUBLIC;
