"""Resizing a loop, with no I/O: more cards ask at once, fewer retire as they empty."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition
from services.core.events import CardRetired, LoopResized
from services.stations.domain import INVALID_CARD_STATE, Card, CardState, Loop

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)

LOOP = Loop(
    site_id="PLANT-A",
    loop_id="L1",
    item_id="BRACKET",
    supplier_station_id="PRESS",
    consumer_station_id="ASSY",
    supermarket_location_id="SM-1",
    container_quantity=10,
    card_count=4,
)


def cards(*states: CardState) -> list[Card]:
    """The loop's cards in these states (the first len(states) of them)."""
    made = LOOP.new_cards(CardState.FULL, NOW)[: len(states)]
    for card, state in zip(made, states, strict=True):
        if state is not CardState.FULL:
            card.scan(LOOP, LOOP.consumer_station_id, NOW)
        if state is CardState.IN_PROCESS:
            card.start(LOOP, LOOP.supplier_station_id, NOW)
    return made


def test_growing_adds_empty_cards_numbered_after_every_card_the_loop_had():
    resize = LOOP.resize(6, [], numbered=5, now=LATER)

    assert [c.card_code for c in resize.added] == ["L1-006", "L1-007"]
    assert {c.state for c in resize.added} == {CardState.EMPTY}
    assert all(c.emptied_at == LATER and c.quantity == 0 for c in resize.added)
    assert resize.retired == []
    assert (resize.loop.card_count, resize.loop.target_card_count) == (6, 6)
    assert resize.loop.cap_units == 60


def test_shrinking_retires_waiting_empty_cards_at_once_in_the_order_given():
    waiting = cards(CardState.EMPTY, CardState.EMPTY, CardState.EMPTY)

    resize = LOOP.resize(2, waiting, numbered=4, now=LATER)

    assert [c.card_code for c in resize.retired] == ["L1-001", "L1-002"]
    assert [c.state for c in waiting] == [CardState.RETIRED, CardState.RETIRED, CardState.EMPTY]
    assert resize.added == []
    assert (resize.loop.card_count, resize.loop.cards_to_retire) == (2, 0)
    assert resize.loop.cap_units == 20


def test_shrinking_without_empty_cards_leaves_the_retirements_for_later():
    resize = LOOP.resize(1, [], numbered=4, now=LATER)

    assert resize.retired == []
    assert (resize.loop.card_count, resize.loop.cards_to_retire) == (4, 3)
    assert resize.loop.target_card_count == 1
    # The cap stays what the cards in the loop may hold: nothing is thrown away.
    assert resize.loop.cap_units == LOOP.cap_units


def test_a_card_coming_back_empty_retires_while_retirements_are_pending():
    shrinking = dataclasses.replace(LOOP, cards_to_retire=2)
    (card,) = cards(CardState.EMPTY)

    smaller, retired = shrinking.take_back(card, LATER)

    assert card.state is CardState.RETIRED
    assert (smaller.card_count, smaller.cards_to_retire) == (3, 1)
    assert retired == CardRetired("L1", "L1-001", "BRACKET", "SM-1", 30)


def test_a_card_coming_back_empty_asks_again_when_nothing_is_to_retire():
    (card,) = cards(CardState.EMPTY)

    same, retired = LOOP.take_back(card, LATER)

    assert same is LOOP and retired is None
    assert card.state is CardState.EMPTY


@pytest.mark.parametrize("state", [CardState.FULL, CardState.IN_PROCESS])
def test_a_full_container_or_one_being_made_never_retires(state):
    (card,) = cards(state)

    with pytest.raises(FailedPrecondition) as refused:
        card.retire(LATER)

    assert refused.value.reason == INVALID_CARD_STATE
    assert card.state is state


def test_growing_again_cancels_retirements_still_pending():
    shrinking = dataclasses.replace(LOOP, cards_to_retire=2)

    resize = shrinking.resize(3, [], numbered=4, now=LATER)

    assert resize.added == []
    assert (resize.loop.card_count, resize.loop.cards_to_retire) == (4, 1)
    back = shrinking.resize(5, [], numbered=4, now=LATER)
    assert [c.card_code for c in back.added] == ["L1-005"]
    assert (back.loop.card_count, back.loop.cards_to_retire) == (5, 0)


def test_a_retired_card_is_refused_every_action():
    (card,) = cards(CardState.EMPTY)
    card.retire(LATER)

    for action in (
        lambda: card.scan(LOOP, LOOP.consumer_station_id, LATER),
        lambda: card.start(LOOP, LOOP.supplier_station_id, LATER),
        lambda: card.retire(LATER),
    ):
        with pytest.raises(FailedPrecondition) as refused:
            action()
        assert refused.value.reason == INVALID_CARD_STATE
    with pytest.raises(FailedPrecondition):
        card.complete(LOOP, LOOP.supplier_station_id, "LOT", 10, LATER)
    assert card.state is CardState.RETIRED


def test_the_event_says_the_new_cap_and_which_cards_came_and_went():
    waiting = cards(CardState.EMPTY)

    event = LOOP.resize(2, waiting, numbered=4, now=LATER).resized("demand down")

    assert event == LoopResized(
        loop_id="L1",
        item_id="BRACKET",
        location_id="SM-1",
        cap_units=30,
        card_count=3,
        target_card_count=2,
        added_card_codes=[],
        retired_card_codes=["L1-001"],
        reason="demand down",
    )
