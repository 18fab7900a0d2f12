-- store --
-- One round trip for a whole group of documents: insert the new events, merge
-- them into messages (per id: the greatest key overall and per channel), and
-- keep the rejects. Rows are taken in key order so that concurrent groups
-- lock the same rows in the same order.
WITH input AS (
    -- events_records rows: {i: id_sms, s: status, m: sms, v: viber, r: time_raw,
    -- t: UTC time or null}; json_to_recordset reads each object in one pass.
    SELECT i AS id_sms, s AS status, m AS sms, v AS viber, r AS time_raw,
           t::timestamp AT TIME ZONE 'UTC' AS time_utc
    FROM json_to_recordset(%(events)s::json)
        AS e (i bigint, s text, m text, v text, r text, t text)
),
inserted AS (
    INSERT INTO events (id_sms, status, sms, viber, time_raw, time_utc, received_at)
    SELECT id_sms, status, sms, viber, time_raw, time_utc, %(now)s FROM input
    ORDER BY id_sms, status, sms, viber, time_raw
    ON CONFLICT DO NOTHING
    RETURNING id_sms, status, sms, viber, time_raw, time_utc
),
keyed AS (
    -- Ranks as in status_ranks and rules.py; a CASE costs less than three joins.
    SELECT id_sms, status, sms, viber, time_raw,
           coalesce(to_char(time_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '') AS t,
           CASE status WHEN 'send' THEN 0 WHEN 'partly_deliver' THEN 2 WHEN 'deliver' THEN 3
                       WHEN 'read' THEN 4 WHEN 'not_deliver' THEN 4 WHEN 'expired' THEN 4
                       ELSE 1 END AS status_rank,
           CASE sms WHEN 'send' THEN 0 WHEN 'partly_deliver' THEN 2 WHEN 'deliver' THEN 3
                    WHEN 'read' THEN 4 WHEN 'not_deliver' THEN 4 WHEN 'expired' THEN 4
                    ELSE 1 END AS sms_rank,
           CASE viber WHEN 'send' THEN 0 WHEN 'partly_deliver' THEN 2 WHEN 'deliver' THEN 3
                      WHEN 'read' THEN 4 WHEN 'not_deliver' THEN 4 WHEN 'expired' THEN 4
                      ELSE 1 END AS viber_rank
    FROM inserted
),
reduced AS (
    SELECT id_sms,
           max((status_rank || E'\x01' || t || E'\x01' || status || E'\x01' || time_raw)
               COLLATE "C") AS status_key,
           max((sms_rank || E'\x01' || t || E'\x01' || sms || E'\x01' || time_raw)
               COLLATE "C") FILTER (WHERE sms <> '') AS sms_key,
           max((viber_rank || E'\x01' || t || E'\x01' || viber || E'\x01' || time_raw)
               COLLATE "C") FILTER (WHERE viber <> '') AS viber_key
    FROM keyed
    GROUP BY id_sms
),
rejected AS (
    INSERT INTO rejects (received_at, scope, reason, id_sms_raw, http_status, remote, raw)
    SELECT %(now)s, *
    FROM unnest(%(r_scopes)s::text[], %(r_reasons)s::text[], %(r_ids)s::text[],
                %(r_statuses)s::integer[], %(r_remotes)s::text[], %(r_raws)s::bytea[])
)
INSERT INTO messages AS m (
    id_sms, status, time_raw, time_utc, status_key,
    sms, sms_key, viber, viber_key, first_seen, updated_at, last_event_at)
SELECT id_sms,
       split_part(status_key, E'\x01', 3),
       split_part(status_key, E'\x01', 4),
       nullif(split_part(status_key, E'\x01', 2), '')::timestamp AT TIME ZONE 'UTC',
       status_key,
       split_part(sms_key, E'\x01', 3), sms_key,
       split_part(viber_key, E'\x01', 3), viber_key,
       %(now)s, %(now)s, %(now)s
FROM reduced
ORDER BY id_sms
ON CONFLICT (id_sms) DO UPDATE SET
    status     = CASE WHEN excluded.status_key > m.status_key
                      THEN excluded.status ELSE m.status END,
    time_raw   = CASE WHEN excluded.status_key > m.status_key
                      THEN excluded.time_raw ELSE m.time_raw END,
    time_utc   = CASE WHEN excluded.status_key > m.status_key
                      THEN excluded.time_utc ELSE m.time_utc END,
    status_key = greatest(excluded.status_key, m.status_key),
    sms        = CASE WHEN excluded.sms_key > coalesce(m.sms_key, '')
                      THEN excluded.sms ELSE m.sms END,
    sms_key    = greatest(excluded.sms_key, m.sms_key),
    viber      = CASE WHEN excluded.viber_key > coalesce(m.viber_key, '')
                      THEN excluded.viber ELSE m.viber END,
    viber_key  = greatest(excluded.viber_key, m.viber_key),
    updated_at = CASE WHEN excluded.status_key > m.status_key
                        OR excluded.sms_key > coalesce(m.sms_key, '')
                        OR excluded.viber_key > coalesce(m.viber_key, '')
                      THEN excluded.updated_at ELSE m.updated_at END,
    -- Set by every new event, winning or not, so that a prune racing this
    -- statement re-checks the row and keeps it (see prune_messages).
    last_event_at = excluded.last_event_at;

-- get_message --
SELECT id_sms, status, sms, viber, time_raw, time_utc, first_seen, updated_at
FROM messages WHERE id_sms = %s;

-- get_history --
-- The order of SQLite's: no time first (NULLS FIRST), statuses in byte order
-- whatever the database's collation (COLLATE "C").
SELECT status, nullif(sms, ''), nullif(viber, ''), time_raw, time_utc, received_at
FROM events WHERE id_sms = %s
ORDER BY received_at, time_utc NULLS FIRST, status COLLATE "C", time_raw COLLATE "C",
         sms COLLATE "C", viber COLLATE "C";

-- list_rejects --
SELECT id, received_at, scope, reason, raw, id_sms_raw, http_status, remote
FROM rejects WHERE id > %s ORDER BY id LIMIT %s;

-- stats --
SELECT
    (SELECT count(*) FROM messages),
    (SELECT count(*) FROM events),
    (SELECT count(*) FROM events WHERE status NOT IN (SELECT value FROM status_ranks)),
    (SELECT count(*) FROM rejects);

-- ping --
INSERT INTO heartbeat (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at;

-- events_boundary --
-- Keyset pagination for pruning: the id_sms that closes the next batch of
-- events after the first parameter (no row: the batch runs to the end).
SELECT id_sms FROM events WHERE id_sms > %s ORDER BY id_sms LIMIT 1 OFFSET %s;

-- prune_events --
DELETE FROM events WHERE id_sms > %s AND id_sms <= %s AND received_at < %s;

-- messages_boundary --
SELECT id_sms FROM messages WHERE id_sms > %s ORDER BY id_sms LIMIT 1 OFFSET %s;

-- prune_messages --
-- Only messages that got no new event since the cut-off and none of whose
-- events remain (events are pruned first). A concurrent store sets
-- last_event_at on the row it merges into, so the re-check after its row
-- lock keeps the message.
DELETE FROM messages WHERE id_sms > %s AND id_sms <= %s AND last_event_at < %s
  AND NOT EXISTS (SELECT 1 FROM events WHERE events.id_sms = messages.id_sms);

-- prune_rejects --
DELETE FROM rejects
WHERE id IN (SELECT id FROM rejects WHERE received_at < %s ORDER BY id LIMIT %s);
