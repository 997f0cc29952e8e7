CREATE TABLE sites (
    site_id    text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stations (
    site_id    text NOT NULL REFERENCES sites,
    station_id text NOT NULL,
    name       text NOT NULL,
    -- Signals raised at this station are numbered 1, 2, 3...; bumping this row
    -- also serialises raising, so sequences commit in order.
    last_signal_sequence bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, station_id)
);

CREATE TABLE items (
    site_id         text NOT NULL REFERENCES sites,
    item_id         text NOT NULL,
    description     text NOT NULL,
    unit_of_measure text NOT NULL,
    PRIMARY KEY (site_id, item_id)
);

CREATE TABLE loops (
    site_id                 text NOT NULL,
    loop_id                 text NOT NULL,
    item_id                 text NOT NULL,
    supplier_station_id     text NOT NULL,
    consumer_station_id     text NOT NULL,
    supermarket_location_id text NOT NULL,
    container_quantity      bigint NOT NULL CHECK (container_quantity > 0),
    card_count              integer NOT NULL CHECK (card_count > 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, loop_id),
    FOREIGN KEY (site_id, item_id) REFERENCES items,
    FOREIGN KEY (site_id, supplier_station_id) REFERENCES stations,
    FOREIGN KEY (site_id, consumer_station_id) REFERENCES stations
);

CREATE TABLE cards (
    site_id    text NOT NULL,
    card_code  text NOT NULL,
    loop_id    text NOT NULL,
    state      text NOT NULL CHECK (state IN ('FULL', 'EMPTY', 'IN_PROCESS')),
    lot_id     text NOT NULL,
    quantity   bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    emptied_at timestamptz,
    PRIMARY KEY (site_id, card_code),
    FOREIGN KEY (site_id, loop_id) REFERENCES loops,
    -- Only a FULL container holds parts.
    CHECK ((state = 'FULL') = (quantity > 0))
);
CREATE INDEX cards_by_loop ON cards (site_id, loop_id);

CREATE TABLE signals (
    site_id      text NOT NULL,
    station_id   text NOT NULL,
    sequence     bigint NOT NULL,
    loop_id      text NOT NULL,
    card_code    text NOT NULL,
    item_id      text NOT NULL,
    quantity     bigint NOT NULL,
    state        text NOT NULL CHECK (state IN ('OPEN', 'STARTED', 'COMPLETED')),
    raised_at    timestamptz NOT NULL,
    started_at   timestamptz,
    completed_at timestamptz,
    PRIMARY KEY (site_id, station_id, sequence),
    FOREIGN KEY (site_id, card_code) REFERENCES cards
);
-- One emptied card, one signal: a card has at most one signal not yet completed.
CREATE UNIQUE INDEX signals_one_active_per_card ON signals (site_id, card_code)
    WHERE state <> 'COMPLETED';
CREATE INDEX signals_open ON signals (site_id, station_id, sequence) WHERE state = 'OPEN';
