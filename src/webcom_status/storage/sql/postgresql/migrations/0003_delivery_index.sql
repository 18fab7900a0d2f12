-- A row's delivery state changes once or twice in its life, and an index on
-- it made each of those updates move the row in that index too: the
-- dispatcher's settles paid for it on every state. The listing pages by id
-- and never used it; redeliver looks rows up by (endpoint, id_sms), which
-- never change, so the index that serves it costs nothing after the insert.

DROP INDEX deliveries_listing;
CREATE INDEX deliveries_id_sms ON deliveries (endpoint_id, id_sms);
