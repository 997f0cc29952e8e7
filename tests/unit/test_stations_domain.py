"""The card state machine and the loop arithmetic, with no I/O."""

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition
from services.core.events import CardEmptied, CardFilled
from services.stations.domain import (
    INVALID_CARD_STATE,
    OVERPRODUCTION_BLOCKED,
    WRONG_STATION,
    Board,
    Card,
    CardState,
    Loop,
    LoopStatus,
    Signal,
    SignalState,
    StationStatus,
)

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=7)
SUPPLIER = "PRESS-1"
CONSUMER = "ASSY-1"

LOOP = Loop(
    site_id="PLANT-A",
    loop_id="L1",
    item_id="BRACKET",
    supplier_station_id=SUPPLIER,
    consumer_station_id=CONSUMER,
    supermarket_location_id="SM-1",
    container_quantity=10,
    card_count=3,
)


def card_in(state: CardState) -> Card:
    """The first card of LOOP, moved into `state` through the real transitions."""
    card = LOOP.new_cards(CardState.FULL, NOW)[0]
    if state is not CardState.FULL:
        card.scan(LOOP, CONSUMER, NOW)
    if state is CardState.IN_PROCESS:
        card.start(LOOP, SUPPLIER, NOW)
    return card


# The happy path


def test_scan_by_consumer_empties_a_full_card_and_reports_what_was_taken():
    card = card_in(CardState.FULL)

    emptied = card.scan(LOOP, CONSUMER, LATER)

    assert emptied == CardEmptied(
        loop_id="L1",
        card_code="L1-001",
        item_id="BRACKET",
        location_id="SM-1",
        lot_id="L1-OPENING",
        quantity=10,
        consumer_station_id=CONSUMER,
    )
    assert (card.state, card.lot_id, card.quantity) == (CardState.EMPTY, "", 0)
    assert card.updated_at == LATER
    assert card.emptied_at == LATER


def test_scan_reports_the_lot_and_quantity_of_a_partial_container():
    card = card_in(CardState.IN_PROCESS)
    card.complete(LOOP, SUPPLIER, "LOT-7", 4, NOW)

    emptied = card.scan(LOOP, CONSUMER, LATER)

    assert (emptied.lot_id, emptied.quantity) == ("LOT-7", 4)


def test_start_by_supplier_puts_an_empty_card_in_process():
    card = card_in(CardState.EMPTY)

    card.start(LOOP, SUPPLIER, LATER)

    assert card.state is CardState.IN_PROCESS
    assert card.updated_at == card.started_at == LATER
    assert card.emptied_at == NOW  # the lead time still runs from the scan


def test_complete_by_supplier_fills_the_card_with_the_new_lot():
    card = card_in(CardState.IN_PROCESS)

    filled = card.complete(LOOP, SUPPLIER, "LOT-42", 10, LATER)

    assert filled == CardFilled(
        loop_id="L1",
        card_code="L1-001",
        item_id="BRACKET",
        location_id="SM-1",
        lot_id="LOT-42",
        quantity=10,
        supplier_station_id=SUPPLIER,
        started_at=NOW,
    )
    assert (card.state, card.lot_id, card.quantity) == (CardState.FULL, "LOT-42", 10)
    assert card.updated_at == LATER


def test_complete_allows_a_partial_container():
    card = card_in(CardState.IN_PROCESS)

    filled = card.complete(LOOP, SUPPLIER, "LOT-1", 3, LATER)

    assert filled.quantity == 3
    assert (card.state, card.quantity) == (CardState.FULL, 3)


# Refusals


def test_scan_at_the_supplier_station_is_refused_as_wrong_station():
    card = card_in(CardState.FULL)

    with pytest.raises(FailedPrecondition) as refused:
        card.scan(LOOP, SUPPLIER, LATER)

    assert refused.value.reason == WRONG_STATION
    assert refused.value.metadata["expected_station_id"] == CONSUMER
    assert refused.value.metadata["station_id"] == SUPPLIER
    assert card.state is CardState.FULL


@pytest.mark.parametrize(
    ("state", "act"),
    [
        (CardState.EMPTY, lambda c: c.start(LOOP, CONSUMER, LATER)),
        (CardState.IN_PROCESS, lambda c: c.complete(LOOP, CONSUMER, "LOT-1", 1, LATER)),
        (CardState.IN_PROCESS, lambda c: c.complete(LOOP, "OTHER", "LOT-1", 1, LATER)),
    ],
)
def test_supplier_actions_elsewhere_are_refused_as_wrong_station(state, act):
    card = card_in(state)

    with pytest.raises(FailedPrecondition) as refused:
        act(card)

    assert refused.value.reason == WRONG_STATION
    assert refused.value.metadata["expected_station_id"] == SUPPLIER
    assert card.state is state


@pytest.mark.parametrize(
    ("state", "act"),
    [
        (CardState.EMPTY, lambda c: c.scan(LOOP, CONSUMER, LATER)),
        (CardState.IN_PROCESS, lambda c: c.scan(LOOP, CONSUMER, LATER)),
        (CardState.FULL, lambda c: c.start(LOOP, SUPPLIER, LATER)),
        (CardState.IN_PROCESS, lambda c: c.start(LOOP, SUPPLIER, LATER)),
    ],
)
def test_actions_in_the_wrong_state_are_refused_with_the_card_state(state, act):
    card = card_in(state)
    before = dataclasses.replace(card)

    with pytest.raises(FailedPrecondition) as refused:
        act(card)

    assert refused.value.reason == INVALID_CARD_STATE
    assert refused.value.metadata["card_state"] == state.value
    assert refused.value.metadata["card_code"] == "L1-001"
    assert card == before


@pytest.mark.parametrize("state", [CardState.FULL, CardState.EMPTY])
def test_completing_a_card_not_in_process_is_overproduction(state):
    card = card_in(state)
    before = dataclasses.replace(card)

    with pytest.raises(FailedPrecondition) as refused:
        card.complete(LOOP, SUPPLIER, "LOT-9", 1, LATER)

    assert refused.value.reason == OVERPRODUCTION_BLOCKED
    assert refused.value.metadata["card_state"] == state.value
    assert card == before


def test_completing_more_than_the_container_quantity_is_overproduction():
    card = card_in(CardState.IN_PROCESS)
    before = dataclasses.replace(card)

    with pytest.raises(FailedPrecondition) as refused:
        card.complete(LOOP, SUPPLIER, "LOT-9", 11, LATER)

    assert refused.value.reason == OVERPRODUCTION_BLOCKED
    assert refused.value.metadata["container_quantity"] == "10"
    assert refused.value.metadata["quantity"] == "11"
    assert card == before


# Loop arithmetic


def test_cap_units_is_cards_times_container_quantity():
    assert LOOP.cap_units == 30
    assert dataclasses.replace(LOOP, card_count=7, container_quantity=12).cap_units == 84


def test_card_codes_are_numbered_from_one_with_three_digits():
    assert LOOP.card_codes() == ["L1-001", "L1-002", "L1-003"]
    many = dataclasses.replace(LOOP, card_count=999).card_codes()
    assert (len(set(many)), many[-1]) == (999, "L1-999")


def test_new_full_cards_hold_the_opening_lot_and_a_full_container():
    cards = LOOP.new_cards(CardState.FULL, NOW)

    assert [c.card_code for c in cards] == LOOP.card_codes()
    for card in cards:
        assert (card.site_id, card.loop_id, card.state) == ("PLANT-A", "L1", CardState.FULL)
        assert (card.lot_id, card.quantity) == ("L1-OPENING", 10)
        assert (card.updated_at, card.emptied_at) == (NOW, None)


def test_new_empty_cards_hold_nothing_and_start_their_lead_time():
    cards = LOOP.new_cards(CardState.EMPTY, NOW)

    assert [c.card_code for c in cards] == LOOP.card_codes()
    for card in cards:
        assert (card.state, card.lot_id, card.quantity) == (CardState.EMPTY, "", 0)
        assert (card.updated_at, card.emptied_at) == (NOW, NOW)


def test_signal_is_raised_at_the_supplier_for_a_full_container():
    card = card_in(CardState.EMPTY)

    signal = Signal.raise_for(LOOP, card, LATER)

    assert signal == Signal(
        site_id="PLANT-A",
        station_id=SUPPLIER,
        sequence=0,  # numbered as it is stored
        loop_id="L1",
        card_code="L1-001",
        item_id="BRACKET",
        quantity=10,
        state=SignalState.OPEN,
        raised_at=LATER,
    )


def status(loop: Loop, full: int, in_process: int, units_full: int) -> LoopStatus:
    return LoopStatus(
        loop=loop,
        full_cards=full,
        empty_cards=loop.card_count - full - in_process,
        in_process_cards=in_process,
        units_in_supermarket=units_full,
        units_in_process=in_process * loop.container_quantity,
        quarantined_cards=0,
    )


def test_board_sums_each_supplier_station_and_sorts_them():
    a1 = status(dataclasses.replace(LOOP, loop_id="A1", supplier_station_id="B-ST"), 1, 1, 10)
    a2 = status(
        dataclasses.replace(LOOP, loop_id="A2", supplier_station_id="B-ST", card_count=5), 2, 2, 15
    )
    b1 = status(dataclasses.replace(LOOP, loop_id="B1", supplier_station_id="A-ST"), 0, 3, 0)

    board = Board.of([a1, a2, b1], {"B-ST": 4, "ELSEWHERE": 9})

    assert board.loops == [a1, a2, b1]
    assert board.stations == [
        StationStatus("A-ST", open_signals=0, in_process_cards=3, wip_units=30, cap_units=30),
        StationStatus("B-ST", open_signals=4, in_process_cards=3, wip_units=55, cap_units=80),
    ]


def test_board_of_no_loops_is_empty():
    assert Board.of([], {"X": 1}) == Board(loops=[], stations=[])


# The invariant


def units_held(loop: Loop, cards: list[Card]) -> int:
    """Units in the supermarket plus units in process, as the board counts them."""
    in_supermarket = sum(c.quantity for c in cards if c.state is CardState.FULL)
    in_process = sum(loop.container_quantity for c in cards if c.state is CardState.IN_PROCESS)
    return in_supermarket + in_process


# Which (action, state, station) may succeed, and the state each success leads to.
LEGAL = {
    ("scan", CardState.FULL, CONSUMER): CardState.EMPTY,
    ("start", CardState.EMPTY, SUPPLIER): CardState.IN_PROCESS,
    ("complete", CardState.IN_PROCESS, SUPPLIER): CardState.FULL,
}


@pytest.mark.parametrize("seed", range(20))
def test_random_walk_never_holds_more_than_the_cap(seed):
    rng = random.Random(seed)
    loop = dataclasses.replace(
        LOOP, card_count=rng.randint(1, 6), container_quantity=rng.randint(1, 20)
    )
    cards = loop.new_cards(rng.choice([CardState.FULL, CardState.EMPTY]), NOW)
    done = {"scan": 0, "start": 0, "complete": 0}

    for step in range(400):
        card = rng.choice(cards)
        before = dataclasses.replace(card)
        station = rng.choice([SUPPLIER, CONSUMER, "STRANGER"])
        action = rng.choice(list(done))
        quantity = rng.randint(1, loop.container_quantity + 3)
        now = NOW + timedelta(seconds=step)
        allowed = LEGAL.get((action, card.state, station))
        if action == "complete" and quantity > loop.container_quantity:
            allowed = None
        try:
            if action == "scan":
                card.scan(loop, station, now)
            elif action == "start":
                card.start(loop, station, now)
            else:
                card.complete(loop, station, f"LOT-{step}", quantity, now)
        except FailedPrecondition:
            assert allowed is None, (action, before.state, station, quantity)
            assert card == before, "a refused transition must not change the card"
        else:
            assert card.state is allowed, (action, before.state, station, quantity)
            done[action] += 1

        assert units_held(loop, cards) <= loop.cap_units
        assert all(0 <= c.quantity <= loop.container_quantity for c in cards)
        assert all(c.quantity == 0 for c in cards if c.state is not CardState.FULL)

    assert all(n > 0 for n in done.values()), done


def test_a_loop_defined_full_tells_stock_its_cap_and_opening_stock():
    defined = LOOP.defined(CardState.FULL)
    assert (defined.location_id, defined.item_id, defined.cap_units) == ("SM-1", "BRACKET", 30)
    assert (defined.opening_lot_id, defined.opening_units) == ("L1-OPENING", 30)


def test_a_loop_defined_empty_has_no_opening_stock():
    defined = LOOP.defined(CardState.EMPTY)
    assert (defined.opening_lot_id, defined.opening_units) == ("", 0)
