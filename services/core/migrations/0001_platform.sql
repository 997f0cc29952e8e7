-- Tables every service has in its own schema.

-- The first answer to each mutating request, so a retry gets it again.
CREATE TABLE request_log (
    site_id     text NOT NULL,
    request_id  text NOT NULL,
    rpc         text NOT NULL,
    fingerprint text NOT NULL,
    response    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, request_id)
);

-- Events committed with the change that caused them; the relay sends them on.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL,
    destination  text NOT NULL,
    site_id      text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL,
    delivered_at timestamptz,
    UNIQUE (event_id, destination)
);
CREATE INDEX outbox_pending ON outbox (destination, id) WHERE delivered_at IS NULL;

-- Events received and applied; a redelivered event_id is dropped.
CREATE TABLE inbox (
    event_id    uuid PRIMARY KEY,
    source      text NOT NULL,
    event_type  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
