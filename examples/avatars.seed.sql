-- One user and one avatar in training, waiting for FAL request `demo-request-1`
-- (the id `webhook-host send` uses by default).
INSERT OR IGNORE INTO users (id, telegram_id) VALUES ('00000000-0000-4000-8000-000000000001', '100200300');
INSERT OR REPLACE INTO avatars (id, user_id, name, training_type, status, fal_request_id, training_progress, training_started_at)
VALUES ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-000000000001', 'Demo',
        'portrait', 'training', 'demo-request-1', 10, CURRENT_TIMESTAMP);
