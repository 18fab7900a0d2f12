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
