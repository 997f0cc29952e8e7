-- Warehouses, items and lots; a ledger every kind of movement goes through;
-- quality dispositions, cycle counts, thresholds and the facts lot genealogy
-- is derived from.

CREATE TABLE warehouses (
    site_id      text NOT NULL,
    warehouse_id text NOT NULL,
    name         text NOT NULL,
    PRIMARY KEY (site_id, warehouse_id)
);

ALTER TABLE locations DROP CONSTRAINT locations_kind_check;
ALTER TABLE locations ADD CHECK (kind IN ('WAREHOUSE_BIN', 'SUPERMARKET', 'LINE_SIDE', 'QUARANTINE'));
-- Empty for locations on the shop floor.
ALTER TABLE locations ADD COLUMN warehouse_id text NOT NULL DEFAULT '';

CREATE TABLE items (
    site_id         text NOT NULL,
    item_id         text NOT NULL,
    unit_of_measure text NOT NULL,
    PRIMARY KEY (site_id, item_id)
);
INSERT INTO items (site_id, item_id, unit_of_measure)
    SELECT DISTINCT site_id, item_id, 'pcs' FROM on_hand;

CREATE TABLE lots (
    site_id        text NOT NULL,
    lot_id         text NOT NULL,
    item_id        text NOT NULL,
    status         text NOT NULL
        CHECK (status IN ('AVAILABLE', 'QUARANTINED', 'CONSUMED', 'SCRAPPED', 'RETURNED')),
    source         text NOT NULL CHECK (source IN ('SUPPLIER', 'PRODUCTION')),
    origin_id      text NOT NULL,
    hold_reason    text NOT NULL DEFAULT '',
    disposition_id text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (site_id, lot_id),
    FOREIGN KEY (site_id, item_id) REFERENCES items
);
INSERT INTO lots (site_id, lot_id, item_id, status, source, origin_id, created_at)
    SELECT site_id, lot_id, min(item_id),
           CASE WHEN sum(quantity) > 0 THEN 'AVAILABLE' ELSE 'CONSUMED' END,
           'PRODUCTION', '', now()
    FROM on_hand GROUP BY site_id, lot_id;

-- The ledger: every movement of every kind, one entry per location touched.
ALTER TABLE movements DROP CONSTRAINT movements_kind_check;
ALTER TABLE movements ADD CHECK (kind IN
    ('RECEIPT', 'ISSUE', 'TRANSFER', 'RETURN_TO_SUPPLIER', 'SCRAP', 'ADJUSTMENT'));
-- Kanban moves come from events; the rest from requests.
ALTER TABLE movements ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE movements ADD COLUMN actor text NOT NULL DEFAULT 'stations';
ALTER TABLE movements ADD COLUMN reason text NOT NULL DEFAULT '';
ALTER TABLE movements ADD COLUMN request_id text NOT NULL DEFAULT '';
ALTER TABLE movements ADD CHECK (quantity <> 0);
CREATE INDEX movements_by_item ON movements (site_id, item_id, occurred_at);
CREATE INDEX movements_by_location ON movements (site_id, location_id, occurred_at);
CREATE INDEX movements_by_lot ON movements (site_id, lot_id, occurred_at);

-- Append-only: a wrong entry is corrected by another entry, never edited away.
CREATE FUNCTION refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the stock ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER movements_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON movements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();

CREATE TABLE dispositions (
    site_id              text NOT NULL,
    disposition_id       text NOT NULL,
    lot_id               text NOT NULL,
    item_id              text NOT NULL,
    reason               text NOT NULL,
    outcome              text CHECK (outcome IN
        ('RELEASE', 'REWORK', 'SCRAP', 'RETURN_TO_SUPPLIER')),
    quarantined_quantity bigint NOT NULL,
    consumed_before_hold bigint NOT NULL DEFAULT 0,
    opened_by            text NOT NULL,
    closed_by            text NOT NULL DEFAULT '',
    closing_comment      text NOT NULL DEFAULT '',
    opened_at            timestamptz NOT NULL,
    closed_at            timestamptz,
    PRIMARY KEY (site_id, disposition_id),
    FOREIGN KEY (site_id, lot_id) REFERENCES lots,
    CHECK ((outcome IS NULL) = (closed_at IS NULL))
);
-- A lot has at most one open disposition.
CREATE UNIQUE INDEX dispositions_one_open_per_lot ON dispositions (site_id, lot_id)
    WHERE outcome IS NULL;

CREATE TABLE counts (
    site_id           text NOT NULL,
    count_id          text NOT NULL,
    location_id       text NOT NULL,
    state             text NOT NULL CHECK (state IN ('OPEN', 'AWAITING_APPROVAL', 'CLOSED')),
    tolerance_percent double precision NOT NULL,
    opened_by         text NOT NULL,
    opened_at         timestamptz NOT NULL,
    closed_at         timestamptz,
    PRIMARY KEY (site_id, count_id),
    FOREIGN KEY (site_id, location_id) REFERENCES locations
);
-- A location is counted by one open count at a time.
CREATE UNIQUE INDEX counts_one_open_per_location ON counts (site_id, location_id)
    WHERE state <> 'CLOSED';

CREATE TABLE count_lines (
    site_id          text NOT NULL,
    count_id         text NOT NULL,
    item_id          text NOT NULL,
    lot_id           text NOT NULL,
    counted_quantity bigint CHECK (counted_quantity >= 0),
    book_quantity    bigint,
    PRIMARY KEY (site_id, count_id, item_id, lot_id),
    FOREIGN KEY (site_id, count_id) REFERENCES counts
);

CREATE TABLE thresholds (
    site_id      text NOT NULL,
    item_id      text NOT NULL,
    -- Empty: the item over the whole site.
    location_id  text NOT NULL,
    safety_stock bigint NOT NULL CHECK (safety_stock >= 0),
    overstock    bigint NOT NULL CHECK (overstock >= 0),
    state        text NOT NULL CHECK (state IN ('NORMAL', 'BELOW_SAFETY_STOCK', 'ABOVE_OVERSTOCK')),
    PRIMARY KEY (site_id, item_id, location_id),
    CHECK (overstock = 0 OR overstock > safety_stock)
);

-- Genealogy: what each station consumed and produced, and when. The lots that
-- went into a produced lot are those its station consumed while making it,
-- plus the lot of each input in use when it started.
CREATE TABLE consumptions (
    id          bigserial PRIMARY KEY,
    site_id     text NOT NULL,
    station_id  text NOT NULL,
    item_id     text NOT NULL,
    lot_id      text NOT NULL,
    quantity    bigint NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX consumptions_at_station ON consumptions (site_id, station_id, item_id, occurred_at);
CREATE INDEX consumptions_of_lot ON consumptions (site_id, lot_id);

CREATE TABLE productions (
    site_id      text NOT NULL,
    lot_id       text NOT NULL,
    item_id      text NOT NULL,
    station_id   text NOT NULL,
    started_at   timestamptz NOT NULL,
    completed_at timestamptz NOT NULL,
    PRIMARY KEY (site_id, lot_id, station_id)
);
CREATE INDEX productions_at_station ON productions (site_id, station_id, completed_at);

CREATE VIEW lot_inputs AS
    SELECT p.site_id, p.lot_id AS made_lot_id, p.item_id AS made_item_id, p.station_id,
           c.lot_id, c.item_id
    FROM productions p
    JOIN consumptions c ON c.site_id = p.site_id AND c.station_id = p.station_id
    WHERE c.occurred_at <= p.completed_at
      AND (c.occurred_at > p.started_at
           OR c.occurred_at = (SELECT max(c2.occurred_at) FROM consumptions c2
                               WHERE c2.site_id = c.site_id AND c2.station_id = c.station_id
                                 AND c2.item_id = c.item_id AND c2.occurred_at <= p.started_at))
    GROUP BY p.site_id, p.lot_id, p.item_id, p.station_id, c.lot_id, c.item_id;
