"""Resizing a loop on the running services: more cards ask at once, fewer retire as
they come back empty, and stock, alerts and terminals follow."""

import asyncio
import random

import asyncpg
import grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

from tests.conftest import eventually, new_id, refused
from tests.integration.test_watch_signals import Terminal

CONTAINER = 500


async def resize(line, loop_id: str, cards: int, request_id: str | None = None):
    return await line.stub.ResizeLoop(
        pb.ResizeLoopRequest(
            request_id=request_id or new_id("r"),
            site_id=line.site_id,
            loop_id=loop_id,
            card_count=cards,
            reason="demand changed",
        )
    )


async def board_loop(stack, line, loop_id: str) -> pb.LoopStatus:
    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=line.site_id))
    return next(s for s in board.loops if s.loop.loop_id == loop_id)


async def test_adding_cards_releases_their_signals_at_once(stack, line):
    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    try:
        grown = await resize(line, "P", 5)

        assert [c.card_code for c in grown.added_cards] == ["P-004", "P-005"]
        assert {c.state for c in grown.added_cards} == {pb.CARD_STATE_EMPTY}
        assert [s.card_code for s in grown.signals] == ["P-004", "P-005"]
        assert (grown.loop.card_count, grown.loop.target_card_count) == (5, 5)
        assert grown.loop.cap_units == 5 * CONTAINER
        streamed = [await terminal.next_signal() for _ in range(2)]
        assert [s.card_code for s in streamed] == ["P-004", "P-005"]
    finally:
        terminal.disconnect()
    status = await board_loop(stack, line, "P")
    assert (status.full_cards, status.empty_cards, status.loop.cap_units) == (3, 2, 2500)

    # Stock's cap rose with the loop: the new containers are accepted when made.
    await line.start("STAMP", "P-004")
    await line.complete("STAMP", "P-004", "LOT-NEW", CONTAINER)

    async def received() -> bool:
        reply = await stack.stock.GetStockLevels(
            stock_pb2.GetStockLevelsRequest(
                site_id=line.site_id, location_id="SM-P", lot_id="LOT-NEW"
            )
        )
        return [lv.on_hand for lv in reply.levels] == [CONTAINER]

    assert await eventually(received)


async def test_removing_cards_retires_empty_ones_now_and_the_next_to_come_back(stack, line):
    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    try:
        await line.scan("WELD", "P-001")
        await line.start("STAMP", "P-001")  # in process: it must not be thrown away
        await line.scan("WELD", "P-002")  # EMPTY, its signal waiting: retires at once
        seen = [await terminal.next_signal() for _ in range(2)]
        assert [s.card_code for s in seen] == ["P-001", "P-002"]

        shrunk = await resize(line, "P", 1)

        assert [c.card_code for c in shrunk.retired_cards] == ["P-002"]
        assert shrunk.retired_cards[0].state == pb.CARD_STATE_RETIRED
        assert (shrunk.loop.card_count, shrunk.loop.target_card_count) == (2, 1)
        # The terminal that saw P-002's signal is told to drop it.
        withdrawal = await terminal.next_withdrawal()
        assert withdrawal.card_code == "P-002"
        assert withdrawal.signal_sequence == seen[1].sequence
    finally:
        terminal.disconnect()

    # P-003 is FULL: it stays until the consumer empties it, then retires.
    cards = {c.card_code: c.state for c in await line.cards("P")}
    assert cards == {"P-001": pb.CARD_STATE_IN_PROCESS, "P-003": pb.CARD_STATE_FULL}
    scanned = await line.scan("WELD", "P-003")
    assert scanned.card.state == pb.CARD_STATE_RETIRED
    assert not scanned.HasField("signal")
    status = await board_loop(stack, line, "P")
    assert (status.loop.card_count, status.loop.target_card_count) == (1, 1)
    assert status.wip_units <= status.loop.cap_units == CONTAINER

    # The loop is at its size: the next card back asks its supplier again.
    await line.complete("STAMP", "P-001", "LOT-A", CONTAINER)
    again = await line.scan("WELD", "P-001")
    assert again.card.state == pb.CARD_STATE_EMPTY and again.signal.card_code == "P-001"

    # A retired card is refused everything, by name.
    for call in (
        line.scan("WELD", "P-003"),
        line.start("STAMP", "P-002"),
        line.complete("STAMP", "P-003", "LOT-X", 1),
    ):
        refusal = await refused(call)
        assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
        assert refusal.metadata.get("card_state") == "RETIRED"


async def test_stock_and_alerts_follow_the_cards_that_remain(stack, line, database_url):
    await line.scan("WELD", "P-001")
    await resize(line, "P", 2)  # P-001 retires at once: it was EMPTY
    await line.scan("WELD", "P-002")  # nothing left to retire: it asks again
    await resize(line, "P", 1)  # P-002 is waiting: retires at once
    conn = await asyncpg.connect(database_url)
    try:

        async def followed() -> bool:
            cap = await conn.fetchval(
                """SELECT cap_units FROM stock.location_caps
                   WHERE site_id = $1 AND location_id = 'SM-P'""",
                line.site_id,
            )
            alerts_cap = await conn.fetchval(
                "SELECT cap_units FROM alerts.loops WHERE site_id = $1 AND loop_id = 'P'",
                line.site_id,
            )
            followed_cards = await conn.fetch(
                "SELECT card_code FROM alerts.cards WHERE site_id = $1 AND loop_id = 'P'",
                line.site_id,
            )
            return cap == alerts_cap == CONTAINER and [r["card_code"] for r in followed_cards] == [
                "P-003"
            ]

        assert await eventually(followed)
    finally:
        await conn.close()


async def test_a_retried_resize_returns_its_first_answer_and_changes_nothing(stack, line):
    request_id = new_id("r")
    first = await resize(line, "W", 4, request_id)
    again = await resize(line, "W", 4, request_id)

    assert again == first
    assert len(await line.cards("W")) == 4
    refusal = await refused(resize(line, "W", 5, request_id))
    assert (refusal.code, refusal.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["request_id"])
    assert len(await line.cards("W")) == 4


async def test_bad_resizes_are_refused_and_change_nothing(stack, line):
    for cards, field in ((0, "card_count"), (-1, "card_count"), (1000, "card_count")):
        refusal = await refused(resize(line, "P", cards))
        assert (refusal.code, refusal.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    refusal = await refused(resize(line, "NOPE", 2))
    assert refusal.code == grpc.StatusCode.NOT_FOUND
    assert len(await line.cards("P")) == 3


async def test_resizing_under_racing_scans_keeps_the_cap_and_one_signal_per_card(
    stack, line, database_url
):
    """Consumers scan while suppliers refill and a planner shrinks the loop: no card
    retires twice or FULL, every other emptied card raised exactly one signal."""
    cards = 8
    await line.create_loop("R", "PART", "STAMP", "WELD", cards, 10)
    codes = [f"R-{n:03d}" for n in range(1, cards + 1)]
    rng = random.Random(11)
    scans: list[pb.ScanCardResponse] = []
    resizes: list[pb.ResizeLoopResponse] = []

    async def consumer() -> None:
        for _ in range(30):
            try:
                scans.append(await line.scan("WELD", rng.choice(codes)))
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()

    async def supplier() -> None:
        for n in range(30):
            try:
                started = await line.start("STAMP")
                await line.complete("STAMP", started.card.card_code, f"L-{n}", 10)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()

    async def planner() -> None:
        for target in (6, 3, 5, 2):
            resizes.append(await resize(line, "R", target))
            await asyncio.sleep(0.01)

    await asyncio.gather(consumer(), consumer(), supplier(), supplier(), planner())

    found = await stack.stations.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id="R"))
    in_loop = [c for c in found.cards if c.card_code.startswith("R-")]
    assert found.loop.card_count == len(in_loop)
    assert found.loop.target_card_count == 2
    assert found.loop.card_count >= 2
    held = sum(c.quantity for c in in_loop) + 10 * sum(
        c.state == pb.CARD_STATE_IN_PROCESS for c in in_loop
    )
    assert held <= found.loop.cap_units
    # Every scan either raised one signal or retired its card, never both.
    retired_on_scan = [s for s in scans if s.card.state == pb.CARD_STATE_RETIRED]
    with_signal = [s for s in scans if s.HasField("signal")]
    assert len(retired_on_scan) + len(with_signal) == len(scans)
    retired_at_once = [c.card_code for r in resizes for c in r.retired_cards]
    retired = [s.card.card_code for s in retired_on_scan] + retired_at_once
    assert len(set(retired)) == len(retired), "a card retired twice"
    added = sum(len(r.added_cards) for r in resizes)
    assert len(in_loop) + len(retired) == cards + added
    conn = await asyncpg.connect(database_url)
    try:
        signals = await conn.fetch(
            """SELECT card_code, state FROM stations.signals
               WHERE site_id = $1 AND loop_id = 'R'""",
            line.site_id,
        )
    finally:
        await conn.close()
    # One signal per scan that did not retire its card and per card added; those
    # of cards retired while waiting were withdrawn.
    assert len(signals) == len(with_signal) + added
    withdrawn = sorted(r["card_code"] for r in signals if r["state"] == "WITHDRAWN")
    assert withdrawn == sorted(retired_at_once)
