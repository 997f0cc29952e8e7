-- Production instructions of orders, queued at the pacemaker station.
CREATE TABLE instructions (
    site_id        text NOT NULL,
    instruction_id text NOT NULL,
    erp_order_id   text NOT NULL,
    station_id     text NOT NULL,
    item_id        text NOT NULL,
    location_id    text NOT NULL,
    quantity       bigint NOT NULL CHECK (quantity > 0),
    due_time       timestamptz NOT NULL,
    priority       integer NOT NULL,
    state          text NOT NULL CHECK (state IN ('OPEN', 'STARTED', 'COMPLETED', 'WITHDRAWN')),
    -- The station sequence it was last announced with, and that of its withdrawal.
    sequence           bigint NOT NULL,
    withdrawn_sequence bigint,
    lot_id         text NOT NULL DEFAULT '',
    made_quantity  bigint NOT NULL DEFAULT 0,
    released_at    timestamptz NOT NULL,
    PRIMARY KEY (site_id, instruction_id),
    FOREIGN KEY (site_id, station_id) REFERENCES stations,
    CHECK ((state = 'WITHDRAWN') = (withdrawn_sequence IS NOT NULL))
);
CREATE INDEX instructions_queue ON instructions (site_id, station_id, due_time, priority DESC, sequence)
    WHERE state = 'OPEN';
CREATE INDEX instructions_by_order ON instructions (site_id, erp_order_id);

-- The station's sequence now numbers all it is sent: signals, instructions, withdrawals.
ALTER TABLE stations RENAME COLUMN last_signal_sequence TO last_sequence;
