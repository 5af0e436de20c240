-- The bot's tables that fal-avatar-status updates, in SQLite form, for
-- embedded mode and tests. They belong to the bot, not to the host: apply
-- this file yourself (`webhook-host db exec --file examples/avatars.sqlite.sql`).
-- Enums are lowercase text; uuids and timestamps are text; JSON is text.
CREATE TABLE IF NOT EXISTS users (
    id          TEXT PRIMARY KEY,
    telegram_id TEXT UNIQUE
);

CREATE TABLE IF NOT EXISTS avatars (
    id                      TEXT PRIMARY KEY,
    user_id                 TEXT NOT NULL REFERENCES users (id),
    name                    TEXT NOT NULL,
    training_type           TEXT NOT NULL DEFAULT 'portrait'
                            CHECK (training_type IN ('portrait', 'style')),
    status                  TEXT NOT NULL DEFAULT 'draft'
                            CHECK (status IN ('draft', 'photos_uploading', 'ready_for_training',
                                              'training', 'completed', 'error', 'cancelled')),
    fal_request_id          TEXT,
    finetune_id             TEXT,
    training_progress       INTEGER NOT NULL DEFAULT 0
                            CHECK (training_progress BETWEEN 0 AND 100),
    training_started_at     TEXT,
    training_completed_at   TEXT,
    last_status_check       TEXT,
    trigger_word            TEXT,
    trigger_phrase          TEXT,
    diffusers_lora_file_url TEXT,
    config_file_url         TEXT,
    training_error          TEXT,
    fal_response_data       TEXT,
    avatar_data             TEXT,
    updated_at              TEXT
);

CREATE INDEX IF NOT EXISTS avatars_fal_request_id ON avatars (fal_request_id);

CREATE TABLE IF NOT EXISTS avatar_photos (
    id           TEXT PRIMARY KEY,
    avatar_id    TEXT NOT NULL REFERENCES avatars (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    minio_key    TEXT NOT NULL,
    upload_order INTEGER NOT NULL
);
