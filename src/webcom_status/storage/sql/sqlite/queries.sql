-- insert_events --
-- ?1: a JSON array of [id_sms, status, sms, viber, time_raw, time_utc] rows;
-- ?2: received_at. One statement for a whole group of pushes, so that SQLite
-- works through all of it without taking the GIL back row by row. Each new
-- event is merged into messages by the trigger events_merge.
INSERT INTO events (id_sms, status, sms, viber, time_raw, time_utc, received_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       json_extract(value, '$[2]'), json_extract(value, '$[3]'),
       json_extract(value, '$[4]'), json_extract(value, '$[5]'), ?2
FROM json_each(?1)
WHERE true
ON CONFLICT DO NOTHING;

-- insert_reject --
INSERT INTO rejects (received_at, scope, reason, id_sms_raw, http_status, remote, raw)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- get_message --
SELECT id_sms, status, nullif(sms, ''), nullif(viber, ''), time_raw, time_utc,
       first_seen, updated_at
FROM messages WHERE id_sms = ?;

-- get_history --
SELECT status, nullif(sms, ''), nullif(viber, ''), time_raw, time_utc, received_at
FROM events WHERE id_sms = ?
ORDER BY received_at, time_utc, status, time_raw, sms, viber;

-- list_rejects --
SELECT id, received_at, scope, reason, raw, id_sms_raw, http_status, remote
FROM rejects WHERE id > ? ORDER BY id LIMIT ?;

-- stats --
SELECT
    (SELECT count(*) FROM messages),
    (SELECT count(*) FROM events),
    (SELECT count(*) FROM events WHERE status NOT IN (SELECT value FROM status_ranks)),
    (SELECT count(*) FROM rejects);

-- ping --
INSERT INTO heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at;

-- events_boundary --
-- Keyset pagination for pruning: the id_sms that closes the next batch of
-- events after ?1 (no row: the batch runs to the end).
SELECT id_sms FROM events WHERE id_sms > ?1 ORDER BY id_sms LIMIT 1 OFFSET ?2;

-- prune_events --
DELETE FROM events WHERE id_sms > ?1 AND id_sms <= ?2 AND received_at < ?3;

-- messages_boundary --
SELECT id_sms FROM messages WHERE id_sms > ?1 ORDER BY id_sms LIMIT 1 OFFSET ?2;

-- prune_messages --
-- Only messages that got no new event since the cut-off and none of whose
-- events remain (events are pruned first).
DELETE FROM messages WHERE id_sms > ?1 AND id_sms <= ?2 AND last_event_at < ?3
  AND NOT EXISTS (SELECT 1 FROM events WHERE events.id_sms = messages.id_sms);

-- prune_rejects --
DELETE FROM rejects
WHERE id IN (SELECT id FROM rejects WHERE received_at < ?1 ORDER BY id LIMIT ?2);
