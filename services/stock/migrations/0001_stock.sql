CREATE TABLE locations (
    site_id     text NOT NULL,
    location_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('SUPERMARKET')),
    PRIMARY KEY (site_id, location_id)
);

-- The most a location may hold of an item: for a supermarket, its loop's cap.
CREATE TABLE location_caps (
    site_id     text NOT NULL,
    location_id text NOT NULL,
    item_id     text NOT NULL,
    cap_units   bigint NOT NULL CHECK (cap_units > 0),
    PRIMARY KEY (site_id, location_id, item_id),
    FOREIGN KEY (site_id, location_id) REFERENCES locations
);

CREATE TABLE on_hand (
    site_id     text NOT NULL,
    location_id text NOT NULL,
    item_id     text NOT NULL,
    lot_id      text NOT NULL,
    quantity    bigint NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (site_id, location_id, item_id, lot_id)
);

-- Every movement that happened; on_hand is its running sum.
CREATE TABLE movements (
    id          bigserial PRIMARY KEY,
    site_id     text NOT NULL,
    event_id    uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('RECEIPT', 'ISSUE')),
    location_id text NOT NULL,
    item_id     text NOT NULL,
    lot_id      text NOT NULL,
    -- Signed: receipts add, issues subtract.
    quantity    bigint NOT NULL,
    reference   text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Movements refused (a receipt above the cap, an issue above on-hand), kept for
-- the alerts service and for people to look into.
CREATE TABLE refused_movements (
    id          bigserial PRIMARY KEY,
    site_id     text NOT NULL,
    event_id    uuid NOT NULL,
    kind        text NOT NULL,
    location_id text NOT NULL,
    item_id     text NOT NULL,
    lot_id      text NOT NULL,
    quantity    bigint NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
