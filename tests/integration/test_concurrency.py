"""Many terminals racing on one loop: the invariants of DESIGN.md section 3 hold."""

import asyncio
import random

import asyncpg
import grpc
from kanban.stations.v1 import stations_pb2 as pb

from tests.conftest import cards_by_lot, eventually, new_id, stock_by_lot

CARDS = 4
CONTAINER = 10
CAP = CARDS * CONTAINER
TERMINALS_PER_ROLE = 8  # 24 clients in all
OPERATIONS_EACH = 15


async def test_racing_terminals_never_exceed_the_cap_nor_lose_a_signal(stack, line, database_url):
    await line.create_loop("C", "PART", "STAMP", "WELD", CARDS, CONTAINER)
    codes = [f"C-{n:03d}" for n in range(1, CARDS + 1)]
    scans: list[pb.Signal] = []
    completions: list[pb.Card] = []
    refusals: dict[str, int] = {}
    racing = True
    samples = []

    async def attempt(call, on_success) -> None:
        try:
            on_success(await call)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
            refusals[error.code().name] = refusals.get(error.code().name, 0) + 1

    async def consumer(rng: random.Random) -> None:
        for _ in range(OPERATIONS_EACH):
            await attempt(line.scan("WELD", rng.choice(codes)), lambda r: scans.append(r.signal))

    async def starter(rng: random.Random) -> None:
        for _ in range(OPERATIONS_EACH):
            await attempt(line.start("STAMP"), lambda r: None)

    async def completer(rng: random.Random) -> None:
        for n in range(OPERATIONS_EACH):
            quantity = rng.choice([CONTAINER, CONTAINER - 1, CONTAINER + 1])
            await attempt(
                line.complete("STAMP", rng.choice(codes), f"LOT-{rng.random():.6f}-{n}", quantity),
                lambda r: completions.append(r.card),
            )

    async def monitor() -> None:
        while racing:
            board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=line.site_id))
            status = next(s for s in board.loops if s.loop.loop_id == "C")
            samples.append((status.wip_units, status.loop.cap_units))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(monitor())
    rng = random.Random(7)
    await asyncio.gather(
        *(
            role(random.Random(rng.random()))
            for role in (consumer, starter, completer)
            for _ in range(TERMINALS_PER_ROLE)
        )
    )
    racing = False
    await watcher

    # 1. WIP never above the cap, in any sample taken while they raced.
    assert samples and all(wip <= cap == CAP for wip, cap in samples)
    # 3. Every successful scan raised exactly one signal, numbered without gaps.
    assert sorted(s.sequence for s in scans) == list(range(1, len(scans) + 1))
    conn = await asyncpg.connect(database_url)
    try:
        raised = await conn.fetchval(
            "SELECT count(*) FROM stations.signals WHERE site_id = $1 AND loop_id = 'C'",
            line.site_id,
        )
        completed = await conn.fetchval(
            """SELECT count(*) FROM stations.signals
               WHERE site_id = $1 AND loop_id = 'C' AND state = 'COMPLETED'""",
            line.site_id,
        )
    finally:
        await conn.close()
    assert raised == len(scans)
    assert completed == len(completions)
    # 2. Nothing above the container quantity ever became FULL.
    assert all(card.quantity <= CONTAINER for card in completions)
    # Stock on hand is what the cards say, once the relay has caught up.
    cards = await line.cards("C")
    expected = cards_by_lot(cards)
    held = await eventually(lambda: _matches(stack, line.site_id, expected))
    assert held == expected
    print(
        f"\n{len(scans)} scans, {len(completions)} completions, {refusals} refusals, "
        f"{len(samples)} WIP samples, peak WIP {max(w for w, _ in samples)}/{CAP}"
    )
    assert len(scans) > CARDS and len(completions) > 0, "the race exercised nothing"


async def _matches(stack, site_id, expected):
    held = await stock_by_lot(stack.stock, site_id, "SM-C")
    return held if held == expected else None


async def test_two_terminals_starting_at_once_start_different_signals(stack, line):
    for code in ("P-001", "P-002", "P-003"):
        await line.scan("WELD", code)

    started = await asyncio.gather(*(line.start("STAMP") for _ in range(3)))

    assert sorted(s.card.card_code for s in started) == ["P-001", "P-002", "P-003"]
    refusal_request = pb.StartSignalRequest(
        request_id=new_id("r"), site_id=line.site_id, station_id="STAMP"
    )
    try:
        await stack.stations.StartSignal(refusal_request)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    else:
        raise AssertionError("a fourth start found a signal that was never raised")
