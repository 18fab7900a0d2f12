-- The sender's tables: the endpoints statuses are pushed to, the outbox of
-- states to push (pending, delivered or dead), and the failed attempts.
-- Times are seconds since the epoch (UTC), compared as numbers.

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
CREATE INDEX deliveries_listing ON deliveries (endpoint_id, state, id);

-- Why each failed attempt failed: the dead-letter list shows them all.
CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    round       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          REAL    NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, round, attempt)
) WITHOUT ROWID;
