"""Fault injection while load runs: nothing is lost or duplicated.

The whole line runs as processes on a PostgreSQL of the test's own. Stamping
supplies welding (loop P), welding supplies assembly (loop W), bending
supplies assembly (loop B); assembly is the pacemaker of the orders. Terminals
work it all at once:

- a consumer terminal per loop scans FULL cards;
- each supplier's terminal follows its station's WatchSignals stream and starts
  and completes every signal it is sent, oldest first;
- the pacemaker's terminal follows its stream and starts and completes every
  instruction it is sent, dropping withdrawn ones;
- the ERP creates and releases orders, cuts or raises some, cancels some;
- the warehouse receives, transfers and issues lots of raw material, and
  quarantines and releases one now and then.

Every change is sent again with the same request id while no answer comes
(UNAVAILABLE, DEADLINE_EXCEEDED). Meanwhile, at seeded random moments, each
service is SIGKILLed and restarted, PostgreSQL is stopped the hard way and
started again, and terminal streams are cut and resumed from the last sequence
seen.

When the load stops, the suppliers and the pacemaker finish what they were
sent and the services deliver their outboxes. Then: every emptied card gave
exactly one signal (numbered without gaps), its terminal saw every one, in
order, and no resumed stream repeated anything; the cards are as the answers
said; stock holds what the cards say, lot by lot, each event applied once;
every outbox event reached its destination's inbox; the ledger sums to on
hand; the warehouse holds what its answers say; orders made what the
completed instructions made; alerts' picture of the cards and holds agrees;
every answered change has one audit record, and sent again it gets its first
answer and changes nothing.

The report line says what the run did. Knobs, for longer runs (pytest-timeout
stops a test after 300 s; add --timeout=0):

  KANBAN_FAULTS_SECONDS      how long the load runs at least (default 12); it goes on
                             until the last fault is over
  KANBAN_FAULTS_SEED         the random seed (default: a new one, in the report): the
                             same faults at the same moments (timing still varies)
  KANBAN_FAULTS_KILLS        SIGKILLs of each service (default 1)
  KANBAN_FAULTS_PG_RESTARTS  hard restarts of PostgreSQL (default 1)

  KANBAN_FAULTS_SECONDS=600 KANBAN_FAULTS_KILLS=10 KANBAN_FAULTS_PG_RESTARTS=5 \\
      .venv/bin/pytest tests/e2e/test_faults.py --timeout=0
"""

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf import timestamp_pb2
from kanban.alerts.v1 import alerts_pb2_grpc
from kanban.orders.v1 import orders_pb2 as opb
from kanban.orders.v1 import orders_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2 as spb
from kanban.stock.v1 import stock_pb2_grpc

from tests.conftest import cards_by_lot, eventually, new_id, stock_by_lot
from tests.e2e.chaos import (
    Checks,
    Clients,
    Refused,
    RestartablePostgres,
    StationFeed,
    inject,
    plan_faults,
)
from tests.e2e.conftest import SETTINGS, Launcher, ServiceProcess, open_channel

SERVICES = ("alerts", "stock", "orders", "stations")
CARDS = 4
CONTAINER = 20
PACEMAKER = "ASSY"
PRODUCT = "CHASSIS"
ORDER_CONTAINER = 10
WAREHOUSE_BINS = ("BIN-A", "BIN-B")
RAW = "RAW"
SETTLE_SECONDS = 240.0


@dataclass(frozen=True)
class Knobs:
    seconds: float
    seed: int
    kills: int
    pg_restarts: int

    @classmethod
    def from_env(cls) -> "Knobs":
        env = os.environ
        seed = env.get("KANBAN_FAULTS_SEED")
        return cls(
            seconds=float(env.get("KANBAN_FAULTS_SECONDS", "12")),
            seed=int(seed) if seed else random.randrange(2**32),
            kills=int(env.get("KANBAN_FAULTS_KILLS", "1")),
            pg_restarts=int(env.get("KANBAN_FAULTS_PG_RESTARTS", "1")),
        )


@dataclass
class LoopModel:
    """One loop as the answers its terminals got say it is."""

    loop_id: str
    item_id: str
    supplier: str
    consumer: str
    # Per card: the scans and completions answered, and the lot it holds when FULL.
    scans: Counter[str] = field(default_factory=Counter)
    completions: Counter[str] = field(default_factory=Counter)
    contents: dict[str, tuple[str, int]] = field(default_factory=dict)

    def full_cards(self) -> list[str]:
        return [c for c in self.contents if self.scans[c] == self.completions[c]]


# loop, item, supplier, consumer
LOOPS = (
    ("P", "PART", "STAMP", "WELD"),
    ("W", "WELDED", "WELD", "ASSY"),
    ("B", "BRACKET", "BEND", "ASSY"),
)


class Plant:
    """The site, the clients, and what the terminals were answered."""

    def __init__(self, clients: Clients, site_id: str, rng: random.Random) -> None:
        self.clients = clients
        self.site_id = site_id
        self.rng = rng
        self.loops = {spec[0]: LoopModel(*spec) for spec in LOOPS}
        self.stopping = asyncio.Event()

    async def stations(self, rpc: str, request: Any) -> Any:
        return await self.clients.send("stations", rpc, request)

    async def create(self) -> None:
        site = self.site_id
        await self.stations(
            "CreateSite",
            pb.CreateSiteRequest(request_id=new_id("r"), site_id=site, name="Fault plant"),
        )
        for station in ("STAMP", "WELD", "BEND", "ASSY"):
            await self.stations(
                "CreateStation",
                pb.CreateStationRequest(
                    request_id=new_id("r"), site_id=site, station_id=station, name=station
                ),
            )
        for loop in self.loops.values():
            await self.stations(
                "CreateItem",
                pb.CreateItemRequest(
                    request_id=new_id("r"),
                    site_id=site,
                    item_id=loop.item_id,
                    unit_of_measure="pcs",
                ),
            )
            created = await self.stations(
                "CreateLoop",
                pb.CreateLoopRequest(
                    request_id=new_id("r"),
                    site_id=site,
                    loop_id=loop.loop_id,
                    item_id=loop.item_id,
                    supplier_station_id=loop.supplier,
                    consumer_station_id=loop.consumer,
                    supermarket_location_id=f"SM-{loop.loop_id}",
                    container_quantity=CONTAINER,
                    card_count=CARDS,
                ),
            )
            loop.contents = {c.card_code: (c.lot_id, c.quantity) for c in created.cards}
        await self.clients.send(
            "orders",
            "DefineProduct",
            opb.DefineProductRequest(
                request_id=new_id("r"),
                site_id=site,
                item_id=PRODUCT,
                pacemaker_station_id=PACEMAKER,
                container_quantity=ORDER_CONTAINER,
                finished_goods_location_id="FG",
            ),
        )

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))

    async def consume(self, loop: LoopModel) -> None:
        """The consumer's terminal: takes a FULL container and scans its card."""
        while not self.stopping.is_set():
            full = loop.full_cards()
            if not full:
                await self.pause(0.02, 0.05)
                continue
            card = self.rng.choice(full)
            answer = await self.stations(
                "ScanCard",
                pb.ScanCardRequest(
                    request_id=new_id("scan"),
                    site_id=self.site_id,
                    station_id=loop.consumer,
                    card_code=card,
                ),
            )
            assert answer.card.state == pb.CARD_STATE_EMPTY, answer
            loop.scans[card] += 1
            await self.pause(0.05, 0.2)


class Supplier:
    """A supplier station's terminal: makes what its stream asks for, oldest first."""

    def __init__(self, plant: Plant, stub: Any, loop: LoopModel) -> None:
        self.plant = plant
        self.loop = loop
        self.queue: asyncio.Queue[pb.Signal] = asyncio.Queue()
        self.busy = False
        self.feed = StationFeed(stub, plant.site_id, loop.supplier, self._seen)

    def _seen(self, message: pb.WatchSignalsResponse) -> None:
        # A supplier of this line is sent signals only: no orders, no holds.
        assert message.WhichOneof("message") == "signal", message
        self.queue.put_nowait(message.signal)

    @property
    def idle(self) -> bool:
        return self.queue.empty() and not self.busy

    async def work(self) -> None:
        plant, loop = self.plant, self.loop
        while True:
            signal = await self.queue.get()
            self.busy = True
            card = signal.card_code
            started = await plant.stations(
                "StartSignal",
                pb.StartSignalRequest(
                    request_id=new_id("start"),
                    site_id=plant.site_id,
                    station_id=loop.supplier,
                    card_code=card,
                ),
            )
            assert started.signal.sequence == signal.sequence, (started, signal)
            lot = f"{card}-LOT-{loop.completions[card] + 1}"
            quantity = plant.rng.randint(1, CONTAINER)
            await plant.stations(
                "CompleteCard",
                pb.CompleteCardRequest(
                    request_id=new_id("complete"),
                    site_id=plant.site_id,
                    station_id=loop.supplier,
                    card_code=card,
                    lot_id=lot,
                    quantity=quantity,
                ),
            )
            loop.completions[card] += 1
            loop.contents[card] = (lot, quantity)
            self.busy = False


class Pacemaker:
    """The pacemaker's terminal: makes every instruction its stream announces, in the
    order announced, and drops those withdrawn."""

    def __init__(self, plant: Plant, stub: Any) -> None:
        self.plant = plant
        # Instruction ids to make, in the order announced (a dict keeps it).
        self.queued: dict[str, None] = {}
        self.announced: set[str] = set()
        # Started, or found withdrawn: announced again (a cut shrank it before it
        # started), it is not queued again.
        self.taken: set[str] = set()
        self.completed: set[str] = set()
        self.made: Counter[str] = Counter()
        self.busy = False
        self.woken = asyncio.Event()
        self.feed = StationFeed(stub, plant.site_id, PACEMAKER, self._seen)

    def _seen(self, message: pb.WatchSignalsResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "instruction":
            instruction_id = message.instruction.instruction_id
            self.announced.add(instruction_id)
            if instruction_id not in self.taken:
                self.queued[instruction_id] = None
        else:
            # No holds at the pacemaker's supermarkets in this run: only withdrawals.
            assert kind == "withdrawal", message
            self.queued.pop(message.withdrawal.instruction_id, None)
        self.woken.set()

    @property
    def idle(self) -> bool:
        return not self.queued and not self.busy

    async def work(self) -> None:
        plant = self.plant
        while True:
            if not self.queued:
                self.woken.clear()
                await self.woken.wait()
                continue
            instruction_id = next(iter(self.queued))
            self.busy = True
            self.taken.add(instruction_id)
            del self.queued[instruction_id]
            try:
                started = await plant.stations(
                    "StartInstruction",
                    pb.StartInstructionRequest(
                        request_id=new_id("istart"),
                        site_id=plant.site_id,
                        station_id=PACEMAKER,
                        instruction_id=instruction_id,
                    ),
                )
            except Refused as refused:
                # The withdrawal crossed the start on its way here.
                assert refused.refusal.reason == "INSTRUCTION_WITHDRAWN", refused
                self.busy = False
                continue
            done = await plant.stations(
                "CompleteInstruction",
                pb.CompleteInstructionRequest(
                    request_id=new_id("icomplete"),
                    site_id=plant.site_id,
                    station_id=PACEMAKER,
                    instruction_id=instruction_id,
                    lot_id=f"FG-{instruction_id}",
                    quantity=started.instruction.quantity,
                ),
            )
            self.completed.add(instruction_id)
            self.made[done.instruction.erp_order_id] += done.instruction.made_quantity
            self.busy = False


class Erp:
    """Creates and releases orders; cuts, raises or cancels some of them."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.orders: list[str] = []

    async def send(self, rpc: str, request: Any) -> Any:
        return await self.plant.clients.send("orders", rpc, request)

    async def run(self) -> None:
        plant, site = self.plant, self.plant.site_id
        due = timestamp_pb2.Timestamp()
        due.FromDatetime(datetime.now(UTC) + timedelta(days=1))
        while not plant.stopping.is_set():
            order_id = f"SO-{len(self.orders) + 1}"
            await self.send(
                "CreateOrder",
                opb.CreateOrderRequest(
                    request_id=new_id("create"),
                    site_id=site,
                    erp_order_id=order_id,
                    item_id=PRODUCT,
                    quantity=plant.rng.randint(15, 45),
                    due_time=due,
                    priority=plant.rng.randint(0, 3),
                ),
            )
            self.orders.append(order_id)
            await self.send(
                "ReleaseOrder",
                opb.ReleaseOrderRequest(
                    request_id=new_id("release"), site_id=site, erp_order_id=order_id
                ),
            )
            await plant.pause(0.2, 0.8)
            roll = plant.rng.random()
            try:
                if roll < 0.4:
                    await self.send(
                        "ChangeOrderQuantity",
                        opb.ChangeOrderQuantityRequest(
                            request_id=new_id("change"),
                            site_id=site,
                            erp_order_id=order_id,
                            quantity=plant.rng.randint(5, 60),
                        ),
                    )
                elif roll < 0.6:
                    await self.send(
                        "CancelOrder",
                        opb.CancelOrderRequest(
                            request_id=new_id("cancel"),
                            site_id=site,
                            erp_order_id=order_id,
                            reason="the customer cancelled",
                        ),
                    )
            except Refused as refused:
                # The pacemaker got there first: the order is made, or made beyond the cut.
                assert refused.refusal.reason in ("ORDER_CLOSED", "QUANTITY_BELOW_MADE"), refused
            await plant.pause(0.1, 0.4)


class Warehouse:
    """Moves raw material between bins and to the line; quality holds a lot now and
    then and releases it."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.levels: Counter[tuple[str, str]] = Counter()  # (location, lot) -> units
        self.held: set[str] = set()
        self.lots = 0

    async def send(self, rpc: str, request: Any) -> Any:
        return await self.plant.clients.send("stock", rpc, request)

    async def create(self) -> None:
        site = self.plant.site_id
        await self.send(
            "CreateWarehouse",
            spb.CreateWarehouseRequest(
                request_id=new_id("r"), site_id=site, warehouse_id="WH", name="Main"
            ),
        )
        for location in WAREHOUSE_BINS:
            await self.send(
                "CreateLocation",
                spb.CreateLocationRequest(
                    request_id=new_id("r"),
                    site_id=site,
                    location_id=location,
                    warehouse_id="WH",
                    kind=spb.LOCATION_KIND_WAREHOUSE_BIN,
                ),
            )
        await self.send(
            "CreateItem",
            spb.CreateItemRequest(
                request_id=new_id("r"), site_id=site, item_id=RAW, unit_of_measure="kg"
            ),
        )

    def usable(self, location: str) -> list[str]:
        return sorted(
            lot
            for (where, lot), units in self.levels.items()
            if where == location and units > 0 and lot not in self.held
        )

    async def run(self) -> None:
        plant, rng, site = self.plant, self.plant.rng, self.plant.site_id
        while not plant.stopping.is_set():
            in_a, in_b = self.usable("BIN-A"), self.usable("BIN-B")
            roll = rng.random()
            if self.held and roll < 0.15:
                lot = self.held.pop()
                await self.send(
                    "ReleaseLot",
                    spb.ReleaseLotRequest(
                        request_id=new_id("unhold"), site_id=site, lot_id=lot, comment="fine"
                    ),
                )
            elif not self.held and in_a and roll < 0.25:
                lot = rng.choice(in_a)
                await self.send(
                    "QuarantineLot",
                    spb.QuarantineLotRequest(
                        request_id=new_id("hold"), site_id=site, lot_id=lot, reason="rust"
                    ),
                )
                self.held.add(lot)
            elif in_a and roll < 0.55:
                lot = rng.choice(in_a)
                units = rng.randint(1, self.levels["BIN-A", lot])
                await self.send(
                    "TransferStock",
                    spb.TransferStockRequest(
                        request_id=new_id("move"),
                        site_id=site,
                        from_location_id="BIN-A",
                        to_location_id="BIN-B",
                        item_id=RAW,
                        lot_id=lot,
                        quantity=units,
                    ),
                )
                self.levels["BIN-A", lot] -= units
                self.levels["BIN-B", lot] += units
            elif in_b and roll < 0.8:
                lot = rng.choice(in_b)
                units = rng.randint(1, self.levels["BIN-B", lot])
                await self.send(
                    "IssueStock",
                    spb.IssueStockRequest(
                        request_id=new_id("issue"),
                        site_id=site,
                        location_id="BIN-B",
                        item_id=RAW,
                        lot_id=lot,
                        quantity=units,
                        destination=spb.ISSUE_DESTINATION_STATION,
                        destination_id="STAMP",
                    ),
                )
                self.levels["BIN-B", lot] -= units
            else:
                self.lots += 1
                lot = f"RAW-{self.lots}"
                await self.send(
                    "ReceiveStock",
                    spb.ReceiveStockRequest(
                        request_id=new_id("receive"),
                        site_id=site,
                        location_id="BIN-A",
                        item_id=RAW,
                        lot_id=lot,
                        quantity=100,
                        source=spb.RECEIPT_SOURCE_SUPPLIER,
                        origin_id="ACME",
                    ),
                )
                self.levels["BIN-A", lot] += 100
            await plant.pause(0.1, 0.3)


async def drop_streams(plant: Plant, feeds: list[StationFeed]) -> None:
    while not plant.stopping.is_set():
        await plant.pause(0.3, 1.5)
        plant.rng.choice(feeds).drop()


# Looking behind the scenes


async def undelivered(conn: asyncpg.Connection, site_id: str) -> int:
    return sum(
        [
            await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE site_id = $1 AND delivered_at IS NULL",
                site_id,
            )
            for schema in SERVICES
        ]
    )


async def unfinished_work(conn: asyncpg.Connection, site_id: str) -> int:
    return int(
        await conn.fetchval(
            """SELECT (SELECT count(*) FROM stations.signals
                       WHERE site_id = $1 AND state IN ('OPEN', 'STARTED'))
                    + (SELECT count(*) FROM stations.instructions
                       WHERE site_id = $1 AND state IN ('OPEN', 'STARTED'))""",
            site_id,
        )
    )


async def snapshot(conn: asyncpg.Connection, site_id: str) -> dict[str, int]:
    """Row counts of everything a change writes: a replayed request must change none."""
    tables = [
        f"{schema}.{table}"
        for schema in SERVICES
        for table in ("outbox", "request_log", "audit_log")
    ] + [
        "stations.signals",
        "stations.instructions",
        "stations.cards",
        "stock.movements",
        "stock.lots",
        "orders.orders",
        "orders.order_updates",
        "orders.instruction_completions",
    ]
    return {
        table: await conn.fetchval(f"SELECT count(*) FROM {table} WHERE site_id = $1", site_id)
        for table in tables
    }


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Run:
    plant: Plant
    suppliers: list[Supplier]
    pacemaker: Pacemaker
    erp: Erp
    warehouse: Warehouse
    stubs: dict[str, Any]

    @property
    def feeds(self) -> list[StationFeed]:
        return [s.feed for s in self.suppliers] + [self.pacemaker.feed]

    @property
    def idle(self) -> bool:
        return self.pacemaker.idle and all(s.idle for s in self.suppliers)


async def check_line(run: Run, conn: asyncpg.Connection, checks: Checks) -> None:
    """Signals, streams, cards, stock and alerts' picture of the cards."""
    site = run.plant.site_id
    for supplier in run.suppliers:
        loop = supplier.loop
        rows = await conn.fetch(
            """SELECT sequence, state FROM stations.signals
               WHERE site_id = $1 AND station_id = $2 ORDER BY sequence""",
            site,
            loop.supplier,
        )
        scans = sum(loop.scans.values())
        checks.equal(
            [r["sequence"] for r in rows],
            list(range(1, scans + 1)),
            f"signals at {loop.supplier} for {scans} scans",
        )
        checks.equal(
            {r["state"] for r in rows} - {"COMPLETED"}, set(), f"signals left at {loop.supplier}"
        )
        checks.equal(
            [m.signal.sequence for m in supplier.feed.seen],
            list(range(1, scans + 1)),
            f"signals the {loop.supplier} terminal saw",
        )
        checks.equal(sum(loop.completions.values()), scans, f"completions of loop {loop.loop_id}")
        reply = await run.stubs["stations"].GetLoop(
            pb.GetLoopRequest(site_id=site, loop_id=loop.loop_id), timeout=30
        )
        cards = list(reply.cards)
        for card in cards:
            checks.equal(
                (pb.CardState.Name(card.state), card.lot_id, card.quantity),
                ("CARD_STATE_FULL", *loop.contents[card.card_code]),
                f"card {card.card_code}",
            )
        held = await stock_by_lot(run.stubs["stock"], site, f"SM-{loop.loop_id}")
        checks.equal(held, cards_by_lot(cards), f"stock in SM-{loop.loop_id} against its cards")
        pictured = await conn.fetch(
            """SELECT card_code, state, quantity FROM alerts.cards
               WHERE site_id = $1 AND loop_id = $2""",
            site,
            loop.loop_id,
        )
        checks.equal(
            {r["card_code"]: (r["state"], r["quantity"]) for r in pictured},
            {c.card_code: ("FULL", c.quantity) for c in cards},
            f"alerts' picture of loop {loop.loop_id}",
        )
    for feed in run.feeds:
        checks.equal(feed.repeats, [], f"repeats on the {feed.station_id} stream")


async def check_events(run: Run, conn: asyncpg.Connection, checks: Checks) -> None:
    """Every event reached its destination once; stock applied each kanban move once."""
    site = run.plant.site_id
    for source in SERVICES:
        rows = await conn.fetch(
            f"""SELECT destination, count(*) AS sent FROM {source}.outbox
                WHERE site_id = $1 GROUP BY destination""",
            site,
        )
        for row in rows:
            destination = row["destination"]
            received = await conn.fetchval(
                f"""SELECT count(*) FROM {destination}.inbox i JOIN {source}.outbox o
                    USING (event_id) WHERE o.site_id = $1 AND o.destination = $2""",
                site,
                destination,
            )
            checks.equal(received, row["sent"], f"{source} events in {destination}'s inbox")
    loops = run.plant.loops.values()
    expected = (
        len(loops)  # opening stock of each loop
        + sum(sum(loop.scans.values()) + sum(loop.completions.values()) for loop in loops)
        + len(run.pacemaker.completed)  # finished goods received
    )
    movements, distinct = await conn.fetchrow(
        """SELECT count(*), count(DISTINCT event_id) FROM stock.movements
           WHERE site_id = $1 AND event_id IS NOT NULL""",
        site,
    )
    checks.equal((movements, distinct), (expected, expected), "kanban movements, distinct events")
    refused = await conn.fetchval(
        "SELECT count(*) FROM stock.refused_movements WHERE site_id = $1", site
    )
    checks.equal(refused, 0, "movements stock refused")


async def check_stock(run: Run, conn: asyncpg.Connection, checks: Checks) -> None:
    """The ledger sums to on hand everywhere; the warehouse holds what it was answered;
    holds agree in stock, stations and alerts."""
    site = run.plant.site_id
    rows = await conn.fetch(
        """WITH ledger AS (SELECT location_id, item_id, lot_id, sum(quantity) AS total
                           FROM stock.movements WHERE site_id = $1 GROUP BY 1, 2, 3),
                held AS (SELECT location_id, item_id, lot_id, quantity
                         FROM stock.on_hand WHERE site_id = $1)
           SELECT location_id, item_id, lot_id,
                  coalesce(total, 0) AS total, coalesce(quantity, 0) AS quantity
           FROM ledger FULL JOIN held USING (location_id, item_id, lot_id)""",
        site,
    )
    for row in rows:
        checks.equal(
            row["total"], row["quantity"], f"ledger sum of {row['lot_id']} at {row['location_id']}"
        )
    for location in WAREHOUSE_BINS:
        expected = {
            lot: units for (where, lot), units in run.warehouse.levels.items() if where == location
        }
        held = await stock_by_lot(run.stubs["stock"], site, location)
        checks.equal(
            {lot: units for lot, units in held.items() if units},
            {lot: units for lot, units in expected.items() if units},
            f"stock in {location}",
        )
    holds = {
        "stock": "SELECT lot_id FROM stock.lots WHERE site_id = $1 AND status = 'QUARANTINED'",
        "stations": "SELECT lot_id FROM stations.lot_holds WHERE site_id = $1",
        "alerts": "SELECT lot_id FROM alerts.lot_holds WHERE site_id = $1",
    }
    for service, query in holds.items():
        lots = {r["lot_id"] for r in await conn.fetch(query, site)}
        checks.equal(lots, run.warehouse.held, f"lots on hold in {service}")


async def check_orders(run: Run, conn: asyncpg.Connection, checks: Checks) -> None:
    """Orders made what the completed instructions made; the pacemaker saw every one."""
    site = run.plant.site_id
    orders = {
        r["erp_order_id"]: r["made_quantity"]
        for r in await conn.fetch(
            "SELECT erp_order_id, made_quantity FROM orders.orders WHERE site_id = $1", site
        )
    }
    checks.equal(sorted(orders), sorted(run.erp.orders), "orders")
    instructions = await conn.fetch(
        """SELECT instruction_id, erp_order_id, state, made_quantity FROM stations.instructions
           WHERE site_id = $1""",
        site,
    )
    made_in_stations: Counter[str] = Counter()
    for row in instructions:
        made_in_stations[row["erp_order_id"]] += row["made_quantity"]
        if row["state"] != "WITHDRAWN":
            checks.expect(
                row["instruction_id"] in run.pacemaker.announced,
                f"instruction {row['instruction_id']} never reached the pacemaker's terminal",
            )
    checks.equal(
        {r["instruction_id"] for r in instructions if r["state"] == "COMPLETED"},
        run.pacemaker.completed,
        "instructions completed",
    )
    counted = {
        r["erp_order_id"]: r["made"]
        for r in await conn.fetch(
            """SELECT erp_order_id, sum(quantity) AS made FROM orders.instruction_completions
               WHERE site_id = $1 GROUP BY erp_order_id""",
            site,
        )
    }
    for order_id, made in orders.items():
        answered = run.pacemaker.made[order_id]
        checks.equal(made, answered, f"made quantity of {order_id}")
        checks.equal(made_in_stations[order_id], answered, f"made in stations for {order_id}")
        checks.equal(counted.get(order_id, 0), answered, f"completions counted for {order_id}")


async def check_requests(run: Run, conn: asyncpg.Connection, checks: Checks) -> None:
    """Each answered change took effect once: one audit record of it, in its service."""
    site = run.plant.site_id
    for service in SERVICES:
        recorded = {
            r["request_id"]: r["records"]
            for r in await conn.fetch(
                f"""SELECT request_id, count(*) AS records FROM {service}.audit_log
                    WHERE site_id = $1 AND result = 'OK' GROUP BY request_id""",
                site,
            )
        }
        answered = {
            a.request.request_id: 1 for a in run.plant.clients.answered if a.service == service
        }
        checks.equal(recorded, answered, f"audit records of {service}'s answered changes")


async def settle(run: Run, conn: asyncpg.Connection, services: dict[str, ServiceProcess]) -> None:
    """Waits until the terminals finished what they were sent and every outbox is
    delivered."""
    site = run.plant.site_id

    async def settled() -> bool:
        return (
            run.idle
            and await unfinished_work(conn, site) == 0
            and await undelivered(conn, site) == 0
        )

    assert await eventually(settled, timeout=SETTLE_SECONDS, interval=0.2), (
        f"not settled within {SETTLE_SECONDS} s: terminals idle={run.idle}, "
        f"signals and instructions unfinished={await unfinished_work(conn, site)}, "
        f"events undelivered={await undelivered(conn, site)}, "
        f"services exited={[n for n, s in services.items() if not s.running]}"
    )


async def test_nothing_is_lost_or_duplicated_under_faults(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    knobs = Knobs.from_env()
    # Captured output shows it if the run fails before it reports.
    print(f"\nKANBAN_FAULTS_SEED={knobs.seed}")
    rng = random.Random(knobs.seed)
    faults = plan_faults(rng, knobs.seconds, list(SERVICES), knobs.kills, knobs.pg_restarts)
    fault_log: list[str] = []
    postgres = await RestartablePostgres.start(tmp_path / "pgdata")
    launcher = Launcher(postgres.url, tmp_path, SETTINGS)
    try:
        services = await launcher.start_line()
        async with AsyncExitStack() as stack:
            channels = {
                name: await stack.enter_async_context(open_channel(services[name].address))
                for name in SERVICES
            }
            stubs = {
                "stations": stations_pb2_grpc.StationsServiceStub(channels["stations"]),
                "stock": stock_pb2_grpc.StockServiceStub(channels["stock"]),
                "orders": orders_pb2_grpc.OrdersServiceStub(channels["orders"]),
                "alerts": alerts_pb2_grpc.AlertsServiceStub(channels["alerts"]),
            }
            clients = Clients(stubs)
            plant = Plant(clients, new_id("site"), rng)
            await plant.create()
            warehouse = Warehouse(plant)
            await warehouse.create()
            run = Run(
                plant,
                [Supplier(plant, stubs["stations"], loop) for loop in plant.loops.values()],
                Pacemaker(plant, stubs["stations"]),
                Erp(plant),
                warehouse,
                stubs,
            )

            async with asyncio.TaskGroup() as tasks:
                terminals = [
                    *(tasks.create_task(feed.run()) for feed in run.feeds),
                    *(tasks.create_task(supplier.work()) for supplier in run.suppliers),
                    tasks.create_task(run.pacemaker.work()),
                ]
                load = [
                    *(tasks.create_task(plant.consume(loop)) for loop in plant.loops.values()),
                    tasks.create_task(run.erp.run()),
                    tasks.create_task(warehouse.run()),
                    tasks.create_task(drop_streams(plant, run.feeds)),
                ]
                began = time.monotonic()
                # The load goes on until the last fault is over: each one lands in it.
                await asyncio.gather(
                    asyncio.sleep(knobs.seconds),
                    inject(faults, services, postgres, fault_log),
                )
                plant.stopping.set()
                await asyncio.gather(*load)
                stopped = time.monotonic()
                conn = await stack.enter_async_context(connected(postgres.url))
                await settle(run, conn, services)
                converged = time.monotonic() - stopped
                for task in terminals:
                    task.cancel()

            checks = Checks()
            await check_line(run, conn, checks)
            await check_events(run, conn, checks)
            await check_stock(run, conn, checks)
            await check_orders(run, conn, checks)
            await check_requests(run, conn, checks)
            before = await snapshot(conn, plant.site_id)
            mismatches = await clients.replay(clients.answered)
            checks.equal(mismatches, [], "answers to replayed requests")
            checks.equal(await snapshot(conn, plant.site_id), before, "rows after the replay")
    finally:
        await launcher.close()
        await postgres.stop()

    scans = sum(sum(loop.scans.values()) for loop in plant.loops.values())
    report(
        f"seed={knobs.seed} load {stopped - began:.0f} s: ops={len(clients.answered)} "
        f"(scans {scans}, orders {len(run.erp.orders)}, instructions made "
        f"{len(run.pacemaker.completed)}, warehouse lots {warehouse.lots}; refused as "
        f"expected {dict(clients.refused) or 0}), "
        f"kills: {', '.join(f'{name} {services[name].kills}' for name in SERVICES)}, "
        f"postgres restarts={postgres.restarts}, "
        f"streams dropped={sum(f.drops for f in run.feeds)} "
        f"(broken by faults {sum(sum(f.breaks.values()) for f in run.feeds)}, "
        f"reopened {sum(f.opened for f in run.feeds)}), "
        f"retries={len(clients.retried)} requests ({clients.attempts} attempts), "
        f"replayed={len(clients.answered)}, invariant checks={checks.count}, "
        f"violations={len(checks.violations)}, converged in {converged:.1f} s; "
        f"faults: {'; '.join(fault_log)}"
    )
    assert not checks.violations, "\n".join(checks.violations)
