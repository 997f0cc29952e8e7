-- When the supplier started what it made: stock traces which lots went into a
-- lot by what its station consumed from then on.
ALTER TABLE cards ADD COLUMN started_at timestamptz;
ALTER TABLE instructions ADD COLUMN started_at timestamptz;
-- A card already in process was started when its signal was; an instruction
-- already started has no record of when, and stays NULL.
UPDATE cards c SET started_at = s.started_at
    FROM signals s
    WHERE s.site_id = c.site_id AND s.card_code = c.card_code AND s.state = 'STARTED';

-- Lots quality has on hold (quarantined in stock): a container holding one may
-- not be consumed. Stock names the site and the lot, which may reach us before
-- anything else of that site does, hence no foreign key.
CREATE TABLE lot_holds (
    site_id        text NOT NULL,
    lot_id         text NOT NULL,
    item_id        text NOT NULL,
    reason         text NOT NULL,
    disposition_id text NOT NULL,
    held_at        timestamptz NOT NULL,
    PRIMARY KEY (site_id, lot_id)
);
CREATE INDEX cards_by_lot ON cards (site_id, lot_id) WHERE state = 'FULL';

-- What a consumer station's terminals are told of a hold on a lot in its
-- supermarket: announced with one station sequence, and lifted (released or
-- written off) with a later one, like an instruction and its withdrawal.
CREATE TABLE lot_hold_notices (
    site_id         text NOT NULL,
    station_id      text NOT NULL,
    held_sequence   bigint NOT NULL,
    lot_id          text NOT NULL,
    item_id         text NOT NULL,
    reason          text NOT NULL,
    -- The station's cards holding the lot when held; when lifted, those released
    -- or emptied by the write-off.
    card_codes      text[] NOT NULL,
    status          text NOT NULL CHECK (status IN ('HELD', 'RELEASED', 'WRITTEN_OFF')),
    lifted_sequence bigint,
    PRIMARY KEY (site_id, station_id, held_sequence),
    FOREIGN KEY (site_id, station_id) REFERENCES stations,
    CHECK ((status = 'HELD') = (lifted_sequence IS NULL))
);
CREATE UNIQUE INDEX lot_hold_notices_one_held ON lot_hold_notices (site_id, lot_id, station_id)
    WHERE status = 'HELD';
