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
FROM events WHERE id_sms = ? ORDER BY received_at, time_utc, status;

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
SELECT count(*) FROM _yoyo_migration;
