-- The bot's tables that fal-avatar-status updates, in PostgreSQL form (the
-- bot's real schema), and the role the plugin runs as. They belong to the
-- bot, not to the host: its migrations own them; this file is for tests and
-- trying things out. Enums are lowercase varchar.
CREATE TABLE IF NOT EXISTS users (
    id          UUID PRIMARY KEY,
    telegram_id VARCHAR(50) UNIQUE
);

CREATE TABLE IF NOT EXISTS avatars (
    id                      UUID PRIMARY KEY,
    user_id                 UUID NOT NULL REFERENCES users (id),
    name                    VARCHAR(100) NOT NULL,
    training_type           VARCHAR(20) NOT NULL DEFAULT 'portrait'
                            CHECK (training_type IN ('portrait', 'style')),
    status                  VARCHAR(30) NOT NULL DEFAULT 'draft'
                            CHECK (status IN ('draft', 'photos_uploading', 'ready_for_training',
                                              'training', 'completed', 'error', 'cancelled')),
    fal_request_id          VARCHAR(255),
    finetune_id             VARCHAR(255),
    training_progress       INTEGER NOT NULL DEFAULT 0 CHECK (training_progress BETWEEN 0 AND 100),
    training_started_at     TIMESTAMPTZ,
    training_completed_at   TIMESTAMPTZ,
    last_status_check       TIMESTAMPTZ,
    trigger_word            VARCHAR(50),
    trigger_phrase          VARCHAR(100),
    diffusers_lora_file_url VARCHAR(500),
    config_file_url         VARCHAR(500),
    training_error          TEXT,
    fal_response_data       JSON,
    avatar_data             JSON,
    updated_at              TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS avatars_fal_request_id ON avatars (fal_request_id);

CREATE TABLE IF NOT EXISTS avatar_photos (
    id           UUID PRIMARY KEY,
    avatar_id    UUID NOT NULL REFERENCES avatars (id),
    user_id      UUID NOT NULL REFERENCES users (id),
    minio_key    VARCHAR(500) NOT NULL,
    upload_order INTEGER NOT NULL
);

-- What fal-avatar-status may touch: its manifest says db = { role = "fal_avatar_status" }.
-- The host's login role must be a member of it (GRANT fal_avatar_status TO <host user>)
-- unless it is a superuser.
DO $$ BEGIN
  CREATE ROLE fal_avatar_status NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT, UPDATE ON avatars TO fal_avatar_status;
GRANT SELECT ON users TO fal_avatar_status;
GRANT SELECT, DELETE ON avatar_photos TO fal_avatar_status;
