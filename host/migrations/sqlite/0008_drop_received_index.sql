-- An event's id (evt_ and a UUIDv7 in hex) begins with the millisecond it
-- was stored, a moment after it was received, and the ids of one batch are
-- made in arrival order: the primary key already orders events by arrival,
-- and the newest-first listing reads it backwards. An index on received_at
-- only cost every insert one more B-tree.
DROP INDEX IF EXISTS webhook_events_received;
