-- The schema the code expects, in full. A test holds it equal to the result
-- of applying every file in migrations/ in order.

-- The rank of each documented status value (rules.py); any other value ranks 1.
CREATE TABLE status_ranks (
    value text COLLATE "C" PRIMARY KEY,
    rank  integer NOT NULL
);

INSERT INTO status_ranks (value, rank) VALUES
    ('send', 0), ('partly_deliver', 2), ('deliver', 3),
    ('read', 4), ('not_deliver', 4), ('expired', 4);

-- One row per distinct state ever received: a redelivered identical state
-- adds nothing. An absent channel is stored as '' so that it can be part of
-- the key (the parser never keeps an empty one).
CREATE TABLE events (
    id_sms      bigint      NOT NULL,
    status      text        NOT NULL,
    sms         text        NOT NULL,
    viber       text        NOT NULL,
    time_raw    text        NOT NULL,
    time_utc    timestamptz,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (id_sms, status, sms, viber, time_raw)
);

-- The current state of each message. A *_key column is the sort key of
-- rules.py as text: rank, 0x01, UTC time, 0x01, value, 0x01, raw time; the
-- greater key (byte order) wins.
CREATE TABLE messages (
    id_sms     bigint      PRIMARY KEY,
    status     text        NOT NULL,
    time_raw   text        NOT NULL,
    time_utc   timestamptz,
    status_key text        COLLATE "C" NOT NULL,
    sms        text,
    sms_key    text        COLLATE "C",
    viber      text,
    viber_key  text        COLLATE "C",
    first_seen    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_event_at timestamptz NOT NULL
);

CREATE TABLE rejects (
    id          bigserial   PRIMARY KEY,
    received_at timestamptz NOT NULL,
    scope       text        NOT NULL CHECK (scope IN ('state', 'document')),
    reason      text        NOT NULL,
    id_sms_raw  text,
    http_status integer,
    remote      text,
    raw         bytea       NOT NULL
);

-- One row, rewritten by every health check: /healthz proves that the
-- database takes writes (a full disk fails it), not only that it answers.
CREATE TABLE heartbeat (
    id integer PRIMARY KEY CHECK (id = 1),
    at timestamptz NOT NULL
);

-- The sender's tables. Times are seconds since the epoch (UTC), compared as numbers;
-- the queries take them from the database's clock, which every worker shares.

CREATE TABLE endpoints (
    id              bigserial        PRIMARY KEY,
    name            text             COLLATE "C" NOT NULL UNIQUE,
    url             text             NOT NULL,
    username        text,
    password        text,
    flavour         text             NOT NULL DEFAULT 'xml' CHECK (flavour IN ('xml', 'json')),
    batch_size      integer          NOT NULL DEFAULT 100 CHECK (batch_size > 0),
    concurrency     integer          NOT NULL DEFAULT 1 CHECK (concurrency > 0),
    rate_limit      double precision CHECK (rate_limit > 0),
    connect_timeout double precision NOT NULL DEFAULT 5 CHECK (connect_timeout > 0),
    read_timeout    double precision NOT NULL DEFAULT 15 CHECK (read_timeout > 0),
    failing_since   double precision,
    paused_at       double precision,
    pause_reason    text,
    created_at      double precision NOT NULL
);

-- One row per state to push to one endpoint. While a row is pending, a newer
-- state for the same id_sms replaces its status (sort_key: the order of
-- rules.py, compared in byte order as in SQLite and Python) and bumps
-- version; its attempts stay. A claimed row has a lease_owner and a next_at
-- at the end of its lease, so that an expired lease makes it due again by
-- itself. Each redelivery of a dead letter starts a new round of attempts.
CREATE TABLE deliveries (
    id          bigserial        PRIMARY KEY,
    endpoint_id bigint           NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    id_sms      bigint           NOT NULL,
    status      text             NOT NULL,
    time_raw    text             NOT NULL,
    sms         text,
    viber       text,
    sort_key    text             COLLATE "C" NOT NULL,
    state       text             NOT NULL DEFAULT 'pending'
                                 CHECK (state IN ('pending', 'delivered', 'dead')),
    version     integer          NOT NULL DEFAULT 1,
    round       integer          NOT NULL DEFAULT 1,
    attempts    integer          NOT NULL DEFAULT 0,
    next_at     double precision NOT NULL,
    lease_owner text,
    enqueued_at double precision NOT NULL,
    settled_at  double precision,
    last_error  text
);

CREATE UNIQUE INDEX deliveries_pending ON deliveries (endpoint_id, id_sms)
    WHERE state = 'pending';
-- (endpoint, next_at, id): a claim's whole ORDER BY, read in index order.
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_at, id) WHERE state = 'pending';
-- redeliver: dead rows and the other dead rows of their id_sms.
CREATE INDEX deliveries_dead ON deliveries (endpoint_id, id_sms) WHERE state = 'dead';

-- Why each failed attempt failed: the dead-letter list shows them all.
CREATE TABLE delivery_attempts (
    delivery_id bigint           NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    round       integer          NOT NULL,
    attempt     integer          NOT NULL,
    at          double precision NOT NULL,
    error       text             NOT NULL,
    PRIMARY KEY (delivery_id, round, attempt)
);
