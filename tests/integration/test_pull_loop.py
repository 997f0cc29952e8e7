"""The pull loop end to end across stations and stock, real PostgreSQL and gRPC."""

import asyncio

import grpc
from kanban.stations.v1 import stations_pb2 as pb

from tests.conftest import cards_by_lot, eventually, new_id, stock_by_lot


async def first_signal(stack, site_id: str, station_id: str, after: int = 0) -> pb.Signal:
    call = stack.stations.WatchSignals(
        pb.WatchSignalsRequest(site_id=site_id, station_id=station_id, after_sequence=after)
    )
    try:
        async for message in call:
            if message.HasField("signal"):
                return message.signal
    finally:
        call.cancel()
    raise AssertionError("stream ended without a signal")


async def test_a_scan_downstream_tells_upstream_to_make_exactly_one_more(stack, line):
    watching = asyncio.create_task(first_signal(stack, line.site_id, "STAMP"))

    scanned = await line.scan("WELD", "P-001")

    signal = await asyncio.wait_for(watching, 30)
    assert (signal.card_code, signal.loop_id, signal.quantity) == ("P-001", "P", 500)
    assert signal.sequence == scanned.signal.sequence == 1
    assert scanned.card.state == pb.CARD_STATE_EMPTY

    started = await line.start("STAMP")
    assert started.card.card_code == "P-001"
    assert started.card.state == pb.CARD_STATE_IN_PROCESS
    assert started.signal.state == pb.SIGNAL_STATE_STARTED

    done = await line.complete("STAMP", "P-001", "LOT-A", 500)
    assert done.card.state == pb.CARD_STATE_FULL
    assert (done.card.lot_id, done.card.quantity) == ("LOT-A", 500)
    assert done.signal.state == pb.SIGNAL_STATE_COMPLETED


async def test_stock_follows_the_cards(stack, line):
    await line.scan("WELD", "P-001")
    await line.start("STAMP")
    await line.complete("STAMP", "P-001", "LOT-A", 480)
    await line.scan("WELD", "P-002")

    expected = {"P-OPENING": 500, "LOT-A": 480}
    assert cards_by_lot(await line.cards("P")) == expected
    held = await eventually(
        lambda: _equal_or_none(stock_by_lot(stack.stock, line.site_id, "SM-P"), expected)
    )
    assert held == expected


async def _equal_or_none(levels, expected):
    value = await levels
    return value if value == expected else None


async def test_the_board_shows_wip_against_cap(stack, line):
    await line.scan("WELD", "P-001")
    await line.scan("WELD", "P-002")
    await line.start("STAMP")

    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=line.site_id))

    loop_p = next(s for s in board.loops if s.loop.loop_id == "P")
    assert (loop_p.full_cards, loop_p.empty_cards, loop_p.in_process_cards) == (1, 1, 1)
    assert (loop_p.units_in_supermarket, loop_p.units_in_process) == (500, 500)
    assert (loop_p.wip_units, loop_p.loop.cap_units) == (1000, 1500)
    stamp = next(s for s in board.stations if s.station_id == "STAMP")
    assert (stamp.open_signals, stamp.in_process_cards, stamp.wip_units) == (1, 1, 1000)


async def test_a_loop_created_empty_raises_one_signal_per_card(stack, line):
    created = await line.create_loop("E", "PART", "STAMP", "ASSY", 2, 10, pb.CARD_STATE_EMPTY)
    assert all(c.state == pb.CARD_STATE_EMPTY for c in created.cards)

    first = await line.start("STAMP")
    second = await line.start("STAMP")

    assert {first.card.card_code, second.card.card_code} == {"E-001", "E-002"}
    assert await stock_by_lot(stack.stock, line.site_id, "SM-E") == {}


async def test_the_supplier_may_start_a_named_card(stack, line):
    await line.scan("WELD", "P-001")
    await line.scan("WELD", "P-002")

    started = await line.start("STAMP", "P-002")

    assert started.card.card_code == "P-002"
    assert (await line.start("STAMP")).card.card_code == "P-001"


async def test_listing_loops_pages_through_all_of_them(stack, line):
    for n in range(5):
        await line.create_loop(f"X{n}", "PART", "STAMP", "ASSY", 1, 1)
    seen, token = [], ""
    while True:
        page = await stack.stations.ListLoops(
            pb.ListLoopsRequest(site_id=line.site_id, page_size=3, page_token=token)
        )
        seen += [loop.loop_id for loop in page.loops]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["P", "W", "X0", "X1", "X2", "X3", "X4"]


async def test_an_unknown_site_has_no_board(stack):
    try:
        await stack.stations.GetBoard(pb.GetBoardRequest(site_id=new_id("nowhere")))
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("GetBoard of an unknown site succeeded")
