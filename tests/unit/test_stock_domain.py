"""What may enter and leave a stock location."""

import pytest

from services.stock.domain import (
    ABOVE_CAP,
    INSUFFICIENT_STOCK,
    Movement,
    MovementKind,
    check_issue,
    check_receipt,
)


@pytest.mark.parametrize(
    ("on_hand", "cap", "quantity"), [(0, 30, 30), (20, 30, 10), (0, 30, 1), (29, 30, 1)]
)
def test_receipt_up_to_the_cap_is_allowed(on_hand, cap, quantity):
    assert check_receipt(on_hand, cap, quantity) is None


@pytest.mark.parametrize(("on_hand", "cap", "quantity"), [(0, 30, 31), (21, 30, 10), (30, 30, 1)])
def test_receipt_above_the_cap_is_refused(on_hand, cap, quantity):
    refusal = check_receipt(on_hand, cap, quantity)

    assert refusal is not None
    assert refusal.reason == ABOVE_CAP
    assert f"above the cap of {cap}" in refusal.detail


def test_receipt_without_a_cap_is_never_refused():
    assert check_receipt(10**9, None, 10**9) is None


@pytest.mark.parametrize(("on_hand", "quantity"), [(5, 5), (5, 1), (100, 99)])
def test_issue_of_what_is_on_hand_is_allowed(on_hand, quantity):
    assert check_issue(on_hand, quantity) is None


@pytest.mark.parametrize(("on_hand", "quantity"), [(5, 6), (0, 1)])
def test_issue_never_takes_stock_below_zero(on_hand, quantity):
    refusal = check_issue(on_hand, quantity)

    assert refusal is not None
    assert refusal.reason == INSUFFICIENT_STOCK


@pytest.mark.parametrize(("kind", "signed"), [(MovementKind.RECEIPT, 7), (MovementKind.ISSUE, -7)])
def test_movement_signed_quantity_follows_its_kind(kind, signed):
    movement = Movement("PLANT-A", kind, "SM-1", "BRACKET", "LOT-1", 7, "L1-001")

    assert movement.signed_quantity == signed
