"""A retried request gets its first answer back and changes nothing more."""

import asyncio

import grpc
from kanban.stations.v1 import stations_pb2 as pb

from tests.conftest import new_id, refused


async def open_signals(stack, site_id: str, station_id: str) -> int:
    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=site_id))
    return next(s.open_signals for s in board.stations if s.station_id == station_id)


async def test_a_retried_scan_returns_the_first_answer_and_raises_no_second_signal(stack, line):
    first = await line.scan("WELD", "P-001", request_id="scan-1")
    again = await line.scan("WELD", "P-001", request_id="scan-1")

    assert again == first
    assert await open_signals(stack, line.site_id, "STAMP") == 1


async def test_racing_copies_of_one_request_take_effect_once(stack, line):
    replies = await asyncio.gather(
        *(line.scan("WELD", "P-001", request_id="scan-race") for _ in range(10))
    )
    assert all(reply == replies[0] for reply in replies)
    assert await open_signals(stack, line.site_id, "STAMP") == 1


async def test_retried_start_and_complete_return_their_first_answers(stack, line):
    await line.scan("WELD", "P-001")
    started = await line.start("STAMP", request_id="start-1")
    assert await line.start("STAMP", request_id="start-1") == started

    completed = await line.complete("STAMP", "P-001", "LOT-1", 500, request_id="done-1")
    assert await line.complete("STAMP", "P-001", "LOT-1", 500, request_id="done-1") == completed
    assert (await line.cards("P"))[0].lot_id == "LOT-1"


async def test_a_request_id_reused_for_another_request_is_refused(stack, line):
    await line.scan("WELD", "P-001", request_id="reused")

    refusal = await refused(line.scan("WELD", "P-002", request_id="reused"))

    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.fields == ["request_id"]
    assert [c.state for c in await line.cards("P")][1] == pb.CARD_STATE_FULL


async def test_a_refused_request_may_be_retried_once_the_state_allows_it(stack, line):
    refusal = await refused(line.start("STAMP", request_id="early"))
    assert refusal.reason == "NO_OPEN_SIGNAL"

    await line.scan("WELD", "P-001")

    assert (await line.start("STAMP", request_id="early")).card.card_code == "P-001"


async def test_creating_what_exists_returns_it_unless_the_content_differs(stack, line):
    same = pb.CreateStationRequest(
        request_id=new_id("r"), site_id=line.site_id, station_id="WELD", name="WELD"
    )
    assert (await stack.stations.CreateStation(same)).station.name == "WELD"

    different = pb.CreateStationRequest(
        request_id=new_id("r"), site_id=line.site_id, station_id="WELD", name="Welding 2"
    )
    refusal = await refused(stack.stations.CreateStation(different))
    assert refusal.code == grpc.StatusCode.ALREADY_EXISTS

    bigger_loop = await refused(line.create_loop("P", "PART", "STAMP", "WELD", 9, 500))
    assert bigger_loop.code == grpc.StatusCode.ALREADY_EXISTS
    assert len(await line.cards("P")) == 3


async def test_a_retried_loop_creation_returns_the_same_loop_and_cards(stack, line):
    request = pb.CreateLoopRequest(
        request_id="loop-once",
        site_id=line.site_id,
        loop_id="R",
        item_id="PART",
        supplier_station_id="STAMP",
        consumer_station_id="WELD",
        supermarket_location_id="SM-R",
        container_quantity=5,
        card_count=2,
    )
    first = await stack.stations.CreateLoop(request)
    again = await stack.stations.CreateLoop(request)

    assert again == first
    assert [c.card_code for c in again.cards] == ["R-001", "R-002"]
