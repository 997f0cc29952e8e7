"""A crash of either side loses nothing: real processes, killed with SIGKILL.

Stations commits each event in its outbox with the change that caused it and a
relay delivers it to stock until acknowledged; stock drops duplicates by event
id. Whichever process dies, and whenever, stock ends up holding exactly what the
cards say, every event applied once.
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2_grpc

from tests.conftest import Line, cards_by_lot, eventually, new_id, stock_by_lot
from tests.e2e.conftest import Launcher, ServiceProcess, open_channel

CARDS = 3
CONTAINER = 500
LOOPS = (("P", "STAMP", "WELD"), ("W", "WELD", "ASSY"))  # loop, supplier, consumer
OPENING_RECEIPTS = len(LOOPS)  # every loop starts FULL: one opening receipt each
ITEMS_DEFINED = len(LOOPS)  # one item per loop, told to stock, which moves nothing
CALL_TIMEOUT = 10.0
CONVERGE_SECONDS = 60.0
RETRY_SECONDS = 30.0


class LoopDriver:
    """Sends only valid operations to one loop and remembers what each card should be."""

    def __init__(self, site_id: str, loop_id: str, supplier: str, consumer: str) -> None:
        self.site_id = site_id
        self.loop_id = loop_id
        self.supplier = supplier
        self.consumer = consumer
        self.states = {f"{loop_id}-{n:03d}": pb.CARD_STATE_FULL for n in range(1, CARDS + 1)}
        # Every request that succeeded, with its answer: (rpc, request, response).
        self.done: list[tuple[str, Any, Any]] = []

    def next_request(self, rng: random.Random) -> tuple[str, Any]:
        code = rng.choice(sorted(self.states))
        state = self.states[code]
        rid = new_id("r")
        if state == pb.CARD_STATE_FULL:
            return "ScanCard", pb.ScanCardRequest(
                request_id=rid, site_id=self.site_id, station_id=self.consumer, card_code=code
            )
        if state == pb.CARD_STATE_EMPTY:
            return "StartSignal", pb.StartSignalRequest(
                request_id=rid, site_id=self.site_id, station_id=self.supplier, card_code=code
            )
        return "CompleteCard", pb.CompleteCardRequest(
            request_id=rid,
            site_id=self.site_id,
            station_id=self.supplier,
            card_code=code,
            lot_id=f"{self.loop_id}-LOT-{len(self.done)}-{rng.randrange(10**6)}",
            quantity=rng.randint(1, CONTAINER),
        )

    def record(self, rpc: str, request: Any, response: Any) -> None:
        assert response.card.card_code == request.card_code, (rpc, request, response)
        self.states[request.card_code] = response.card.state
        self.done.append((rpc, request, response))

    def count(self, rpc: str) -> int:
        return len({request.request_id for r, request, _ in self.done if r == rpc})

    @property
    def events(self) -> int:
        """Events this loop's operations sent to stock: a scan issues, a completion receives."""
        return self.count("ScanCard") + self.count("CompleteCard")


def drivers_for(site_id: str) -> list[LoopDriver]:
    return [LoopDriver(site_id, loop, supplier, consumer) for loop, supplier, consumer in LOOPS]


async def call(stub: Any, rpc: str, request: Any) -> Any:
    return await getattr(stub, rpc)(request, timeout=CALL_TIMEOUT)


async def run_operations(
    stub: Any, drivers: list[LoopDriver], count: int, rng: random.Random
) -> None:
    """`count` operations, alternating loops; every one must succeed."""
    for n in range(count):
        driver = drivers[n % len(drivers)]
        rpc, request = driver.next_request(rng)
        driver.record(rpc, request, await call(stub, rpc, request))


async def undelivered(conn: asyncpg.Connection, site_id: str) -> int:
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM stations.outbox
               WHERE site_id = $1 AND destination = 'stock' AND delivered_at IS NULL""",
            site_id,
        )
    )


async def converge(conn: asyncpg.Connection, line: Line, stock: Any) -> float:
    """Waits until stock holds, lot by lot, what the cards say; returns the seconds it took."""
    started = time.monotonic()
    last: dict[str, Any] = {}

    async def check() -> bool:
        last.clear()
        last["undelivered"] = await undelivered(conn, line.site_id)
        for loop_id, _, _ in LOOPS:
            cards = cards_by_lot(await line.cards(loop_id))
            try:
                held = await stock_by_lot(stock, line.site_id, f"SM-{loop_id}")
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                held = {"<stock unavailable>": 0}
            last[loop_id] = {"cards": cards, "stock": held}
        return last["undelivered"] == 0 and all(
            last[loop_id]["cards"] == last[loop_id]["stock"] for loop_id, _, _ in LOOPS
        )

    assert await eventually(check, timeout=CONVERGE_SECONDS, interval=0.2), (
        f"stock did not converge to the cards within {CONVERGE_SECONDS} s: {last}"
    )
    return time.monotonic() - started


async def assert_cards_as_driven(line: Line, drivers: list[LoopDriver]) -> None:
    """What stations kept across the crashes is what its answers said."""
    for driver in drivers:
        stored = {card.card_code: card.state for card in await line.cards(driver.loop_id)}
        assert stored == driver.states, (driver.loop_id, stored, driver.states)


async def assert_each_event_applied_once(
    conn: asyncpg.Connection, site_id: str, drivers: list[LoopDriver]
) -> int:
    """One outbox event per change, one movement per event that moves stock, nothing
    refused."""
    expected = OPENING_RECEIPTS + sum(d.events for d in drivers)
    sent = await conn.fetchval(
        """SELECT count(*) FROM stations.outbox WHERE site_id = $1 AND destination = 'stock'""",
        site_id,
    )
    assert sent == ITEMS_DEFINED + expected, f"stations enqueued {sent} events for stock"
    received = await conn.fetchval(
        """SELECT count(*) FROM stock.inbox
           WHERE event_id IN (SELECT event_id FROM stations.outbox
                              WHERE site_id = $1 AND destination = 'stock')""",
        site_id,
    )
    assert received == sent, f"stock recorded {received} events of {sent}"
    movements, distinct = await conn.fetchrow(
        "SELECT count(*), count(DISTINCT event_id) FROM stock.movements WHERE site_id = $1",
        site_id,
    )
    assert movements == distinct == expected, (
        f"{movements} movements for {distinct} events, expected {expected}: applied twice?"
    )
    refused = await conn.fetchval(
        "SELECT count(*) FROM stock.refused_movements WHERE site_id = $1", site_id
    )
    assert refused == 0, f"stock refused {refused} movements"
    return int(movements)


@dataclass
class Plant:
    """Stock and stations as processes (with orders, which stations also sends events
    to), a fresh line on them, and a database connection to look behind the scenes."""

    stock: ServiceProcess
    stations: ServiceProcess
    conn: asyncpg.Connection
    stations_stub: stations_pb2_grpc.StationsServiceStub
    stock_stub: stock_pb2_grpc.StockServiceStub
    line: Line
    drivers: list[LoopDriver]

    async def recovered(self) -> tuple[float, int]:
        """Waits until stock holds what the cards say, then checks the cards are as
        driven and every event was applied once; returns (seconds, movements)."""
        took = await converge(self.conn, self.line, self.stock_stub)
        await assert_cards_as_driven(self.line, self.drivers)
        movements = await assert_each_event_applied_once(self.conn, self.line.site_id, self.drivers)
        return took, movements


@asynccontextmanager
async def plant(launcher: Launcher, database_url: str) -> AsyncIterator[Plant]:
    services = await launcher.start_line()
    stock, stations = services["stock"], services["stations"]
    conn = await asyncpg.connect(database_url)
    try:
        async with open_channel(stations.address) as ch1, open_channel(stock.address) as ch2:
            stations_stub = stations_pb2_grpc.StationsServiceStub(ch1)
            stock_stub = stock_pb2_grpc.StockServiceStub(ch2)
            line = await Line(stations_stub, new_id("site")).create(
                cards=CARDS, container_quantity=CONTAINER
            )
            await converge(conn, line, stock_stub)
            yield Plant(
                stock, stations, conn, stations_stub, stock_stub, line, drivers_for(line.site_id)
            )
    finally:
        await conn.close()


class Load:
    """Terminals working both loops at once, one request at a time per loop, while
    `crash` kills a service; it runs until each loop did some work after the restart.

    A call that fails with UNAVAILABLE is sent again with the same request id until
    it succeeds: the request may or may not have committed before the crash, and
    either way the retry must get its (first) answer, not an error.
    """

    MAX_OPS = 2000  # per loop: a bound, never reached; the load stops after the restart
    OPS_AFTER_RESTART = 20  # per loop
    SECONDS = 30.0

    def __init__(self, stub: Any, drivers: list[LoopDriver], rng: random.Random) -> None:
        self.stub = stub
        self.drivers = drivers
        self.rng = rng
        self.restarted = asyncio.Event()
        self.in_flight: dict[str, str] = {}  # loop -> request id sent, not yet answered
        self.retried: set[str] = set()
        self.stats: Counter[str] = Counter()

    @property
    def ops(self) -> int:
        return sum(len(d.done) for d in self.drivers)

    async def send(self, rpc: str, request: Any) -> Any:
        clock = asyncio.get_running_loop()
        deadline = clock.time() + RETRY_SECONDS
        attempts = 0
        while True:
            try:
                response = await call(self.stub, rpc, request)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or clock.time() > deadline:
                    raise
                attempts += 1
                await asyncio.sleep(0.05)
                continue
            if attempts:
                self.retried.add(request.request_id)
                self.stats["retry_attempts"] += attempts
            return response

    async def drive(self, driver: LoopDriver) -> None:
        clock = asyncio.get_running_loop()
        stop_at = clock.time() + self.SECONDS
        after_restart = 0
        for _ in range(self.MAX_OPS):
            if after_restart >= self.OPS_AFTER_RESTART or clock.time() > stop_at:
                return
            rpc, request = driver.next_request(self.rng)
            self.in_flight[driver.loop_id] = request.request_id
            driver.record(rpc, request, await self.send(rpc, request))
            del self.in_flight[driver.loop_id]
            after_restart += self.restarted.is_set()

    async def run(self, crash: Callable[["Load"], Awaitable[None]]) -> None:
        """Runs the load and `crash(self)`, which must set `restarted` when it is done."""
        await asyncio.gather(crash(self), *(self.drive(d) for d in self.drivers))
        assert self.restarted.is_set()
        assert 0 < self.stats["ops_before_kill"] < self.ops, "the kill did not land in the load"

    async def replay_all(self) -> None:
        """Every answered request, sent again with its id: the first answer, no change."""
        gate = asyncio.Semaphore(8)

        async def replay(rpc: str, request: Any, response: Any) -> None:
            async with gate:
                again = await call(self.stub, rpc, request)
            assert again == response, (rpc, request, again, response)

        await asyncio.gather(*(replay(*done) for d in self.drivers for done in d.done))


async def test_stock_killed_loses_nothing(launcher: Launcher, database_url: str) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    async with plant(launcher, database_url) as p:
        await p.stock.kill()
        # Stations does not need stock: every operation succeeds while it is down.
        await run_operations(p.stations_stub, p.drivers, 40, rng)
        pending = await undelivered(p.conn, p.line.site_id)
        assert pending == sum(d.events for d in p.drivers) > 0

        await p.stock.start()
        took, movements = await p.recovered()
    print(
        f"\nstock SIGKILLed: seed={seed} ops=40 while down, events pending={pending}, "
        f"kills={p.stock.kills}, converged {took:.1f}s after restart, movements={movements}"
    )


async def test_stations_killed_with_undelivered_outbox_loses_nothing(
    launcher: Launcher, database_url: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    async with plant(launcher, database_url) as p:
        await p.stock.kill()
        await run_operations(p.stations_stub, p.drivers, 30, rng)
        await p.stations.kill()
        # Both are down; the events wait in the outbox of the dead stations.
        pending = await undelivered(p.conn, p.line.site_id)
        assert pending == sum(d.events for d in p.drivers) > 0

        await p.stations.start()
        await p.stock.start()
        took, movements = await p.recovered()
    print(
        f"\nstations SIGKILLed with {pending} events undelivered: seed={seed} ops=30, "
        f"kills={p.stock.kills + p.stations.kills}, converged {took:.1f}s after restart, "
        f"movements={movements}"
    )


async def test_stations_killed_mid_load_loses_nothing(
    launcher: Launcher, database_url: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kill_after = rng.uniform(0.2, 0.8)
    async with plant(launcher, database_url) as p:
        load = Load(p.stations_stub, p.drivers, rng)
        committed_unanswered: list[str] = []

        async def crash(load: Load) -> None:
            await asyncio.sleep(kill_after)
            await p.stations.kill()
            load.stats["ops_before_kill"] = load.ops
            # Requests the dead process never answered; those it had committed
            # must come back with their first answer, not be refused as, say,
            # "card already EMPTY".
            pending = list(load.in_flight.values())
            load.stats["in_flight_at_kill"] = len(pending)
            rows = await p.conn.fetch(
                """SELECT request_id FROM stations.request_log
                   WHERE site_id = $1 AND request_id = ANY($2::text[])""",
                p.line.site_id,
                pending,
            )
            committed_unanswered.extend(r["request_id"] for r in rows)
            await p.stations.start()
            load.restarted.set()

        await load.run(crash)
        assert p.stations.kills == 1 and p.stations.starts == 2
        assert load.retried, "no call saw the crash"
        # Retries of requests committed before the kill: answered with the first answer.
        from_log = len(set(committed_unanswered) & load.retried)
        await load.replay_all()

        took, movements = await p.recovered()
        for driver in p.drivers:
            # One signal per successful scan, numbered without gaps or repeats.
            sequences = await p.conn.fetch(
                """SELECT sequence FROM stations.signals
                   WHERE site_id = $1 AND station_id = $2 ORDER BY sequence""",
                p.line.site_id,
                driver.supplier,
            )
            scans = driver.count("ScanCard")
            assert [r["sequence"] for r in sequences] == list(range(1, scans + 1)), (
                f"{len(sequences)} signals at {driver.supplier} for {scans} scans"
            )
    print(
        f"\nstations SIGKILLed mid-load after {kill_after:.2f}s: seed={seed} ops={load.ops} "
        f"({load.stats['ops_before_kill']} before the kill), kills={p.stations.kills}, "
        f"unanswered at kill {load.stats['in_flight_at_kill']} "
        f"(committed {len(committed_unanswered)}), retried requests={len(load.retried)} "
        f"({from_log} already committed), "
        f"attempts={load.stats['retry_attempts']}, replayed {load.ops}, "
        f"converged {took:.1f}s, movements={movements}"
    )


async def test_stock_killed_mid_delivery_loses_nothing(
    launcher: Launcher, database_url: str
) -> None:
    """Stock dies while the relay streams events to it: a batch half applied is sent
    again and its applied half dropped as duplicates."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kill_after = rng.uniform(0.2, 0.8)
    async with plant(launcher, database_url) as p:
        load = Load(p.stations_stub, p.drivers, rng)

        async def crash(load: Load) -> None:
            await asyncio.sleep(kill_after)
            await p.stock.kill()
            load.stats["ops_before_kill"] = load.ops
            # Applied by the dead stock, not (yet) marked delivered: sent again later.
            load.stats["applied_unacknowledged"] = await p.conn.fetchval(
                """SELECT count(*) FROM stations.outbox o JOIN stock.inbox i USING (event_id)
                   WHERE o.site_id = $1 AND o.destination = 'stock'
                     AND o.delivered_at IS NULL""",
                p.line.site_id,
            )
            await asyncio.sleep(0.3)  # the load goes on without stock
            await p.stock.start()
            load.restarted.set()

        await load.run(crash)
        assert p.stock.kills == 1 and p.stock.starts == 2
        assert not load.retried, "stations failed calls while stock was down"

        took, movements = await p.recovered()
    print(
        f"\nstock SIGKILLed mid-delivery after {kill_after:.2f}s: seed={seed} ops={load.ops} "
        f"({load.stats['ops_before_kill']} before the kill), kills={p.stock.kills}, "
        f"applied but unacknowledged at kill {load.stats['applied_unacknowledged']}, "
        f"converged {took:.1f}s, movements={movements}"
    )
