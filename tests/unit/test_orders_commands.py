"""Each orders command checks its own fields and names the one at fault."""

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.core.errors import InvalidArgument
from services.orders.commands import (
    MAX_CONTAINER_QUANTITY,
    CancelOrder,
    ChangeOrderQuantity,
    CreateOrder,
    DefineProduct,
    ListOrders,
    ReleaseOrder,
)
from services.orders.domain import MAX_ORDER_QUANTITY, MAX_PRIORITY, OrderState

DUE = datetime(2024, 5, 10, 16, 0, tzinfo=UTC)

PRODUCT = DefineProduct(
    request_id="req-1",
    site_id="PLANT-A",
    item_id="FRAME",
    pacemaker_station_id="ASSY",
    container_quantity=100,
    finished_goods_location_id="FG-1",
)
CREATE = CreateOrder(
    request_id="req-1",
    site_id="PLANT-A",
    erp_order_id="SO-1",
    item_id="FRAME",
    quantity=800,
    due_time=DUE,
    priority=5,
)
RELEASE = ReleaseOrder(request_id="req-1", site_id="PLANT-A", erp_order_id="SO-1")
CHANGE = ChangeOrderQuantity(
    request_id="req-1", site_id="PLANT-A", erp_order_id="SO-1", quantity=600
)
CANCEL = CancelOrder(request_id="req-1", site_id="PLANT-A", erp_order_id="SO-1", reason="cut")
MUTATIONS: list[Any] = [PRODUCT, CREATE, RELEASE, CHANGE, CANCEL]
LIST = ListOrders(
    site_id="PLANT-A",
    state=None,
    item_id="",
    due_after=None,
    due_before=None,
    page_size=0,
    page_token="",
)

ID_FIELDS = [
    *[
        (PRODUCT, f)
        for f in ("site_id", "item_id", "pacemaker_station_id", "finished_goods_location_id")
    ],
    *[(CREATE, f) for f in ("site_id", "erp_order_id", "item_id")],
    *[(command, f) for command in (RELEASE, CHANGE, CANCEL) for f in ("site_id", "erp_order_id")],
    (LIST, "site_id"),
]
BAD_IDS = ["", "has space", "-leading-dash", "x" * 65, "naïve", "a/b", "A1\n"]


def refused_field(command: Any, **changes: Any) -> str:
    with pytest.raises(InvalidArgument) as refused:
        dataclasses.replace(command, **changes)
    return refused.value.field


def name(command: Any) -> str:
    return type(command).__name__


@pytest.mark.parametrize("command", [*MUTATIONS, LIST], ids=name)
def test_valid_commands_construct(command):
    assert dataclasses.replace(command) == command


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(("command", "field"), ID_FIELDS, ids=lambda v: str(v))
def test_malformed_ids_are_refused_on_their_field(command, field, bad):
    assert refused_field(command, **{field: bad}) == field


@pytest.mark.parametrize("command", MUTATIONS, ids=name)
@pytest.mark.parametrize("bad", ["", "r" * 129, "line\nbreak"])
def test_bad_request_ids_are_refused(command, bad):
    assert refused_field(command, request_id=bad) == "request_id"


@pytest.mark.parametrize("command", [CREATE, RELEASE, CHANGE, CANCEL], ids=name)
def test_erp_order_ids_are_at_most_48_characters(command):
    assert len(dataclasses.replace(command, erp_order_id="E" * 48).erp_order_id) == 48
    assert refused_field(command, erp_order_id="E" * 49) == "erp_order_id"


@pytest.mark.parametrize("command", [CREATE, CHANGE], ids=name)
@pytest.mark.parametrize("bad", [0, -1, -(2**62), MAX_ORDER_QUANTITY + 1, 2**62])
def test_quantities_out_of_range_are_refused(command, bad):
    assert refused_field(command, quantity=bad) == "quantity"


@pytest.mark.parametrize("command", [CREATE, CHANGE], ids=name)
def test_quantities_from_1_to_ten_million_are_fine(command):
    for good in (1, MAX_ORDER_QUANTITY):
        assert dataclasses.replace(command, quantity=good).quantity == good


@pytest.mark.parametrize("bad", [0, -5, MAX_CONTAINER_QUANTITY + 1])
def test_container_quantities_out_of_range_are_refused(bad):
    assert refused_field(PRODUCT, container_quantity=bad) == "container_quantity"


def test_due_time_is_required_and_may_be_in_the_past():
    assert refused_field(CREATE, due_time=None) == "due_time"
    assert refused_field(CREATE, due_time=datetime(2024, 5, 1)) == "due_time"  # no zone
    late = DUE - timedelta(days=365)
    assert dataclasses.replace(CREATE, due_time=late).due == late


@pytest.mark.parametrize("bad", [-1, MAX_PRIORITY + 1, 2**31 - 1, -(2**31)])
def test_priorities_out_of_range_are_refused(bad):
    assert refused_field(CREATE, priority=bad) == "priority"


def test_priorities_from_0_to_1000_are_fine():
    for good in (0, MAX_PRIORITY):
        assert dataclasses.replace(CREATE, priority=good).priority == good


def test_a_cancel_reason_is_optional_short_printable_text():
    assert dataclasses.replace(CANCEL, reason="").reason == ""
    assert refused_field(CANCEL, reason="r" * 201) == "reason"
    assert refused_field(CANCEL, reason="bell\a") == "reason"


def test_list_filters_are_checked():
    assert refused_field(LIST, item_id="bad item") == "item_id"
    assert refused_field(LIST, page_size=-1) == "page_size"
    assert refused_field(LIST, page_size=1001) == "page_size"
    assert refused_field(LIST, due_after=DUE, due_before=DUE) == "due_before"
    assert refused_field(LIST, due_after=datetime(2024, 5, 1)) == "due_after"
    window = dataclasses.replace(
        LIST, state=OrderState.OPEN, due_after=DUE, due_before=DUE + timedelta(days=1)
    )
    assert window.limit == 100
    assert dataclasses.replace(LIST, page_size=7).limit == 7
