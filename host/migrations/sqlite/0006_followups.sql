-- Follow-ups: events a plugin queued while handling another (its parent),
-- stored in the parent's transaction and run after its commit on the same
-- route. `task` is the name the plugin queued it under; both are NULL for
-- deliveries.
ALTER TABLE webhook_events ADD COLUMN parent_id TEXT;
ALTER TABLE webhook_events ADD COLUMN task TEXT;
