-- Dead events stay until an operator replays them, among the many done
-- ones retention keeps: without an index of their own, listing the newest
-- dead, counting them and replaying a route's would each read the whole
-- table. Both indexes are partial: an event gets an entry only when it
-- dies, and loses it when replayed, so intake, claims and completions
-- never write them. Building them reads the table once.
CREATE INDEX webhook_events_dead ON webhook_events (id) WHERE status = 'dead';
CREATE INDEX webhook_events_dead_route ON webhook_events (route, id) WHERE status = 'dead';
