"""Quality holds on lots: a held container is not consumed; a written-off one is gone."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition
from services.core.events import CardEmptied
from services.stations.domain import (
    INVALID_CARD_STATE,
    LOT_QUARANTINED,
    WRONG_STATION,
    CardState,
    Loop,
    LotHold,
    LotHoldNotice,
    LotHoldStatus,
    cards_by_consumer,
)

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=7)
LOOP = Loop(
    site_id="PLANT-A",
    loop_id="L1",
    item_id="BRACKET",
    supplier_station_id="PRESS-1",
    consumer_station_id="ASSY-1",
    supermarket_location_id="SM-1",
    container_quantity=10,
    card_count=3,
)
HOLD = LotHold("PLANT-A", "L1-OPENING", "BRACKET", "burrs on the edge", "D-7", NOW)


def held_card():
    card = LOOP.new_cards(CardState.FULL, NOW)[0]
    card.hold = HOLD
    return card


def test_a_container_of_a_held_lot_is_refused_and_the_card_stays_full():
    card = held_card()
    before = dataclasses.replace(card)

    with pytest.raises(FailedPrecondition) as refused:
        card.scan(LOOP, "ASSY-1", LATER)

    assert refused.value.reason == LOT_QUARANTINED
    assert refused.value.metadata == {
        "card_code": "L1-001",
        "lot_id": "L1-OPENING",
        "hold_reason": "burrs on the edge",
    }
    assert "set this container aside" in refused.value.message
    assert card == before


def test_the_station_and_the_state_are_checked_before_the_hold():
    card = held_card()
    with pytest.raises(FailedPrecondition) as elsewhere:
        card.scan(LOOP, "PRESS-1", LATER)
    assert elsewhere.value.reason == WRONG_STATION


def test_without_a_hold_the_same_container_is_consumed():
    card = held_card()
    card.hold = None

    emptied = card.scan(LOOP, "ASSY-1", LATER)

    assert (card.state, emptied.lot_id, emptied.written_off) == (
        CardState.EMPTY,
        "L1-OPENING",
        False,
    )


def test_a_written_off_container_empties_its_card_as_if_consumed_by_no_station():
    card = held_card()

    emptied = card.write_off(LOOP, LATER)

    assert emptied == CardEmptied(
        loop_id="L1",
        card_code="L1-001",
        item_id="BRACKET",
        location_id="SM-1",
        lot_id="L1-OPENING",
        quantity=10,
        consumer_station_id="",
        written_off=True,
    )
    assert (card.state, card.lot_id, card.quantity, card.hold) == (CardState.EMPTY, "", 0, None)
    # The replacement's lead time runs from the write-off.
    assert card.updated_at == card.emptied_at == LATER


@pytest.mark.parametrize("state", [CardState.EMPTY, CardState.IN_PROCESS])
def test_only_a_full_container_can_be_written_off(state):
    card = LOOP.new_cards(CardState.EMPTY, NOW)[0]
    if state is CardState.IN_PROCESS:
        card.start(LOOP, "PRESS-1", NOW)
    before = dataclasses.replace(card)

    with pytest.raises(FailedPrecondition) as refused:
        card.write_off(LOOP, LATER)

    assert refused.value.reason == INVALID_CARD_STATE
    assert card == before


def test_a_written_off_card_goes_round_again_and_its_new_lot_knows_when_it_was_started():
    card = held_card()
    card.write_off(LOOP, NOW)
    card.start(LOOP, "PRESS-1", LATER)

    filled = card.complete(LOOP, "PRESS-1", "LOT-2", 10, LATER + timedelta(hours=1))

    assert (card.state, filled.lot_id, filled.started_at) == (CardState.FULL, "LOT-2", LATER)


def test_the_cards_of_a_lot_are_grouped_by_the_consumer_station_of_their_loop():
    other = dataclasses.replace(LOOP, loop_id="L2", consumer_station_id="ASSY-0")
    loops = {"L1": LOOP, "L2": other}
    cards = [*LOOP.new_cards(CardState.FULL, NOW)[::-1], *other.new_cards(CardState.FULL, NOW)[:1]]

    grouped = cards_by_consumer(cards, loops)

    assert list(grouped.items()) == [
        ("ASSY-0", ["L2-001"]),
        ("ASSY-1", ["L1-001", "L1-002", "L1-003"]),
    ]
    assert cards_by_consumer([], loops) == {}


def test_a_hold_notice_is_sent_with_one_sequence_and_lifted_with_a_later_one():
    held = LotHoldNotice.held(HOLD, "ASSY-1", ["L1-001", "L1-002"], 7)

    lifted = held.lifted(LotHoldStatus.WRITTEN_OFF, ["L1-002"], 9)

    assert (held.status, held.sequence, held.held_sequence) == (LotHoldStatus.HELD, 7, 7)
    assert (held.lot_id, held.item_id, held.reason) == ("L1-OPENING", "BRACKET", HOLD.reason)
    assert (lifted.status, lifted.card_codes) == (LotHoldStatus.WRITTEN_OFF, ["L1-002"])
    assert (lifted.sequence, lifted.held_sequence) == (9, 7)
