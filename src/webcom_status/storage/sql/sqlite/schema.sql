-- The schema the code expects, in full. A test holds it equal to the result
-- of applying every file in migrations/ in order.

-- The rank of each documented status value (rules.py); any other value ranks 1.
CREATE TABLE status_ranks (
    value TEXT PRIMARY KEY,
    rank  INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO status_ranks (value, rank) VALUES
    ('send', 0), ('partly_deliver', 2), ('deliver', 3),
    ('read', 4), ('not_deliver', 4), ('expired', 4);

-- One row per distinct state ever received: a redelivered identical state
-- adds nothing. An absent channel is stored as '' (the parser never keeps an
-- empty one), so that it can be part of the key.
CREATE TABLE events (
    id_sms      INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    sms         TEXT    NOT NULL,
    viber       TEXT    NOT NULL,
    time_raw    TEXT    NOT NULL,
    time_utc    TEXT,
    received_at TEXT    NOT NULL,
    PRIMARY KEY (id_sms, status, sms, viber, time_raw)
) WITHOUT ROWID;

-- The current state of each message. A *_key column is the sort key of
-- rules.py as text: rank, 0x01, UTC time, 0x01, value, 0x01, raw time; the
-- greater key wins. Status values never hold characters below 0x20.
CREATE TABLE messages (
    id_sms     INTEGER PRIMARY KEY,
    status     TEXT NOT NULL,
    time_raw   TEXT NOT NULL,
    time_utc   TEXT,
    status_key TEXT NOT NULL,
    sms        TEXT,
    sms_key    TEXT,
    viber      TEXT,
    viber_key  TEXT,
    first_seen    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    last_event_at TEXT NOT NULL
);

-- Every new event is merged into messages in the same statement that inserts
-- it, so the current state is the maximum of the events whatever their order.
-- The ranks are those of status_ranks (and rules.py), written out as CASE
-- expressions: cheaper per event than three lookups in that table.
CREATE TRIGGER events_merge AFTER INSERT ON events BEGIN
    INSERT INTO messages
    SELECT new.id_sms, new.status, new.time_raw, new.time_utc, k.status_key,
           nullif(new.sms, ''), k.sms_key, nullif(new.viber, ''), k.viber_key,
           new.received_at, new.received_at, new.received_at
    FROM (
        -- A channel holding the overall value has the overall key.
        SELECT s.status_key,
               iif(new.sms = '', NULL, iif(new.sms = new.status, s.status_key,
                   s.sms_rank || s.time_part || new.sms || char(1) || new.time_raw)) AS sms_key,
               iif(new.viber = '', NULL, iif(new.viber = new.status, s.status_key,
                   s.viber_rank || s.time_part || new.viber || char(1) || new.time_raw))
                   AS viber_key
        FROM (
            SELECT (CASE new.status WHEN 'deliver' THEN 3 WHEN 'send' THEN 0 WHEN 'read' THEN 4
                    WHEN 'not_deliver' THEN 4 WHEN 'expired' THEN 4 WHEN 'partly_deliver' THEN 2
                    ELSE 1 END)
                       || char(1) || coalesce(new.time_utc, '') || char(1) || new.status
                       || char(1) || new.time_raw AS status_key,
                   char(1) || coalesce(new.time_utc, '') || char(1) AS time_part,
                   CASE new.sms WHEN 'deliver' THEN 3 WHEN 'send' THEN 0 WHEN 'read' THEN 4
                   WHEN 'not_deliver' THEN 4 WHEN 'expired' THEN 4 WHEN 'partly_deliver' THEN 2
                   ELSE 1 END AS sms_rank,
                   CASE new.viber WHEN 'deliver' THEN 3 WHEN 'send' THEN 0 WHEN 'read' THEN 4
                   WHEN 'not_deliver' THEN 4 WHEN 'expired' THEN 4 WHEN 'partly_deliver' THEN 2
                   ELSE 1 END AS viber_rank
        ) AS s
    ) AS k
    WHERE true
    ON CONFLICT (id_sms) DO UPDATE SET
        status     = iif(excluded.status_key > status_key, excluded.status, status),
        time_raw   = iif(excluded.status_key > status_key, excluded.time_raw, time_raw),
        time_utc   = iif(excluded.status_key > status_key, excluded.time_utc, time_utc),
        status_key = max(excluded.status_key, status_key),
        sms        = iif(excluded.sms_key > coalesce(sms_key, ''), excluded.sms, sms),
        sms_key    = max(coalesce(excluded.sms_key, ''), coalesce(sms_key, '')),
        viber      = iif(excluded.viber_key > coalesce(viber_key, ''), excluded.viber, viber),
        viber_key  = max(coalesce(excluded.viber_key, ''), coalesce(viber_key, '')),
        updated_at = iif(excluded.status_key > status_key
                         OR excluded.sms_key > coalesce(sms_key, '')
                         OR excluded.viber_key > coalesce(viber_key, ''),
                         excluded.updated_at, updated_at),
        -- Set by every new event, winning or not: retention keys on it.
        last_event_at = excluded.last_event_at;
END;

CREATE TABLE rejects (
    id          INTEGER PRIMARY KEY,
    received_at TEXT    NOT NULL,
    scope       TEXT    NOT NULL CHECK (scope IN ('state', 'document')),
    reason      TEXT    NOT NULL,
    id_sms_raw  TEXT,
    http_status INTEGER,
    remote      TEXT,
    raw         BLOB    NOT NULL
);

-- One row, rewritten by every health check: /healthz proves that the
-- database takes writes (a full disk fails it), not only that it answers.
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);

-- The sender's tables. Times are seconds since the epoch (UTC), compared as numbers.

CREATE TABLE endpoints (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    url             TEXT    NOT NULL,
    username        TEXT,
    password        TEXT,
    flavour         TEXT    NOT NULL DEFAULT 'xml' CHECK (flavour IN ('xml', 'json')),
    batch_size      INTEGER NOT NULL DEFAULT 100 CHECK (batch_size > 0),
    concurrency     INTEGER NOT NULL DEFAULT 1 CHECK (concurrency > 0),
    rate_limit      REAL    CHECK (rate_limit > 0),
    connect_timeout REAL    NOT NULL DEFAULT 5 CHECK (connect_timeout > 0),
    read_timeout    REAL    NOT NULL DEFAULT 15 CHECK (read_timeout > 0),
    failing_since   REAL,
    paused_at       REAL,
    pause_reason    TEXT,
    created_at      REAL    NOT NULL
);

-- One row per state to push to one endpoint. While a row is pending, a newer
-- state for the same id_sms replaces its status (sort_key: the order of
-- rules.py) and bumps version; its attempts stay. A claimed row has a
-- lease_owner and a next_at at the end of its lease, so that an expired
-- lease makes it due again by itself. Each redelivery of a dead letter
-- starts a new round of attempts.
CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    endpoint_id INTEGER NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    id_sms      INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    time_raw    TEXT    NOT NULL,
    sms         TEXT,
    viber       TEXT,
    sort_key    TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'dead')),
    version     INTEGER NOT NULL DEFAULT 1,
    round       INTEGER NOT NULL DEFAULT 1,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL    NOT NULL,
    lease_owner TEXT,
    enqueued_at REAL    NOT NULL,
    settled_at  REAL,
    last_error  TEXT
);

CREATE UNIQUE INDEX deliveries_pending ON deliveries (endpoint_id, id_sms)
    WHERE state = 'pending';
-- (endpoint, next_at, id): a claim's whole ORDER BY, read in index order.
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_at, id) WHERE state = 'pending';
-- redeliver: dead rows and the other dead rows of their id_sms.
CREATE INDEX deliveries_dead ON deliveries (endpoint_id, id_sms) WHERE state = 'dead';

-- Why each failed attempt failed: the dead-letter list shows them all.
CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    round       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          REAL    NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, round, attempt)
) WITHOUT ROWID;
