-- The analysis reads the trips of a window: those raised in it, and those begun
-- before it that ended in it or have not ended.
CREATE INDEX signals_by_raised_at ON signals (site_id, raised_at);
CREATE INDEX signals_by_completed_at ON signals (site_id, completed_at);

-- A loop's automatic sizing: the planner's bounds and pace.
CREATE TABLE sizing_policies (
    site_id        text NOT NULL,
    loop_id        text NOT NULL,
    enabled        boolean NOT NULL,
    min_cards      integer NOT NULL CHECK (min_cards > 0),
    max_cards      integer NOT NULL CHECK (max_cards >= min_cards),
    -- One of the two is set: a safety factor, or the service level it comes from.
    safety_factor  double precision,
    service_level  double precision,
    period         interval NOT NULL,
    "window"       interval NOT NULL,
    checked_at     timestamptz,
    resized_at     timestamptz,
    PRIMARY KEY (site_id, loop_id),
    FOREIGN KEY (site_id, loop_id) REFERENCES loops,
    CHECK ((safety_factor IS NULL) <> (service_level IS NULL))
);
CREATE INDEX sizing_policies_enabled ON sizing_policies (checked_at) WHERE enabled;
