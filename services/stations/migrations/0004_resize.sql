-- Loops can be resized. card_count stays the cards in the loop; cards_to_retire
-- counts those still to retire as they come back empty.
ALTER TABLE loops ADD COLUMN cards_to_retire integer NOT NULL DEFAULT 0;
ALTER TABLE loops ADD CONSTRAINT loops_keep_a_card
    CHECK (cards_to_retire >= 0 AND cards_to_retire < card_count);

ALTER TABLE cards DROP CONSTRAINT cards_state_check;
ALTER TABLE cards ADD CONSTRAINT cards_state_check
    CHECK (state IN ('FULL', 'EMPTY', 'IN_PROCESS', 'RETIRED'));

-- A card retired before its signal was started withdraws the signal; terminals
-- that may have seen it are told, with a sequence of the station's own.
ALTER TABLE signals DROP CONSTRAINT signals_state_check;
ALTER TABLE signals ADD CONSTRAINT signals_state_check
    CHECK (state IN ('OPEN', 'STARTED', 'COMPLETED', 'WITHDRAWN'));
ALTER TABLE signals ADD COLUMN withdrawn_sequence bigint;
DROP INDEX signals_one_active_per_card;
CREATE UNIQUE INDEX signals_one_active_per_card ON signals (site_id, card_code)
    WHERE state IN ('OPEN', 'STARTED');
CREATE INDEX signals_withdrawn ON signals (site_id, station_id, withdrawn_sequence)
    WHERE state = 'WITHDRAWN';
