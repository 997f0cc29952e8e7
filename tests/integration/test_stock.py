"""The stock service: levels with filters and pages; events applied once, guarded."""

import uuid
from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from kanban.events.v1 import events_pb2, events_pb2_grpc
from kanban.stock.v1 import stock_pb2
from prometheus_client import REGISTRY

from tests.conftest import eventually, new_id, refused, stock_by_lot


def event(site_id: str, **payload) -> events_pb2.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return events_pb2.Event(
        event_id=str(uuid.uuid4()), site_id=site_id, source="test", occurred_at=stamp, **payload
    )


def filled(site_id: str, lot: str, quantity: int) -> events_pb2.Event:
    return event(
        site_id,
        card_filled=events_pb2.CardFilled(
            loop_id="L",
            card_code="L-001",
            item_id="PART",
            location_id="SM",
            lot_id=lot,
            quantity=quantity,
            supplier_station_id="STAMP",
        ),
    )


def emptied(site_id: str, lot: str, quantity: int) -> events_pb2.Event:
    return event(
        site_id,
        card_emptied=events_pb2.CardEmptied(
            loop_id="L",
            card_code="L-001",
            item_id="PART",
            location_id="SM",
            lot_id=lot,
            quantity=quantity,
            consumer_station_id="WELD",
        ),
    )


async def supermarket(stack, cap_units: int = 100):
    """A site whose supermarket SM holds at most cap_units of PART, starting empty."""
    site_id = new_id("site")
    sink = events_pb2_grpc.EventSinkServiceStub(stack.channels[1])
    defined = event(
        site_id,
        loop_defined=events_pb2.LoopDefined(
            loop_id="L", item_id="PART", location_id="SM", cap_units=cap_units
        ),
    )
    await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[defined]))
    return site_id, sink


async def test_a_redelivered_event_is_applied_once(stack):
    site_id, sink = await supermarket(stack)
    receipt = filled(site_id, "LOT-1", 40)

    first = await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[receipt]))
    again = await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[receipt, receipt]))

    assert (first.applied_count, first.duplicate_count) == (1, 0)
    assert (again.applied_count, again.duplicate_count) == (0, 2)
    assert await stock_by_lot(stack.stock, site_id, "SM") == {"LOT-1": 40}


async def test_a_receipt_above_the_supermarket_cap_is_refused(stack):
    site_id, sink = await supermarket(stack, cap_units=100)
    batch = [
        filled(site_id, "LOT-1", 60),
        filled(site_id, "LOT-2", 60),
        filled(site_id, "LOT-3", 40),
    ]

    reply = await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=batch))

    # Acknowledged (so not retried forever), but LOT-2 never entered stock.
    assert reply.applied_count == 3
    assert await stock_by_lot(stack.stock, site_id, "SM") == {"LOT-1": 60, "LOT-3": 40}
    refused_total = stack_metric(
        "kanban_stock_movements_refused_total",
        {"site_id": site_id, "location_id": "SM", "item_id": "PART", "reason": "ABOVE_CAP"},
    )
    assert refused_total == 1


async def test_an_issue_above_on_hand_is_refused_and_stock_never_goes_negative(stack):
    site_id, sink = await supermarket(stack)
    await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[filled(site_id, "L1", 10)]))

    await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[emptied(site_id, "L1", 11)]))
    assert await stock_by_lot(stack.stock, site_id, "SM") == {"L1": 10}

    await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[emptied(site_id, "L1", 10)]))
    assert await stock_by_lot(stack.stock, site_id, "SM") == {}


async def test_events_that_make_no_sense_are_invalid_arguments(stack):
    sink = events_pb2_grpc.EventSinkServiceStub(stack.channels[1])
    no_payload = event(new_id("site"))
    bad_id = filled(new_id("site"), "L", 1)
    bad_id.event_id = "not-a-uuid"

    for bad, field in ((no_payload, "events.payload"), (bad_id, "events.event_id")):
        refusal = await refused(sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=[bad])))
        assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refusal.fields == [field]


async def test_levels_filter_and_page(stack):
    site_id, sink = await supermarket(stack, cap_units=1000)
    lots = [f"LOT-{n}" for n in range(7)]
    await sink.DeliverEvents(
        events_pb2.DeliverEventsRequest(
            events=[filled(site_id, lot, 10 + n) for n, lot in enumerate(lots)]
        )
    )

    seen, token = {}, ""
    while True:
        page = await stack.stock.GetStockLevels(
            stock_pb2.GetStockLevelsRequest(
                site_id=site_id, item_id="PART", page_size=3, page_token=token
            )
        )
        assert len(page.levels) <= 3
        seen.update({level.lot_id: level.on_hand for level in page.levels})
        if not (token := page.next_page_token):
            break
    assert seen == {lot: 10 + n for n, lot in enumerate(lots)}

    one = await stack.stock.GetStockLevels(
        stock_pb2.GetStockLevelsRequest(site_id=site_id, lot_id="LOT-3")
    )
    assert [(lv.lot_id, lv.on_hand) for lv in one.levels] == [("LOT-3", 13)]
    other_item = await stack.stock.GetStockLevels(
        stock_pb2.GetStockLevelsRequest(site_id=site_id, item_id="OTHER")
    )
    assert list(other_item.levels) == []


async def test_levels_refuse_bad_filters(stack):
    for request, field in (
        (stock_pb2.GetStockLevelsRequest(site_id=""), "site_id"),
        (stock_pb2.GetStockLevelsRequest(site_id="S", location_id="bad id"), "location_id"),
        (stock_pb2.GetStockLevelsRequest(site_id="S", page_size=5000), "page_size"),
        (stock_pb2.GetStockLevelsRequest(site_id="S", page_token="%%%"), "page_token"),
    ):
        refusal = await refused(stack.stock.GetStockLevels(request))
        assert (refusal.code, refusal.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])


async def test_the_opening_stock_of_a_new_loop_arrives(stack, line):
    held = await eventually(lambda: stock_by_lot(stack.stock, line.site_id, "SM-W"))
    assert held == {"W-OPENING": 1500}


def stack_metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
