-- The request id the HTTP edge decided for each delivery (the one nginx
-- passed in X-Request-ID when acceptable, else one the host made), so the
-- event's log lines carry the id of the request that brought it.
ALTER TABLE webhook_events ADD COLUMN request_id TEXT;
