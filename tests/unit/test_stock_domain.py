"""Stock rules: what may enter and leave a location, what a lot's status allows,
how counts reconcile, when a threshold is crossed, and turnover arithmetic."""

from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition
from services.core.events import CardEmptied, CardFilled, LoopDefined
from services.stock.domain import (
    ABOVE_CAP,
    INSUFFICIENT_STOCK,
    LOT_QUARANTINED,
    LOT_WRITTEN_OFF,
    Count,
    CountLine,
    CountState,
    Item,
    Location,
    LocationKind,
    Lot,
    LotStatus,
    MovementKind,
    Outcome,
    ReceiptSource,
    ThresholdState,
    check_cap,
    check_take,
    kanban_moves,
    threshold_state,
    turnover,
)

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def lot(status=LotStatus.AVAILABLE) -> Lot:
    return Lot("S", "LOT-1", "PART", status, ReceiptSource.SUPPLIER, "ACME", "", "", NOW)


@pytest.mark.parametrize(("held", "cap", "quantity"), [(0, 30, 30), (20, 30, 10), (29, 30, 1)])
def test_receipt_up_to_the_cap_is_allowed(held, cap, quantity):
    check_cap("SM", held, cap, quantity)


@pytest.mark.parametrize(("held", "cap", "quantity"), [(0, 30, 31), (21, 30, 10), (30, 30, 1)])
def test_receipt_above_the_cap_is_refused(held, cap, quantity):
    with pytest.raises(FailedPrecondition) as refused:
        check_cap("SM", held, cap, quantity)

    assert refused.value.reason == ABOVE_CAP
    assert refused.value.metadata["cap_units"] == str(cap)


def test_receipt_without_a_cap_is_never_refused():
    check_cap("BIN", 10**9, None, 10**9)


@pytest.mark.parametrize(("on_hand", "quantity"), [(5, 6), (0, 1)])
def test_taking_more_than_on_hand_is_refused_with_what_is_available(on_hand, quantity):
    with pytest.raises(FailedPrecondition) as refused:
        check_take("LOT-1", "BIN", on_hand, quantity)

    assert refused.value.reason == INSUFFICIENT_STOCK
    assert refused.value.metadata["available"] == str(on_hand)


def test_taking_all_that_is_on_hand_is_allowed():
    check_take("LOT-1", "BIN", 5, 5)


def test_a_quarantined_lot_may_only_move_into_quarantine():
    held = lot().quarantine("cracks", "LOT-1-Q1")
    quarantine = Location("S", "QA", "WH", LocationKind.QUARANTINE)
    bin_ = Location("S", "BIN", "WH", LocationKind.WAREHOUSE_BIN)

    held.require_can_leave(MovementKind.TRANSFER, quarantine)
    for kind, to in [
        (MovementKind.ISSUE, None),
        (MovementKind.TRANSFER, bin_),
        (MovementKind.SCRAP, None),
        (MovementKind.RETURN_TO_SUPPLIER, None),
    ]:
        with pytest.raises(FailedPrecondition) as refused:
            held.require_can_leave(kind, to)
        assert refused.value.reason == LOT_QUARANTINED
        assert refused.value.metadata["disposition_id"] == "LOT-1-Q1"


def test_an_available_lot_may_leave_by_any_movement():
    for kind in MovementKind:
        lot().require_can_leave(kind)


def test_a_lot_cannot_be_quarantined_twice_or_after_it_is_gone():
    with pytest.raises(FailedPrecondition) as twice:
        lot().quarantine("a", "D1").quarantine("b", "D2")
    with pytest.raises(FailedPrecondition) as gone:
        lot(LotStatus.SCRAPPED).quarantine("a", "D1")

    assert twice.value.reason == LOT_QUARANTINED
    assert gone.value.reason == LOT_WRITTEN_OFF


@pytest.mark.parametrize(
    ("outcome", "on_hand", "status"),
    [
        (Outcome.RELEASE, 10, LotStatus.AVAILABLE),
        (Outcome.REWORK, 8, LotStatus.AVAILABLE),
        (Outcome.REWORK, 0, LotStatus.CONSUMED),
        (Outcome.SCRAP, 0, LotStatus.SCRAPPED),
        (Outcome.RETURN_TO_SUPPLIER, 0, LotStatus.RETURNED),
    ],
)
def test_a_disposition_outcome_settles_the_lot(outcome, on_hand, status):
    settled = lot().quarantine("cracks", "D1").settle(outcome, on_hand)

    assert settled.status is status
    assert settled.hold_reason == settled.disposition_id == ""


def test_lot_status_follows_what_is_left_but_a_hold_stays():
    assert lot().after_movement(0).status is LotStatus.CONSUMED
    assert lot(LotStatus.CONSUMED).after_movement(3).status is LotStatus.AVAILABLE
    assert lot().quarantine("x", "D").after_movement(0).status is LotStatus.QUARANTINED


def test_kanban_events_become_ledger_entries():
    filled = CardFilled("L", "L-001", "PART", "SM", "LOT-2", 40, "STAMP", started_at=NOW)
    emptied = CardEmptied("L", "L-001", "PART", "SM", "LOT-2", 40, "WELD")
    written_off = CardEmptied("L", "L-001", "PART", "SM", "LOT-2", 40, "", written_off=True)
    opening = LoopDefined("L", "PART", "SM", 120, "L-OPENING", 120)

    (receipt,) = kanban_moves("S", filled, NOW)
    (issue,) = kanban_moves("S", emptied, NOW)
    (opened,) = kanban_moves("S", opening, NOW)

    assert (receipt.entry.kind, receipt.entry.quantity, receipt.station_id) == (
        MovementKind.RECEIPT,
        40,
        "STAMP",
    )
    assert receipt.started_at == NOW
    assert (issue.entry.kind, issue.entry.quantity, issue.station_id) == (
        MovementKind.ISSUE,
        -40,
        "WELD",
    )
    assert (opened.entry.quantity, opened.entry.lot_id) == (120, "L-OPENING")
    # The disposition already moved the stock of a written-off container.
    assert kanban_moves("S", written_off, NOW) == []


def count(lines, tolerance=2.0) -> Count:
    return Count("S", "C1", "BIN", CountState.OPEN, tolerance, lines, "ana", NOW, None)


def test_a_count_within_tolerance_closes_itself():
    reconciled = count([CountLine("PART", "LOT-1", 99, None)]).reconciled(
        {("PART", "LOT-1"): 100}, NOW
    )

    assert reconciled.state is CountState.CLOSED
    assert reconciled.lines[0].variance == -1
    assert reconciled.accuracy == 1.0


def test_a_count_beyond_tolerance_waits_for_approval():
    reconciled = count(
        [CountLine("PART", "LOT-1", 100, None), CountLine("PART", "LOT-9", 5, None)]
    ).reconciled({("PART", "LOT-1"): 100}, NOW)

    assert reconciled.state is CountState.AWAITING_APPROVAL
    assert [line.within(2.0) for line in reconciled.lines] == [True, False]
    assert reconciled.accuracy == 0.5


def test_a_count_with_uncounted_lines_cannot_be_reconciled():
    with pytest.raises(FailedPrecondition):
        count([CountLine("PART", "LOT-1", None, None)]).require_all_counted()


@pytest.mark.parametrize(
    ("on_hand", "state"),
    [
        (99, ThresholdState.BELOW_SAFETY_STOCK),
        (100, ThresholdState.NORMAL),
        (500, ThresholdState.NORMAL),
        (501, ThresholdState.ABOVE_OVERSTOCK),
    ],
)
def test_threshold_state(on_hand, state):
    assert threshold_state(on_hand, 100, 500) is state


def test_a_zero_line_is_no_line():
    assert threshold_state(0, 0, 0) is ThresholdState.NORMAL
    assert threshold_state(10**9, 10, 0) is ThresholdState.NORMAL


def test_turnover_weights_on_hand_by_time():
    start, end = NOW, NOW + timedelta(days=10)
    # 100 on hand for 5 days, then 60 were issued: 40 for the other 5 days.
    figures = turnover(
        Item("S", "PART", "pcs"), 100, [(NOW + timedelta(days=5), -60)], 60, start, end
    )

    assert figures.average_on_hand == pytest.approx(70)
    assert figures.turnover == pytest.approx(60 / 70)
    assert figures.annual_turnover == pytest.approx(60 / 70 * 36.5)
    # 6 a day; 40 left lasts 6.67 days.
    assert figures.days_of_supply == pytest.approx(40 / 6)
    assert figures.on_hand == 40


def test_a_young_item_is_measured_from_its_first_movement():
    start, end = NOW, NOW + timedelta(days=30)
    # Received on day 20, half of it used by day 30: 10 days of history, not 30.
    figures = turnover(
        Item("S", "PART", "pcs"),
        0,
        [(NOW + timedelta(days=20), 100), (NOW + timedelta(days=25), -50)],
        50,
        start,
        end,
    )

    assert figures.average_on_hand == pytest.approx(75)
    assert figures.days_of_supply == pytest.approx(50 / 5)


def test_days_of_supply_is_unknown_without_use():
    figures = turnover(Item("S", "PART", "pcs"), 10, [], 0, NOW, NOW + timedelta(days=30))

    assert figures.days_of_supply is None
    assert figures.turnover == 0
