-- Scheduled plugin runs: one lease row per (plugin, schedule), claimed by
-- one instance at a time, and a record of every run.
CREATE TABLE schedule_leases (
    plugin      TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    owner       TEXT,
    lease_until BIGINT,
    next_run_at BIGINT NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (plugin, schedule)
);

CREATE TABLE schedule_runs (
    id          TEXT PRIMARY KEY,
    plugin      TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    version     TEXT NOT NULL,
    instance    TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT NOT NULL,
    error       TEXT
);

CREATE INDEX schedule_runs_by_start ON schedule_runs (started_at);
