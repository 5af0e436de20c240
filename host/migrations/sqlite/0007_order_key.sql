-- Per-key ordering: a route may name an ordering key (a JSON field or a
-- header); each delivery stores its value here (NULL: unordered). A claim
-- skips an event while another of its route and key is running, or one
-- stored before it is still waiting. The index finds those in line.
ALTER TABLE webhook_events ADD COLUMN order_key TEXT;
CREATE INDEX webhook_events_in_line ON webhook_events (route, order_key, received_at)
    WHERE order_key IS NOT NULL AND status IN ('pending', 'processing');
