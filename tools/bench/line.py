"""The benchmark's line: tokens, stations, loops of FULL cards made as the phases
need them, and each card's state as the phases leave it."""

import asyncio
import itertools
import math
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core import auth, tokens
from services.core.auth import Role

CARDS_PER_LOOP = 999  # services.stations.domain.MAX_CARDS_PER_LOOP: fewer loops to create
CONTAINER = 10  # units per container
LOOPS_AT_ONCE = 4  # CreateLoop calls in flight while the line grows
TOKEN_PREFIX = "bench-"


@dataclass(frozen=True)
class Tokens:
    """The services' token, an administrator's (sets up the line and watches every
    station's signals as a planner may), and one operator token per station: a scan,
    start or complete is allowed only to an operator of the station it names."""

    service: str
    admin: str
    stations: dict[str, str]


async def issue_tokens(database_url: str, stations: list[str], site_id: str) -> Tokens:
    conn = await asyncpg.connect(database_url)
    try:
        await auth.ensure_schema(conn)
        return Tokens(
            service=await tokens.issue(conn, f"{TOKEN_PREFIX}services", [Role.SERVICE]),
            admin=await tokens.issue(conn, f"{TOKEN_PREFIX}admin", [Role.PLANNER, Role.ADMIN]),
            stations={
                station: await tokens.issue(
                    conn, f"{TOKEN_PREFIX}{station}", [Role.OPERATOR], site_id, station
                )
                for station in stations
            },
        )
    finally:
        await conn.close()


async def revoke_tokens(database_url: str, stations: list[str]) -> None:
    """On a database of one's own (DATABASE_URL) the benchmark leaves no valid token."""
    conn = await asyncpg.connect(database_url)
    try:
        for name in ["services", "admin", *stations]:
            await tokens.revoke(conn, f"{TOKEN_PREFIX}{name}", "", development=False)
    finally:
        await conn.close()


@dataclass(frozen=True)
class Card:
    code: str
    loop_id: str
    supplier: str
    consumer: str


class Line:
    """A site of stations S01 -> S02 -> ... with loops between neighbours, round the
    pairs. Cards are handed out by state, each to one phase: a scan must find its
    card FULL, a start EMPTY, a complete IN_PROCESS.

    FULL cards are handed out one loop after another, round the loops, as on a line
    whose terminals scan at many stations at once: a phase that took a loop's cards
    in a row would have every scan in flight signal the same supplier, whose signals
    are numbered one at a time."""

    def __init__(self, stations_stub: Any, site_id: str, stations: list[str]) -> None:
        self.stub = stations_stub
        self.site_id = site_id
        self.pairs = list(itertools.pairwise(stations))
        self.loops = 0
        self.full: list[Card] = []
        self.empty: list[Card] = []
        self.in_process: list[Card] = []

    @classmethod
    async def build(cls, channel: Any, site_id: str, stations: list[str]) -> "Line":
        stub = stations_pb2_grpc.StationsServiceStub(channel)
        await stub.CreateSite(
            pb.CreateSiteRequest(request_id=new_id(), site_id=site_id, name="Bench plant")
        )
        await asyncio.gather(
            *(
                stub.CreateStation(
                    pb.CreateStationRequest(
                        request_id=new_id(), site_id=site_id, station_id=s, name=s
                    )
                )
                for s in stations
            )
        )
        return cls(stub, site_id, stations)

    async def take_full(self, count: int) -> list[Card]:
        """`count` FULL cards, making loops if there are not so many."""
        missing = count - len(self.full)
        if missing > 0:
            await self.add_loops(math.ceil(missing / CARDS_PER_LOOP))
        return take(self.full, count)

    async def add_loops(self, count: int) -> None:
        numbers = list(range(self.loops + 1, self.loops + count + 1))
        self.loops += count
        limit = asyncio.Semaphore(LOOPS_AT_ONCE)

        async def create(number: int) -> list[Card]:
            async with limit:
                return await self._create_loop(number)

        created = await asyncio.gather(*(create(n) for n in numbers))
        self.full = interleaved([self.full, *created])

    async def _create_loop(self, number: int) -> list[Card]:
        supplier, consumer = self.pairs[number % len(self.pairs)]
        loop_id, item_id = f"L{number:04d}", f"I{number:04d}"
        await self.stub.CreateItem(
            pb.CreateItemRequest(
                request_id=new_id(), site_id=self.site_id, item_id=item_id, unit_of_measure="pcs"
            )
        )
        reply = await self.stub.CreateLoop(
            pb.CreateLoopRequest(
                request_id=new_id(),
                site_id=self.site_id,
                loop_id=loop_id,
                item_id=item_id,
                supplier_station_id=supplier,
                consumer_station_id=consumer,
                supermarket_location_id=f"SM-{loop_id}",
                container_quantity=CONTAINER,
                card_count=CARDS_PER_LOOP,
                initial_card_state=pb.CARD_STATE_FULL,
            )
        )
        return [Card(c.card_code, loop_id, supplier, consumer) for c in reply.cards]


def interleaved(cards: list[list[Card]]) -> list[Card]:
    """The cards of each loop's list in turn: one of each loop, then the next of each.
    `cards` may hold an earlier interleaved list: its loops are told apart again."""
    of_loop: dict[str, list[Card]] = {}
    for card in itertools.chain.from_iterable(cards):
        of_loop.setdefault(card.loop_id, []).append(card)
    rounds = itertools.zip_longest(*of_loop.values())
    return [card for one_of_each in rounds for card in one_of_each if card is not None]


def take(cards: list[Card], count: int) -> list[Card]:
    """The first `count` cards, removed from the list."""
    taken = cards[:count]
    del cards[:count]
    return taken


# Requests, as k6 sends them (protobuf JSON names)


def scan(site_id: str, card: Card) -> dict[str, Any]:
    return {
        "request_id": new_id(),
        "site_id": site_id,
        "station_id": card.consumer,
        "card_code": card.code,
    }


def start(site_id: str, card: Card) -> dict[str, Any]:
    return {
        "request_id": new_id(),
        "site_id": site_id,
        "station_id": card.supplier,
        "card_code": card.code,
    }


def complete(site_id: str, card: Card) -> dict[str, Any]:
    return {
        **start(site_id, card),
        "lot_id": f"{card.code}-B",
        "quantity": CONTAINER,
    }


def new_id() -> str:
    return uuid.uuid4().hex
