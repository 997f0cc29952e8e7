"""The line the soak drives: what it believes each card, order and lot is, and
the next operation it sends."""

import itertools
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from kanban.orders.v1 import orders_pb2
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

# The mix of operations: kanban work (scan, start, complete), stock movements of a
# bought material, and orders made at the pacemaker.
MIX = {"kanban": 0.85, "stock": 0.10, "orders": 0.05}
CONTAINER = 10  # units per kanban container
PRODUCT_CONTAINER = 5  # units per order (one instruction at the pacemaker)
OPEN_ORDERS = 3  # orders in the line at once
RAW_ITEM, RAW_LOCATION, RAW_LOT, RAW_ISSUE = "RAW", "RAW-BIN", 100, 30
FG_ITEM, FG_LOCATION = "FG", "FG-BIN"


@dataclass(frozen=True)
class Options:
    """A run: how long, how fast, how big a line, how many clients connected."""

    minutes: float = 5.0
    rate: float = 30.0
    terminals: int = 50
    stations: int = 20
    loops: int = 40
    cards: int = 4
    watchers: int = 2
    interval: float = 10.0
    reconnect_seconds: float = 30.0
    seed: int = 1

    @property
    def seconds(self) -> float:
        return self.minutes * 60


@dataclass
class Card:
    code: str
    loop_id: str
    supplier: str
    consumer: str
    state: int
    busy: bool = False
    # Its open signal's sequence at the supplier, and when the consumer scanned it.
    signal: int = 0
    scanned_at: float = 0.0
    fills: int = 0


@dataclass
class Job:
    """An order of one container: created, released, started, completed at the pacemaker."""

    order_id: str
    state: str = "new"
    busy: bool = False
    # The instruction's sequence at the pacemaker, once a terminal showed it.
    sequence: int = 0

    @property
    def instruction_id(self) -> str:
        return f"{self.order_id}-0001"


@dataclass
class Operation:
    """One call to send, and what to learn from its answer."""

    rpc: str
    call: Callable[..., Awaitable[Any]]
    request: Any
    done: Callable[[Any], None]


class Check:
    """One invariant: how many times it was compared, and what did not hold."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.compared = 0
        self.violations: list[str] = []

    def expect(self, holds: bool, what: str) -> None:
        self.compared += 1
        if not holds:
            self.violations.append(what)


class Line:
    """What the soak believes the line is: each card's state, the orders in flight, the
    bought material in stock. It picks the next operation and learns from the answer.
    An EMPTY card is started only once every terminal of its supplier showed its
    signal, as an operator starts what the screen shows."""

    def __init__(
        self,
        site_id: str,
        cards: list[Card],
        pacemaker: str,
        terminals: Counter[str],
        stations: dict[str, Any],
        stock: Any,
        orders: Any,
    ) -> None:
        self.site_id = site_id
        self.cards = cards
        self.cards_by_code = {card.code: card for card in cards}
        self.pacemaker = pacemaker
        self.terminals = terminals
        self.stations, self.stock, self.orders = stations, stock, orders
        self.jobs: list[Job] = []
        self.jobs_by_instruction: dict[str, Job] = {}
        # Bought lots -> units not yet issued; finished goods lots -> units made.
        self.raw: dict[str, int] = {}
        self.made: dict[str, int] = {}
        # Station -> sequences of the signals our scans raised there.
        self.raised: defaultdict[str, set[int]] = defaultdict(set)
        # (station, sequence) -> how many of the station's terminals showed it.
        self.shown_count: Counter[tuple[str, int]] = Counter()
        self.signal_latencies: list[tuple[float, float]] = []
        self.answers = Check("every answer is the state its operation leads to")
        self.numbers = itertools.count(1)

    def next_operation(self, rng: random.Random) -> Operation | None:
        kind = rng.choices(list(MIX), list(MIX.values()))[0]
        chosen = {"stock": self._stock_operation, "orders": self._order_operation}.get(kind)
        return (chosen(rng) if chosen else None) or self._card_operation(rng)

    def shown(self, station: str, kind: str, item: Any) -> None:
        """A terminal of `station` showed `item` (a signal, an instruction ...)."""
        self.shown_count[(station, item.sequence)] += 1
        if kind == "signal" and (card := self.cards_by_code.get(item.card_code)):
            now = time.monotonic()
            self.signal_latencies.append((now, now - card.scanned_at))
        if kind == "instruction" and (job := self.jobs_by_instruction.get(item.instruction_id)):
            job.sequence = item.sequence

    def _everywhere(self, station: str, sequence: int) -> bool:
        return sequence > 0 and self.shown_count[(station, sequence)] >= self.terminals[station]

    def _card_operation(self, rng: random.Random) -> Operation | None:
        ready = [
            c
            for c in self.cards
            if not c.busy
            and (c.state != pb.CARD_STATE_EMPTY or self._everywhere(c.supplier, c.signal))
        ]
        if not ready:
            return None
        card = rng.choice(ready)
        card.busy = True
        step = {pb.CARD_STATE_FULL: self._scan, pb.CARD_STATE_EMPTY: self._start}
        return step.get(card.state, self._complete)(card)

    def _scan(self, card: Card) -> Operation:
        card.scanned_at = time.monotonic()
        request = pb.ScanCardRequest(
            request_id=new_id(), site_id=self.site_id, station_id=card.consumer, card_code=card.code
        )
        return Operation(
            "ScanCard",
            self.stations[card.consumer].ScanCard,
            request,
            lambda reply: self._scanned(card, reply),
        )

    def _start(self, card: Card) -> Operation:
        request = pb.StartSignalRequest(
            request_id=new_id(), site_id=self.site_id, station_id=card.supplier, card_code=card.code
        )
        return Operation(
            "StartSignal",
            self.stations[card.supplier].StartSignal,
            request,
            lambda reply: self._moved(card, reply, pb.CARD_STATE_IN_PROCESS),
        )

    def _complete(self, card: Card) -> Operation:
        card.fills += 1
        request = pb.CompleteCardRequest(
            request_id=new_id(),
            site_id=self.site_id,
            station_id=card.supplier,
            card_code=card.code,
            lot_id=f"{card.code}-{card.fills}",
            quantity=CONTAINER,
        )
        return Operation(
            "CompleteCard",
            self.stations[card.supplier].CompleteCard,
            request,
            lambda reply: self._moved(card, reply, pb.CARD_STATE_FULL),
        )

    def _scanned(self, card: Card, reply: Any) -> None:
        self._moved(card, reply, pb.CARD_STATE_EMPTY)
        self.answers.expect(
            reply.signal.station_id == card.supplier,
            f"ScanCard {card.code}: signal at {reply.signal.station_id}, not {card.supplier}",
        )
        card.signal = reply.signal.sequence
        self.raised[card.supplier].add(reply.signal.sequence)

    def _moved(self, card: Card, reply: Any, expected: int) -> None:
        self.answers.expect(
            reply.card.state == expected,
            f"{card.code}: answered {pb.CardState.Name(reply.card.state)}, "
            f"expected {pb.CardState.Name(expected)}",
        )
        card.state = reply.card.state
        card.busy = False

    def _stock_operation(self, rng: random.Random) -> Operation | None:
        """Receives a bought lot, or issues part of one to a station (never more than
        it holds: the units leave our books before the call, so issues never race)."""
        lots = [lot for lot, units in self.raw.items() if units > 0]
        if lots and rng.random() < 0.5:
            lot = rng.choice(lots)
            quantity = rng.randint(1, min(RAW_ISSUE, self.raw[lot]))
            self.raw[lot] -= quantity
            return Operation(
                "IssueStock",
                self.stock.IssueStock,
                stock_pb2.IssueStockRequest(
                    request_id=new_id(),
                    site_id=self.site_id,
                    location_id=RAW_LOCATION,
                    item_id=RAW_ITEM,
                    lot_id=lot,
                    quantity=quantity,
                    destination=stock_pb2.ISSUE_DESTINATION_STATION,
                    destination_id=rng.choice(sorted(self.stations)),
                ),
                lambda reply: None,
            )
        lot = f"RAW-{next(self.numbers)}"
        return Operation(
            "ReceiveStock",
            self.stock.ReceiveStock,
            stock_pb2.ReceiveStockRequest(
                request_id=new_id(),
                site_id=self.site_id,
                location_id=RAW_LOCATION,
                item_id=RAW_ITEM,
                lot_id=lot,
                quantity=RAW_LOT,
                source=stock_pb2.RECEIPT_SOURCE_SUPPLIER,
                origin_id="SUPPLIER-1",
            ),
            lambda reply: self.raw.__setitem__(lot, RAW_LOT),
        )

    def _order_operation(self, rng: random.Random) -> Operation | None:
        """Moves the first order that can move a step, or creates one if few are open."""
        open_jobs = [job for job in self.jobs if job.state != "completed"]
        for job in open_jobs:
            if not job.busy and (operation := self._job_step(job)):
                job.busy = True
                return operation
        if len(open_jobs) >= OPEN_ORDERS:
            return None
        job = Job(f"SO-{next(self.numbers)}")
        self.jobs.append(job)
        self.jobs_by_instruction[job.instruction_id] = job
        job.busy = True
        return self._job_step(job)

    def _job_step(self, job: Job) -> Operation | None:
        site, order = self.site_id, job.order_id
        match job.state:
            case "new":
                due = Timestamp()
                due.GetCurrentTime()
                request: Any = orders_pb2.CreateOrderRequest(
                    request_id=new_id(),
                    site_id=site,
                    erp_order_id=order,
                    item_id=FG_ITEM,
                    quantity=PRODUCT_CONTAINER,
                    due_time=due,
                )
                return self._job_operation(job, "CreateOrder", self.orders, request, "created")
            case "created":
                request = orders_pb2.ReleaseOrderRequest(
                    request_id=new_id(), site_id=site, erp_order_id=order
                )
                return self._job_operation(job, "ReleaseOrder", self.orders, request, "released")
            case "released" if self._everywhere(self.pacemaker, job.sequence):
                request = pb.StartInstructionRequest(
                    request_id=new_id(),
                    site_id=site,
                    station_id=self.pacemaker,
                    instruction_id=job.instruction_id,
                )
                stub = self.stations[self.pacemaker]
                return self._job_operation(job, "StartInstruction", stub, request, "started")
            case "started":
                lot = f"FG-{order}"
                request = pb.CompleteInstructionRequest(
                    request_id=new_id(),
                    site_id=site,
                    station_id=self.pacemaker,
                    instruction_id=job.instruction_id,
                    lot_id=lot,
                    quantity=PRODUCT_CONTAINER,
                )
                self.made[lot] = PRODUCT_CONTAINER
                stub = self.stations[self.pacemaker]
                return self._job_operation(job, "CompleteInstruction", stub, request, "completed")
        return None

    def _job_operation(self, job: Job, rpc: str, stub: Any, request: Any, then: str) -> Operation:
        def done(reply: Any) -> None:
            job.state, job.busy = then, False

        return Operation(rpc, getattr(stub, rpc), request, done)


def new_id() -> str:
    return uuid.uuid4().hex


def station_ids(options: Options) -> list[str]:
    return [f"S{n:02d}" for n in range(1, options.stations + 1)]


def layout(site_id: str, options: Options) -> dict[str, Any]:
    """A line of stations S01 -> S02 -> ...; loops L001, L002 ... spread over its
    neighbouring pairs; the last station makes finished goods to orders."""
    stations = station_ids(options)
    pairs = list(itertools.pairwise(stations))
    loops = [
        {
            "loop_id": f"L{n:03d}",
            "item_id": f"I{n:03d}",
            "supplier_station_id": pairs[n % len(pairs)][0],
            "consumer_station_id": pairs[n % len(pairs)][1],
            "supermarket_location_id": f"SM-L{n:03d}",
            "container_quantity": CONTAINER,
            "card_count": options.cards,
        }
        for n in range(1, options.loops + 1)
    ]
    items = [{"item_id": loop["item_id"], "unit_of_measure": "pcs"} for loop in loops]
    return {
        "site": {"site_id": site_id, "name": "Soak plant"},
        "stations": [{"station_id": s, "name": s} for s in stations],
        "items": [*items, {"item_id": FG_ITEM, "unit_of_measure": "pcs"}],
        "loops": loops,
        "warehouses": [{"warehouse_id": "WH", "name": "Soak warehouse"}],
        "locations": [
            {"location_id": location, "warehouse_id": "WH", "kind": "WAREHOUSE_BIN"}
            for location in (RAW_LOCATION, FG_LOCATION)
        ],
        "products": [
            {
                "item_id": FG_ITEM,
                "pacemaker_station_id": stations[-1],
                "container_quantity": PRODUCT_CONTAINER,
                "finished_goods_location_id": FG_LOCATION,
            }
        ],
    }
