"""Bad input gets a clear status naming what is wrong, and changes nothing."""

import grpc
import pytest
from kanban.stations.v1 import stations_pb2 as pb

from tests.conftest import new_id, refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def scan(**fields):
    return dict(request_id="r", station_id="WELD", card_code="P-001") | fields


def complete(**fields):
    return dict(request_id="r", station_id="STAMP", card_code="P-001", lot_id="L", quantity=5) | (
        fields
    )


def loop(**fields):
    return (
        dict(
            request_id="r",
            loop_id="Z",
            item_id="PART",
            supplier_station_id="STAMP",
            consumer_station_id="WELD",
            supermarket_location_id="SM",
            container_quantity=5,
            card_count=1,
        )
        | fields
    )


# (rpc, request fields, the field at fault); every request is for the test's site.
CASES = [
    ("ScanCard", scan(request_id=""), "request_id"),
    ("ScanCard", scan(request_id="r" * 500), "request_id"),
    ("ScanCard", scan(station_id=""), "station_id"),
    ("ScanCard", scan(card_code=""), "card_code"),
    ("ScanCard", scan(card_code="P 001;--"), "card_code"),
    ("ScanCard", scan(card_code="Ж" * 70), "card_code"),
    ("StartSignal", dict(request_id="r", station_id="STAMP", card_code="bad code"), "card_code"),
    ("CompleteCard", complete(quantity=0), "quantity"),
    ("CompleteCard", complete(quantity=-5), "quantity"),
    ("CompleteCard", complete(lot_id=""), "lot_id"),
    ("CreateLoop", loop(consumer_station_id="STAMP"), "consumer_station_id"),
    ("CreateLoop", loop(container_quantity=0), "container_quantity"),
    ("CreateLoop", loop(card_count=-1), "card_count"),
    ("CreateLoop", loop(initial_card_state=pb.CARD_STATE_IN_PROCESS), "initial_card_state"),
    ("CreateLoop", loop(initial_card_state=42), "initial_card_state"),
    ("ListLoops", dict(page_size=-1), "page_size"),
    ("ListLoops", dict(page_token="not-a-token"), "page_token"),
    ("WatchSignals", dict(station_id="STAMP", after_sequence=-1), "after_sequence"),
]


async def snapshot(stack, line):
    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=line.site_id))
    return board, await line.cards("P"), await line.cards("W")


@pytest.mark.parametrize(("rpc", "fields", "at_fault"), CASES)
async def test_malformed_requests_name_the_field_at_fault(stack, line, rpc, fields, at_fault):
    before = await snapshot(stack, line)
    method = getattr(stack.stations, rpc)
    request = getattr(pb, f"{rpc}Request")(site_id=line.site_id, **fields)

    call = method(request)
    if rpc == "WatchSignals":
        call = _first_message(call)
    refusal = await refused(call)

    assert refusal.code == INVALID, refusal.message
    assert refusal.fields == [at_fault]
    assert await snapshot(stack, line) == before


async def _first_message(call):
    async for message in call:
        return message


PRECONDITION = "FAILED_PRECONDITION"


@pytest.mark.parametrize(
    ("rpc", "fields", "code", "reason"),
    [
        ("ScanCard", scan(card_code="NOPE-001"), "NOT_FOUND", "CARD_NOT_FOUND"),
        ("ScanCard", scan(station_id="ASSY"), PRECONDITION, "WRONG_STATION"),
        ("ScanCard", scan(station_id="STAMP"), PRECONDITION, "WRONG_STATION"),
        (
            "StartSignal",
            dict(station_id="STAMP", card_code="P-001"),
            PRECONDITION,
            "INVALID_CARD_STATE",
        ),
        ("StartSignal", dict(station_id="WELD", card_code="P-001"), PRECONDITION, "WRONG_STATION"),
        ("StartSignal", dict(station_id="NOBODY"), "NOT_FOUND", "STATION_NOT_FOUND"),
        ("CompleteCard", complete(station_id="WELD"), PRECONDITION, "WRONG_STATION"),
        ("CreateLoop", loop(item_id="NOPE"), "NOT_FOUND", "ITEM_NOT_FOUND"),
    ],
)
async def test_requests_the_state_refuses_say_why(stack, line, rpc, fields, code, reason):
    before = await snapshot(stack, line)
    fields = fields | {"request_id": new_id("r"), "site_id": line.site_id}
    request = getattr(pb, f"{rpc}Request")(**fields)

    refusal = await refused(getattr(stack.stations, rpc)(request))

    assert refusal.code == getattr(grpc.StatusCode, code), refusal.message
    assert refusal.reason == reason
    assert await snapshot(stack, line) == before


async def test_a_wrong_state_names_the_cards_current_state(stack, line):
    await line.scan("WELD", "P-001")

    refusal = await refused(line.scan("WELD", "P-001"))

    assert refusal.reason == "INVALID_CARD_STATE"
    assert refusal.metadata["card_state"] == "EMPTY"


async def test_an_unknown_site_is_not_found(stack):
    refusal = await refused(
        stack.stations.CreateStation(
            pb.CreateStationRequest(
                request_id=new_id("r"), site_id=new_id("nowhere"), station_id="S", name="S"
            )
        )
    )
    assert refusal.code == grpc.StatusCode.NOT_FOUND
    assert refusal.reason == "SITE_NOT_FOUND"
