"""Production instructions at the pacemaker and how an order's reduction is planned."""

from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition
from services.core.events import ReleasedInstruction
from services.stations.domain import (
    INSTRUCTION_WITHDRAWN,
    INVALID_INSTRUCTION_STATE,
    OVERPRODUCTION_BLOCKED,
    WRONG_STATION,
    Instruction,
    InstructionState,
    fit_release,
    plan_reduction,
)

DUE = datetime(2026, 12, 1, tzinfo=UTC)
NOW = DUE - timedelta(hours=3)


def instruction(n: int, quantity: int = 100, state=InstructionState.OPEN, made: int = 0):
    return Instruction(
        site_id="S",
        instruction_id=f"ORD-{n:04d}",
        erp_order_id="ORD",
        station_id="ASSY",
        item_id="CHASSIS",
        location_id="FG",
        quantity=quantity,
        due_time=DUE,
        priority=0,
        state=state,
        sequence=n,
        lot_id="",
        made_quantity=made,
    )


def test_an_instruction_is_started_then_completed_by_its_pacemaker():
    work = instruction(1)
    work.start("ASSY", NOW)
    done = work.complete("ASSY", "LOT-9", 80)

    assert (work.state, work.made_quantity, work.lot_id) == (
        InstructionState.COMPLETED,
        80,
        "LOT-9",
    )
    assert (done.erp_order_id, done.quantity, done.location_id) == ("ORD", 80, "FG")
    # Stock traces what went into the lot by what the station consumed from then on.
    assert work.started_at == done.started_at == NOW


@pytest.mark.parametrize(
    "state", [InstructionState.OPEN, InstructionState.COMPLETED, InstructionState.WITHDRAWN]
)
def test_completing_an_instruction_that_is_not_started_is_overproduction(state):
    with pytest.raises(FailedPrecondition) as refused:
        instruction(1, state=state).complete("ASSY", "LOT", 1)
    assert refused.value.reason == OVERPRODUCTION_BLOCKED


def test_completing_more_than_the_instruction_is_overproduction():
    work = instruction(1, quantity=10)
    work.start("ASSY", NOW)
    with pytest.raises(FailedPrecondition) as refused:
        work.complete("ASSY", "LOT", 11)
    assert refused.value.reason == OVERPRODUCTION_BLOCKED
    assert work.state is InstructionState.STARTED


def test_a_withdrawn_instruction_cannot_start():
    with pytest.raises(FailedPrecondition) as refused:
        instruction(1, state=InstructionState.WITHDRAWN).start("ASSY", NOW)
    assert refused.value.reason == INSTRUCTION_WITHDRAWN


def test_a_started_instruction_cannot_start_again_nor_at_another_station():
    work = instruction(1)
    with pytest.raises(FailedPrecondition) as elsewhere:
        work.start("WELD", NOW)
    assert elsewhere.value.reason == WRONG_STATION
    assert work.started_at is None
    work.start("ASSY", NOW)
    with pytest.raises(FailedPrecondition) as twice:
        work.start("ASSY", NOW)
    assert twice.value.reason == INVALID_INSTRUCTION_STATE


def test_reducing_800_to_600_withdraws_the_last_two_open_containers():
    order = [instruction(n) for n in range(1, 9)]

    plan = plan_reduction(order, 600)

    assert [i.instruction_id for i in plan.withdraw] == ["ORD-0008", "ORD-0007"]
    assert plan.shrink is None


def test_a_reduction_between_containers_shrinks_the_last_one_kept():
    order = [instruction(n) for n in range(1, 9)]

    plan = plan_reduction(order, 650)

    assert [i.instruction_id for i in plan.withdraw] == ["ORD-0008"]
    assert plan.shrink is not None
    assert (plan.shrink[0].instruction_id, plan.shrink[1]) == ("ORD-0007", 50)


def test_started_and_completed_instructions_are_never_withdrawn():
    order = [
        instruction(1, state=InstructionState.COMPLETED, made=90),
        instruction(2, state=InstructionState.STARTED),
        instruction(3),
        instruction(4, state=InstructionState.WITHDRAWN),
    ]

    plan = plan_reduction(order, 0)  # cancelled

    assert [i.instruction_id for i in plan.withdraw] == ["ORD-0003"]
    assert plan.shrink is None


def test_an_increase_or_an_equal_quantity_withdraws_nothing():
    order = [instruction(n) for n in range(1, 4)]
    for quantity in (300, 400):
        plan = plan_reduction(order, quantity)
        assert (plan.withdraw, plan.shrink) == ([], None)


def released(*quantities: int, first: int = 1) -> list[ReleasedInstruction]:
    return [ReleasedInstruction(f"ORD-{n:04d}", q) for n, q in enumerate(quantities, start=first)]


def test_a_release_is_queued_whole_when_the_order_has_room():
    assert fit_release([], released(100, 100, 50), 250) == [
        ("ORD-0001", 100),
        ("ORD-0002", 100),
        ("ORD-0003", 50),
    ]


def test_a_release_never_plans_beyond_the_order_quantity():
    started = [instruction(n, state=InstructionState.STARTED) for n in range(1, 8)]  # 700
    assert fit_release(started, released(100, first=9), 750) == [("ORD-0009", 50)]
    assert fit_release(started, released(100, first=9), 700) == []


def test_a_redelivered_release_queues_nothing_twice():
    queued = [instruction(1)]
    assert fit_release(queued, released(100, 100), 200) == [("ORD-0002", 100)]
