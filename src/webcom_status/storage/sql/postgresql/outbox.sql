-- The sender's queries on PostgreSQL. Times are seconds since the epoch, read
-- from the database's clock (workers on several hosts share one database):
-- extract(epoch FROM statement_timestamp()), the same for every row of a
-- statement. Lists of rows come as arrays, unpacked by unnest.

-- insert_endpoint --
INSERT INTO endpoints (name, url, username, password, flavour, batch_size, concurrency,
                       rate_limit, connect_timeout, read_timeout, created_at)
VALUES (%(name)s, %(url)s, %(username)s, %(password)s, %(flavour)s, %(batch_size)s,
        %(concurrency)s, %(rate_limit)s, %(connect_timeout)s, %(read_timeout)s,
        extract(epoch FROM statement_timestamp())::double precision)
RETURNING id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
          connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason;

-- update_endpoint --
UPDATE endpoints SET url = %(url)s, username = %(username)s, password = %(password)s,
    flavour = %(flavour)s, batch_size = %(batch_size)s, concurrency = %(concurrency)s,
    rate_limit = %(rate_limit)s, connect_timeout = %(connect_timeout)s,
    read_timeout = %(read_timeout)s
WHERE name = %(name)s
RETURNING id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
          connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason;

-- set_paused --
-- Resuming forgets the failures so far: the endpoint gets a whole period again.
UPDATE endpoints SET
    paused_at = CASE WHEN %(pause)s::boolean
                     THEN extract(epoch FROM statement_timestamp())::double precision END,
    pause_reason = %(reason)s,
    failing_since = CASE WHEN %(pause)s::boolean THEN failing_since END
WHERE name = %(name)s
RETURNING id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
          connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason;

-- lock_endpoint --
-- The endpoint a removal is about, locked until the removal commits.
SELECT id FROM endpoints WHERE name = %s FOR UPDATE;

-- delete_endpoint_attempts --
DELETE FROM delivery_attempts
WHERE delivery_id IN (SELECT id FROM deliveries WHERE endpoint_id = %s);

-- delete_endpoint_deliveries --
DELETE FROM deliveries WHERE endpoint_id = %s;

-- delete_endpoint --
DELETE FROM endpoints WHERE id = %s;

-- list_endpoints --
SELECT id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
       connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason
FROM endpoints ORDER BY name;

-- get_endpoint --
SELECT id, name, url, username, password, flavour, batch_size, concurrency, rate_limit,
       connect_timeout, read_timeout, created_at, failing_since, paused_at, pause_reason
FROM endpoints WHERE name = %s;

-- enqueue --
-- One array per column, one element per id_sms. A pending row of the same
-- id_sms takes the new state only if it is later: sort_key is COLLATE "C",
-- so keys compare in byte order whatever the database's collation. Rows are
-- taken in id_sms order so that concurrent calls lock them in the same order.
INSERT INTO deliveries AS d (endpoint_id, id_sms, status, time_raw, sms, viber, sort_key,
                             next_at, enqueued_at)
SELECT %(endpoint_id)s, r.id_sms, r.status, r.time_raw, r.sms, r.viber, r.sort_key,
       extract(epoch FROM statement_timestamp())::double precision,
       extract(epoch FROM statement_timestamp())::double precision
FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(times)s::text[], %(sms)s::text[],
            %(vibers)s::text[], %(keys)s::text[])
    AS r (id_sms, status, time_raw, sms, viber, sort_key)
ORDER BY r.id_sms
ON CONFLICT (endpoint_id, id_sms) WHERE state = 'pending' DO UPDATE SET
    status = excluded.status, time_raw = excluded.time_raw, sms = excluded.sms,
    viber = excluded.viber, sort_key = excluded.sort_key, version = d.version + 1,
    round = d.round + 1, attempts = 0
WHERE excluded.sort_key > d.sort_key;

-- due --
-- One index seek per endpoint (deliveries_due), however long the queue.
SELECT id, next_at FROM (
    SELECT e.id, (
        SELECT min(d.next_at) FROM deliveries AS d
        WHERE d.endpoint_id = e.id AND d.state = 'pending'
    ) AS next_at
    FROM endpoints AS e
    WHERE e.paused_at IS NULL
) AS due
WHERE next_at IS NOT NULL;

-- claim --
-- The lease is next_at itself: a row whose worker died becomes due when it
-- ends. SKIP LOCKED passes over the rows another worker is taking right now;
-- a row it took meanwhile is re-checked after its commit, and no longer due.
-- The rows come back oldest first, in the order they were picked. A paused
-- endpoint has nothing due, whatever a worker last read of it.
WITH due AS (
    SELECT id, next_at FROM deliveries
    WHERE endpoint_id = %(endpoint_id)s AND state = 'pending'
      AND next_at <= extract(epoch FROM statement_timestamp())::double precision
      AND NOT EXISTS (
          SELECT 1 FROM endpoints AS e
          WHERE e.id = %(endpoint_id)s AND e.paused_at IS NOT NULL
      )
    ORDER BY next_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
taken AS (
    UPDATE deliveries AS d SET lease_owner = %(owner)s,
        next_at = extract(epoch FROM statement_timestamp())::double precision + %(lease)s
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.version, d.attempts, d.id_sms, d.status, d.time_raw, d.sms, d.viber,
              due.next_at AS due_at
)
SELECT id, version, attempts, id_sms, status, time_raw, sms, viber FROM taken
ORDER BY due_at, id;

-- settle_delivered --
-- Parallel arrays of ids and versions; a row replaced in flight stays pending.
UPDATE deliveries AS d SET state = 'delivered', attempts = d.attempts + 1,
    settled_at = extract(epoch FROM statement_timestamp())::double precision,
    lease_owner = NULL, last_error = NULL
FROM unnest(%(ids)s::bigint[], %(versions)s::integer[]) AS r (id, version)
WHERE d.id = r.id AND d.version = r.version AND d.lease_owner = %(owner)s;

-- settle_replaced --
-- Every row of the document: those still leased were replaced by a newer
-- state while in flight; the older state's push does not count against the
-- newer one, pushed next, at once.
UPDATE deliveries AS d SET lease_owner = NULL,
    next_at = extract(epoch FROM statement_timestamp())::double precision
WHERE d.id = ANY (%(ids)s::bigint[]) AND d.lease_owner = %(owner)s;

-- record_attempts --
-- Parallel arrays of ids, attempt counts and errors (and delays, unused here).
INSERT INTO delivery_attempts (delivery_id, round, attempt, at, error)
SELECT d.id, d.round, r.attempts,
       extract(epoch FROM statement_timestamp())::double precision, r.error
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(errors)s::text[],
            %(versions)s::integer[]) AS r (id, attempts, error, version)
JOIN deliveries AS d ON d.id = r.id
WHERE d.lease_owner = %(owner)s AND d.version = r.version
ON CONFLICT DO NOTHING;

-- settle_failed --
-- A null delay makes the row a dead letter.
UPDATE deliveries AS d SET
    attempts = r.attempts,
    last_error = r.error,
    state = CASE WHEN r.delay IS NULL THEN 'dead' ELSE 'pending' END,
    next_at = extract(epoch FROM statement_timestamp())::double precision
              + coalesce(r.delay, 0),
    settled_at = CASE WHEN r.delay IS NULL
                      THEN extract(epoch FROM statement_timestamp())::double precision END,
    lease_owner = NULL
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(errors)s::text[],
            %(delays)s::double precision[], %(versions)s::integer[])
    AS r (id, attempts, error, delay, version)
WHERE d.id = r.id AND d.lease_owner = %(owner)s AND d.version = r.version;

-- endpoint_ok --
UPDATE endpoints SET failing_since = NULL WHERE id = %s AND failing_since IS NOT NULL;

-- endpoint_failed --
UPDATE endpoints SET failing_since = coalesce(
    failing_since, extract(epoch FROM statement_timestamp())::double precision)
WHERE id = %(endpoint_id)s;

-- pause_failing --
UPDATE endpoints SET paused_at = extract(epoch FROM statement_timestamp())::double precision,
    pause_reason = %(reason)s
WHERE id = %(endpoint_id)s AND paused_at IS NULL
  AND failing_since <= extract(epoch FROM statement_timestamp())::double precision
                       - %(pause_after)s::double precision
RETURNING id;

-- list_deliveries --
SELECT d.id, e.name, d.id_sms, d.status, d.time_raw, d.sms, d.viber, d.state, d.attempts,
       d.next_at, d.enqueued_at, d.settled_at, d.last_error,
       d.lease_owner IS NOT NULL
       AND d.next_at > extract(epoch FROM statement_timestamp())::double precision
FROM deliveries AS d JOIN endpoints AS e ON e.id = d.endpoint_id
WHERE d.id > %(after_id)s
  AND (%(endpoint)s::text IS NULL OR e.name = %(endpoint)s::text)
  AND (%(state)s::text IS NULL OR d.state = %(state)s::text)
ORDER BY d.id
LIMIT %(limit)s;

-- list_attempts --
SELECT attempt, at, error FROM delivery_attempts
WHERE delivery_id = %s
ORDER BY round, attempt;

-- redeliver --
-- Dead letters back to pending with a new round of attempts. Of several dead
-- rows of one id_sms only the latest state comes back, and none whose id_sms
-- is pending already (the pending state is pushed anyway).
UPDATE deliveries AS d SET state = 'pending', round = d.round + 1, attempts = 0,
    next_at = extract(epoch FROM statement_timestamp())::double precision,
    settled_at = NULL, lease_owner = NULL
WHERE d.state = 'dead'
  AND (%(delivery_id)s::bigint IS NULL OR d.id = %(delivery_id)s::bigint)
  AND (%(endpoint_id)s::bigint IS NULL OR d.endpoint_id = %(endpoint_id)s::bigint)
  AND (%(since)s::double precision IS NULL OR d.settled_at >= %(since)s::double precision)
  -- Two subqueries, each naming its state, so that each reads its partial index.
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS o
      WHERE o.endpoint_id = d.endpoint_id AND o.id_sms = d.id_sms AND o.state = 'pending'
  )
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS o
      WHERE o.endpoint_id = d.endpoint_id AND o.id_sms = d.id_sms AND o.state = 'dead'
        AND (o.sort_key, o.id) > (d.sort_key, d.id)
  );

-- tally --
SELECT e.name,
       count(*) FILTER (WHERE d.state = 'pending'),
       count(*) FILTER (WHERE d.state = 'delivered'),
       count(*) FILTER (WHERE d.state = 'dead')
FROM endpoints AS e LEFT JOIN deliveries AS d ON d.endpoint_id = e.id
GROUP BY e.name
ORDER BY e.name;
