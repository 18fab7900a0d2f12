-- A row's delivery state changes once or twice in its life, and an index on
-- it made each of those updates move the row in that index too: the
-- dispatcher's settles paid for it on every state. The listing pages by id
-- and never used it. redeliver looks for dead rows, and for the other rows of
-- their id_sms: pending ones through deliveries_pending, dead ones through
-- this index of dead rows only, which enqueues and settles do not touch.

DROP INDEX deliveries_listing;
CREATE INDEX deliveries_dead ON deliveries (endpoint_id, id_sms) WHERE state = 'dead';
