-- The sender's queries on SQLite. Times are seconds since the epoch.

-- insert_endpoint --
INSERT INTO endpoints (name, url, username, password, flavour, batch_size, concurrency,
                       rate_limit, connect_timeout, read_timeout, created_at)
VALUES (:name, :url, :username, :password, :flavour, :batch_size, :concurrency,
        :rate_limit, :connect_timeout, :read_timeout, :now);

-- update_endpoint --
UPDATE endpoints SET url = :url, username = :username, password = :password,
    flavour = :flavour, batch_size = :batch_size, concurrency = :concurrency,
    rate_limit = :rate_limit, connect_timeout = :connect_timeout, read_timeout = :read_timeout
WHERE name = :name;

-- set_paused --
-- Resuming forgets the failures so far: the endpoint gets a whole period again.
UPDATE endpoints SET paused_at = :paused_at, pause_reason = :reason,
    failing_since = iif(:paused_at IS NULL, NULL, failing_since)
WHERE name = :name;

-- delete_endpoint_attempts --
DELETE FROM delivery_attempts
WHERE delivery_id IN (SELECT id FROM deliveries WHERE endpoint_id = ?);

-- delete_endpoint_deliveries --
DELETE FROM deliveries WHERE endpoint_id = ?;

-- delete_endpoint --
DELETE FROM endpoints WHERE id = ?;

-- list_endpoints --
SELECT id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
       connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason
FROM endpoints ORDER BY name;

-- get_endpoint --
SELECT id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
       connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason
FROM endpoints WHERE name = ?;

-- enqueue --
-- :rows is a JSON array of [id_sms, status, time, sms, viber, sort_key], one per id_sms.
-- A pending row of the same id_sms takes the new state only if it is later;
-- the new state gets a whole round of attempts (the earlier rounds' failed
-- attempts stay listed).
INSERT INTO deliveries (endpoint_id, id_sms, status, time_raw, sms, viber, sort_key,
                        next_at, enqueued_at)
SELECT :endpoint_id, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3,
       j.value ->> 4, j.value ->> 5, :now, :now
FROM json_each(:rows) AS j
WHERE true
ON CONFLICT (endpoint_id, id_sms) WHERE state = 'pending' DO UPDATE SET
    status = excluded.status, time_raw = excluded.time_raw, sms = excluded.sms,
    viber = excluded.viber, sort_key = excluded.sort_key, version = version + 1,
    round = round + 1, attempts = 0
WHERE excluded.sort_key > sort_key;

-- enqueue_group --
-- The same, for ids that share every other field: :ids is a JSON array of
-- id_sms. json_each hands each id out as it is, where enqueue parses each
-- row's array again for each field: half the cost when states repeat their
-- status and time, as a provider's do.
INSERT INTO deliveries (endpoint_id, id_sms, status, time_raw, sms, viber, sort_key,
                        next_at, enqueued_at)
SELECT :endpoint_id, j.value, :status, :time_raw, :sms, :viber, :sort_key, :now, :now
FROM json_each(:ids) AS j
WHERE true
ON CONFLICT (endpoint_id, id_sms) WHERE state = 'pending' DO UPDATE SET
    status = excluded.status, time_raw = excluded.time_raw, sms = excluded.sms,
    viber = excluded.viber, sort_key = excluded.sort_key, version = version + 1,
    round = round + 1, attempts = 0
WHERE excluded.sort_key > sort_key;

-- due --
-- One index seek per endpoint (deliveries_due), however long the queue.
SELECT e.id, (
    SELECT min(d.next_at) FROM deliveries AS d
    WHERE d.endpoint_id = e.id AND d.state = 'pending'
) AS next_at
FROM endpoints AS e
WHERE e.paused_at IS NULL AND next_at IS NOT NULL;

-- claim_pick --
-- The due rows of one endpoint, oldest first, as one JSON array, and their
-- ids as another: one step for the writer thread instead of one per row. A
-- paused endpoint has nothing due, whatever a worker last read of it.
SELECT json_group_array(json_array(id, version, attempts, id_sms, status, time_raw, sms, viber)),
       json_group_array(id)
FROM (
    SELECT id, version, attempts, id_sms, status, time_raw, sms, viber FROM deliveries
    WHERE endpoint_id = :endpoint_id AND state = 'pending' AND next_at <= :now
      AND NOT EXISTS (
          SELECT 1 FROM endpoints WHERE id = :endpoint_id AND paused_at IS NOT NULL
      )
    ORDER BY next_at, id
    LIMIT :limit
);

-- claim_lease --
-- :ids is a JSON array of row ids. The lease is next_at itself: a row whose
-- worker died becomes due when it ends.
UPDATE deliveries SET lease_owner = :owner, next_at = :now + :lease
WHERE id IN (SELECT value FROM json_each(:ids));

-- settle_delivered --
-- :rows is a JSON object {"id": version}: json_each hands out each row's
-- id and version as they are, where an array per row would be parsed again
-- for each field. A row replaced in flight stays pending.
UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, settled_at = :now,
    lease_owner = NULL, last_error = NULL
FROM json_each(:rows) AS j
WHERE deliveries.id = CAST(j.key AS INTEGER) AND deliveries.version = j.value
  AND deliveries.lease_owner = :owner;

-- settle_replaced --
-- :ids is a JSON array of the ids of every row of the document. Those still
-- leased were replaced by a newer state while in flight: the older state's
-- push does not count against the newer one, pushed next, at once.
UPDATE deliveries SET lease_owner = NULL, next_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND lease_owner = :owner;

-- record_attempts --
-- :rows is a JSON array of [id, attempts, error, delay or null, version].
INSERT INTO delivery_attempts (delivery_id, round, attempt, at, error)
SELECT d.id, d.round, j.value ->> 1, :now, j.value ->> 2
FROM json_each(:rows) AS j JOIN deliveries AS d ON d.id = j.value ->> 0
WHERE d.lease_owner = :owner AND d.version = j.value ->> 4
ON CONFLICT DO NOTHING;

-- settle_failed --
UPDATE deliveries SET
    attempts = j.value ->> 1,
    last_error = j.value ->> 2,
    state = iif(j.value ->> 3 IS NULL, 'dead', 'pending'),
    next_at = :now + coalesce(j.value ->> 3, 0),
    settled_at = iif(j.value ->> 3 IS NULL, :now, NULL),
    lease_owner = NULL
FROM json_each(:rows) AS j
WHERE deliveries.id = j.value ->> 0 AND deliveries.lease_owner = :owner
  AND deliveries.version = j.value ->> 4;

-- endpoint_ok --
UPDATE endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL;

-- endpoint_failed --
UPDATE endpoints SET failing_since = coalesce(failing_since, :now) WHERE id = :endpoint_id;

-- pause_failing --
UPDATE endpoints SET paused_at = :now, pause_reason = :reason
WHERE id = :endpoint_id AND paused_at IS NULL AND failing_since <= :now - :pause_after
RETURNING id;

-- list_deliveries --
SELECT d.id, e.name, d.id_sms, d.status, d.time_raw, d.sms, d.viber, d.state, d.attempts,
       d.next_at, d.enqueued_at, d.settled_at, d.last_error,
       d.lease_owner IS NOT NULL AND d.next_at > :now
FROM deliveries AS d JOIN endpoints AS e ON e.id = d.endpoint_id
WHERE d.id > :after_id
  AND (:endpoint IS NULL OR e.name = :endpoint)
  AND (:state IS NULL OR d.state = :state)
ORDER BY d.id
LIMIT :limit;

-- list_attempts --
SELECT attempt, at, error FROM delivery_attempts
WHERE delivery_id = ?
ORDER BY round, attempt;

-- redeliver --
-- Dead letters back to pending with a new round of attempts. Of several dead
-- rows of one id_sms only the latest state comes back, and none whose id_sms
-- is pending already (the pending state is pushed anyway).
UPDATE deliveries SET state = 'pending', round = round + 1, attempts = 0, next_at = :now,
    settled_at = NULL, lease_owner = NULL
WHERE state = 'dead'
  AND (:delivery_id IS NULL OR id = :delivery_id)
  AND (:endpoint_id IS NULL OR endpoint_id = :endpoint_id)
  AND (:since IS NULL OR settled_at >= :since)
  -- Two subqueries, each naming its state, so that each reads its partial index.
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS o
      WHERE o.endpoint_id = deliveries.endpoint_id AND o.id_sms = deliveries.id_sms AND o.state = 'pending'
  )
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS o
      WHERE o.endpoint_id = deliveries.endpoint_id AND o.id_sms = deliveries.id_sms AND o.state = 'dead'
        AND (o.sort_key, o.id) > (deliveries.sort_key, deliveries.id)
  );

-- tally --
SELECT e.name,
       count(*) FILTER (WHERE d.state = 'pending'),
       count(*) FILTER (WHERE d.state = 'delivered'),
       count(*) FILTER (WHERE d.state = 'dead')
FROM endpoints AS e LEFT JOIN deliveries AS d ON d.endpoint_id = e.id
GROUP BY e.name
ORDER BY e.name;
