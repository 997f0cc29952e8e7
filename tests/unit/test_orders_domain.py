"""The order state machine and instruction splitting, with no I/O."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.events import OrderReduced, OrderReleased, ReleasedInstruction
from services.orders.domain import (
    INSTRUCTION_NUMBERS_EXHAUSTED,
    MAX_CONTAINERS_PER_ORDER,
    MAX_INSTRUCTIONS_PER_EVENT,
    ORDER_CLOSED,
    QUANTITY_BELOW_MADE,
    Order,
    OrderState,
    Product,
    instruction_id,
    split,
)

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)
DUE = datetime(2024, 5, 10, 16, 0, tzinfo=UTC)

PRODUCT = Product(
    site_id="PLANT-A",
    item_id="FRAME",
    pacemaker_station_id="ASSY",
    container_quantity=100,
    finished_goods_location_id="FG-1",
)


def order(quantity: int = 800, state: OrderState = OrderState.OPEN) -> Order:
    """An order of PRODUCT moved into `state` through the real transitions."""
    new = Order.create(PRODUCT, "SO-1", quantity, DUE, 5, NOW)
    if state is not OrderState.OPEN:
        new.release(PRODUCT, NOW)
    if state is OrderState.COMPLETED:
        new.record_made(quantity, NOW)
    if state is OrderState.CANCELLED:
        new.cancel("customer", NOW)
    assert new.state is state
    return new


def instructions(events) -> list[tuple[str, int]]:
    return [
        (i.instruction_id, i.quantity)
        for e in events
        if isinstance(e, OrderReleased)
        for i in e.instructions
    ]


# Splitting


def test_800_in_containers_of_100_is_8_full_instructions():
    assert split("SO-1", 800, 100) == [
        ReleasedInstruction(f"SO-1-{n:04d}", 100) for n in range(1, 9)
    ]


def test_750_in_containers_of_100_is_7_full_and_one_of_50():
    got = split("SO-1", 750, 100)
    assert [i.quantity for i in got] == [100] * 7 + [50]
    assert got[-1].instruction_id == "SO-1-0008"


def test_less_than_a_container_is_one_partial_instruction():
    assert split("SO-1", 3, 100) == [ReleasedInstruction("SO-1-0001", 3)]


def test_numbering_continues_after_a_given_number():
    assert [i.instruction_id for i in split("SO-1", 150, 100, after_number=8)] == [
        "SO-1-0009",
        "SO-1-0010",
    ]


def test_instruction_ids_of_the_longest_erp_id_fit_in_64():
    assert len(instruction_id("X" * 48, MAX_CONTAINERS_PER_ORDER)) == 53


# Creating


def test_a_new_order_is_open_with_nothing_made_or_released():
    new = Order.create(PRODUCT, "SO-1", 800, DUE, 5, NOW)
    assert (new.state, new.made_quantity, new.released_quantity) == (OrderState.OPEN, 0, 0)
    assert (new.item_id, new.site_id, new.created_at, new.updated_at) == (
        "FRAME",
        "PLANT-A",
        NOW,
        NOW,
    )
    assert new.open_units == 800


def test_a_past_due_order_is_accepted():
    late = Order.create(PRODUCT, "SO-1", 10, NOW - timedelta(days=30), 0, NOW)
    assert late.due_time < late.created_at


def test_an_order_needing_too_many_containers_is_refused_on_quantity():
    most = MAX_CONTAINERS_PER_ORDER * 100
    assert Order.create(PRODUCT, "SO-1", most, DUE, 0, NOW).quantity == most
    with pytest.raises(InvalidArgument) as refused:
        Order.create(PRODUCT, "SO-1", most + 1, DUE, 0, NOW)
    assert refused.value.field == "quantity"


def test_same_content_compares_what_the_erp_sends():
    first = order()
    assert first.same_content(dataclasses.replace(first, created_at=LATER, updated_at=LATER))
    for change in (
        {"quantity": 801},
        {"due_time": DUE + timedelta(seconds=1)},
        {"priority": 6},
        {"item_id": "OTHER"},
    ):
        assert not first.same_content(dataclasses.replace(first, **change)), change


# Releasing


def test_release_tells_the_pacemaker_one_instruction_per_container():
    released = order(750)

    events = released.release(PRODUCT, LATER)

    assert released.state is OrderState.RELEASED
    assert (released.released_quantity, released.last_instruction_number) == (750, 8)
    assert released.updated_at == LATER
    assert events == [
        OrderReleased(
            erp_order_id="SO-1",
            item_id="FRAME",
            pacemaker_station_id="ASSY",
            location_id="FG-1",
            due_time=DUE,
            priority=5,
            instructions=split("SO-1", 750, 100),
            order_quantity=750,
        )
    ]


def test_releasing_a_released_order_again_changes_nothing():
    released = order(state=OrderState.RELEASED)
    before = dataclasses.replace(released)

    assert released.release(PRODUCT, LATER) == []
    assert released == before


@pytest.mark.parametrize("state", [OrderState.COMPLETED, OrderState.CANCELLED])
def test_a_closed_order_cannot_be_released(state):
    closed = order(state=state)
    with pytest.raises(FailedPrecondition) as refused:
        closed.release(PRODUCT, LATER)
    assert refused.value.reason == ORDER_CLOSED
    assert refused.value.metadata["order_state"] == state.value


def test_a_big_release_is_told_in_several_events_that_together_cover_it():
    big = Order.create(PRODUCT, "SO-1", 25_050, DUE, 0, NOW)

    events = big.release(PRODUCT, LATER)

    assert [len(e.instructions) for e in events if isinstance(e, OrderReleased)] == [
        MAX_INSTRUCTIONS_PER_EVENT,
        MAX_INSTRUCTIONS_PER_EVENT,
        51,
    ]
    assert instructions(events) == [
        (i.instruction_id, i.quantity) for i in split("SO-1", 25_050, 100)
    ]


# Changing the quantity


def test_changing_an_open_order_tells_stations_nothing():
    open_order = order(800)
    assert open_order.change_quantity(600, PRODUCT, LATER) == []
    assert (open_order.quantity, open_order.state, open_order.updated_at) == (
        600,
        OrderState.OPEN,
        LATER,
    )
    # Released later, it releases the new quantity.
    assert len(instructions(open_order.release(PRODUCT, LATER))) == 6


def test_a_cut_of_a_released_order_withdraws_what_was_not_started():
    released = order(800, OrderState.RELEASED)

    events = released.change_quantity(600, PRODUCT, LATER)

    assert events == [OrderReduced(erp_order_id="SO-1", quantity=600)]
    assert (released.quantity, released.released_quantity) == (600, 600)
    assert released.last_instruction_number == 8
    assert released.state is OrderState.RELEASED


def test_an_increase_releases_only_the_added_quantity_continuing_the_numbering():
    released = order(750, OrderState.RELEASED)  # 7 x 100 + 50: -0001 .. -0008

    events = released.change_quantity(900, PRODUCT, LATER)

    assert instructions(events) == [("SO-1-0009", 100), ("SO-1-0010", 50)]
    assert (released.quantity, released.released_quantity) == (900, 900)
    assert released.last_instruction_number == 10


def test_an_increase_after_a_cut_releases_beyond_the_cut_quantity():
    released = order(800, OrderState.RELEASED)
    released.change_quantity(600, PRODUCT, LATER)

    events = released.change_quantity(650, PRODUCT, LATER)

    assert instructions(events) == [("SO-1-0009", 50)]
    assert released.released_quantity == 650


def test_the_same_quantity_is_no_change():
    released = order(800, OrderState.RELEASED)
    before = dataclasses.replace(released)
    assert released.change_quantity(800, PRODUCT, LATER) == []
    assert released == before


def test_a_quantity_below_what_was_made_is_refused_with_the_made_quantity():
    released = order(800, OrderState.RELEASED)
    released.record_made(300, NOW)
    before = dataclasses.replace(released)

    with pytest.raises(FailedPrecondition) as refused:
        released.change_quantity(299, PRODUCT, LATER)

    assert refused.value.reason == QUANTITY_BELOW_MADE
    assert refused.value.metadata["made_quantity"] == "300"
    assert released == before


def test_cutting_to_what_was_made_completes_the_order_and_withdraws_the_rest():
    released = order(800, OrderState.RELEASED)
    released.record_made(300, NOW)

    events = released.change_quantity(300, PRODUCT, LATER)

    assert events == [OrderReduced(erp_order_id="SO-1", quantity=300)]
    assert released.state is OrderState.COMPLETED
    assert released.open_units == 0


def test_an_increase_that_needs_too_many_containers_is_refused_and_changes_nothing():
    released = order(800, OrderState.RELEASED)
    before = dataclasses.replace(released)
    with pytest.raises(InvalidArgument) as refused:
        released.change_quantity(MAX_CONTAINERS_PER_ORDER * 100 + 1, PRODUCT, LATER)
    assert refused.value.field == "quantity"
    assert released == before


def test_cuts_and_increases_that_would_need_a_fifth_digit_are_refused():
    big = MAX_CONTAINERS_PER_ORDER * 100
    released = order(big, OrderState.RELEASED)  # -0001 .. -9999
    released.change_quantity(100, PRODUCT, LATER)
    before = dataclasses.replace(released)

    with pytest.raises(FailedPrecondition) as refused:
        released.change_quantity(200, PRODUCT, LATER)

    assert refused.value.reason == INSTRUCTION_NUMBERS_EXHAUSTED
    assert refused.value.metadata["last_instruction_number"] == "9999"
    assert released == before


@pytest.mark.parametrize("state", [OrderState.COMPLETED, OrderState.CANCELLED])
def test_a_closed_orders_quantity_cannot_change(state):
    closed = order(state=state)
    with pytest.raises(FailedPrecondition) as refused:
        closed.change_quantity(900, PRODUCT, LATER)
    assert refused.value.reason == ORDER_CLOSED


# Cancelling


def test_cancelling_an_open_order_tells_stations_nothing():
    open_order = order()
    assert open_order.cancel("duplicate", LATER) == []
    assert (open_order.state, open_order.cancel_reason) == (OrderState.CANCELLED, "duplicate")
    assert open_order.open_units == 0


def test_cancelling_a_released_order_withdraws_everything_not_started():
    released = order(state=OrderState.RELEASED)
    assert released.cancel("customer", LATER) == [OrderReduced(erp_order_id="SO-1", quantity=0)]
    assert (released.state, released.released_quantity) == (OrderState.CANCELLED, 0)


@pytest.mark.parametrize("state", [OrderState.COMPLETED, OrderState.CANCELLED])
def test_a_closed_order_cannot_be_cancelled(state):
    closed = order(state=state)
    with pytest.raises(FailedPrecondition) as refused:
        closed.cancel("again", LATER)
    assert refused.value.reason == ORDER_CLOSED


# Completions


def test_completions_add_up_until_the_order_is_completed():
    released = order(250, OrderState.RELEASED)

    released.record_made(100, LATER)
    released.record_made(100, LATER)
    assert (released.state, released.made_quantity, released.open_units) == (
        OrderState.RELEASED,
        200,
        50,
    )

    released.record_made(50, LATER)
    assert (released.state, released.made_quantity, released.open_units) == (
        OrderState.COMPLETED,
        250,
        0,
    )


def test_started_instructions_finish_and_count_after_a_cancellation():
    cancelled = order(state=OrderState.CANCELLED)
    cancelled.record_made(100, LATER)
    assert (cancelled.state, cancelled.made_quantity) == (OrderState.CANCELLED, 100)


def test_started_instructions_finish_and_count_after_a_cut_beyond_the_quantity():
    released = order(800, OrderState.RELEASED)
    released.change_quantity(150, PRODUCT, LATER)  # two containers were already started
    released.record_made(100, LATER)
    released.record_made(100, LATER)
    assert (released.state, released.made_quantity, released.open_units) == (
        OrderState.COMPLETED,
        200,
        0,
    )
    released.record_made(100, LATER)  # a third one, started too, still counts
    assert (released.state, released.made_quantity) == (OrderState.COMPLETED, 300)


def test_every_state_is_closed_or_not():
    assert {s for s in OrderState if s.closed} == {OrderState.COMPLETED, OrderState.CANCELLED}
