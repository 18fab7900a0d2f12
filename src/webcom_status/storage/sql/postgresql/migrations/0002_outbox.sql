-- The sender's tables: the endpoints statuses are pushed to, the outbox of
-- states to push (pending, delivered or dead), and the failed attempts.
-- Times are seconds since the epoch (UTC), compared as numbers; the queries
-- take them from the database's clock, which every worker shares.

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
CREATE INDEX deliveries_listing ON deliveries (endpoint_id, state, id);

-- Why each failed attempt failed: the dead-letter list shows them all.
CREATE TABLE delivery_attempts (
    delivery_id bigint           NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    round       integer          NOT NULL,
    attempt     integer          NOT NULL,
    at          double precision NOT NULL,
    error       text             NOT NULL,
    PRIMARY KEY (delivery_id, round, attempt)
);
