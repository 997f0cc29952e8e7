-- The site's picture of the line, kept from the events other services send,
-- and the alerts evaluated from it.

CREATE TABLE loops (
    site_id             text NOT NULL,
    loop_id             text NOT NULL,
    item_id             text NOT NULL,
    supplier_station_id text NOT NULL,
    consumer_station_id text NOT NULL,
    cap_units           bigint NOT NULL,
    container_quantity  bigint NOT NULL,
    PRIMARY KEY (site_id, loop_id)
);

CREATE TABLE cards (
    site_id   text NOT NULL,
    card_code text NOT NULL,
    loop_id   text NOT NULL,
    state     text NOT NULL CHECK (state IN ('FULL', 'EMPTY', 'IN_PROCESS')),
    quantity  bigint NOT NULL,
    -- When the card entered its state (the event's time, not its arrival's).
    since     timestamptz NOT NULL,
    PRIMARY KEY (site_id, card_code)
);

-- Stock's threshold states, as stock last reported them.
CREATE TABLE stock_states (
    site_id      text NOT NULL,
    item_id      text NOT NULL,
    location_id  text NOT NULL,
    state        text NOT NULL,
    on_hand      bigint NOT NULL,
    safety_stock bigint NOT NULL,
    overstock    bigint NOT NULL,
    PRIMARY KEY (site_id, item_id, location_id)
);

CREATE TABLE lot_holds (
    site_id text NOT NULL,
    lot_id  text NOT NULL,
    item_id text NOT NULL,
    reason  text NOT NULL,
    PRIMARY KEY (site_id, lot_id)
);

-- Count lines beyond tolerance, until their count is booked.
CREATE TABLE count_variances (
    site_id          text NOT NULL,
    count_id         text NOT NULL,
    location_id      text NOT NULL,
    item_id          text NOT NULL,
    lot_id           text NOT NULL,
    book_quantity    bigint NOT NULL,
    counted_quantity bigint NOT NULL,
    PRIMARY KEY (site_id, count_id, item_id, lot_id)
);

CREATE TABLE overproduction_attempts (
    site_id     text NOT NULL,
    station_id  text NOT NULL,
    attempts    bigint NOT NULL,
    last_at     timestamptz NOT NULL,
    last_detail text NOT NULL,
    PRIMARY KEY (site_id, station_id)
);

CREATE TABLE thresholds (
    site_id  text NOT NULL,
    rule     text NOT NULL,
    scope    text NOT NULL CHECK (scope IN ('SITE', 'LOOP', 'STATION', 'ITEM')),
    scope_id text NOT NULL,
    value    double precision NOT NULL CHECK (value >= 0),
    PRIMARY KEY (site_id, rule, scope, scope_id)
);

-- Each site's change counter; the row stays locked until commit, so changes
-- become visible to WatchAlerts in sequence order.
CREATE TABLE site_sequences (
    site_id       text PRIMARY KEY,
    last_sequence bigint NOT NULL
);

CREATE TABLE alerts (
    site_id             text NOT NULL,
    alert_id            text NOT NULL,
    rule                text NOT NULL,
    severity            text NOT NULL,
    state               text NOT NULL CHECK (state IN ('FIRING', 'ACKNOWLEDGED', 'RESOLVED')),
    subject             text NOT NULL,
    message             text NOT NULL,
    value               double precision NOT NULL,
    threshold           double precision NOT NULL,
    fired_at            timestamptz NOT NULL,
    acknowledged_by     text NOT NULL DEFAULT '',
    acknowledge_comment text NOT NULL DEFAULT '',
    acknowledged_at     timestamptz,
    resolved_at         timestamptz,
    clear_since         timestamptz,
    sequence            bigint NOT NULL,
    PRIMARY KEY (site_id, alert_id),
    CHECK ((state = 'RESOLVED') = (resolved_at IS NOT NULL))
);
-- One open alert per condition: the database refuses a second.
CREATE UNIQUE INDEX alerts_one_open_per_condition ON alerts (site_id, rule, subject)
    WHERE state <> 'RESOLVED';
CREATE INDEX alerts_by_sequence ON alerts (site_id, sequence);

-- Outgoing webhook calls, one per alert change and URL, retried with backoff.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    url             text NOT NULL,
    body            jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL;
