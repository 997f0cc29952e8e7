"""A stateful property test: hypothesis drives the four running services (real gRPC,
real PostgreSQL) with random interleavings of scans, starts, completions, loop
resizes, quality holds, warehouse movements and counts, orders and instructions,
from many simulated terminals, some in concurrent bursts, with retries and dropped
streams as faults; after every step it checks the invariants of DESIGN.md §3
against a model of the line (tests/integration/line_model.py).

What is checked after every step is exact there and then: stations, stock and
orders each commit a request's change, its audit record and its answer together.
What travels between services by events (stock following the cards, orders
following the instructions) is compared once the outboxes are drained: in the
rules that need an up-to-date picture and at the end of every example.

KANBAN_PROPERTY_EXAMPLES raises the number of examples (each a fresh site on the
same services) for a longer run; KANBAN_PROPERTY_SEED replays a run's choices.
"""

import asyncio
import contextlib
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from kanban.orders.v1 import orders_pb2
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

from tests.conftest import Refusal, Stack, eventually, fresh_database, new_id, start_stack
from tests.integration.line_model import (
    BINS,
    CONTAINER,
    OK,
    PRODUCT,
    PRODUCT_CONTAINER,
    QUARANTINE_AREA,
    RAW,
    CountModel,
    LineModel,
    LoopModel,
    OrderModel,
    Tally,
    audit_result,
    outcome,
    refusal,
)

T = TypeVar("T")

EXAMPLES = int(os.environ.get("KANBAN_PROPERTY_EXAMPLES", "10"))
STEPS = 40
TERMINALS_PER_STATION = 3
# The services a test request can reach, and the schema each keeps its audit log in.
AUDITED = ("stations", "stock", "orders")
# Refusals are answers; anything else (INTERNAL, UNAVAILABLE, ...) is a server fault.
REFUSAL_CODES = (
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
)


class World:
    """What every example shares: its own event loop, the four services on a fresh
    database, and a connection pool to read their tables."""

    def __init__(self, runner: asyncio.Runner, stack: Stack, pool: asyncpg.Pool) -> None:
        self.runner = runner
        self.stack = stack
        self.pool = pool

    @classmethod
    async def start(cls, runner: asyncio.Runner, url: str) -> "World":
        stack = await start_stack(url)
        return cls(runner, stack, await asyncpg.create_pool(url, min_size=1, max_size=3))

    async def close(self) -> None:
        await self.pool.close()
        await self.stack.close()


class Calls:
    """Sends requests as named terminals; remembers each mutating request's outcome
    (what the audit log must show) and the answered ones (to retry them later)."""

    def __init__(self, stack: Stack, tally: Tally) -> None:
        self.stubs = {"stations": stack.stations, "stock": stack.stock, "orders": stack.orders}
        self.tally = tally
        # Per service: (request id, actor, audit result) rows the audit log owes us.
        self.unaudited: dict[str, Counter[tuple[str, str, str]]] = {s: Counter() for s in AUDITED}
        self.answered_ids: set[tuple[str, str]] = set()
        # (service, rpc, request, actor, first answer) of requests that succeeded.
        self.answered: list[tuple[str, str, Any, str, Any]] = []

    async def __call__(self, service: str, rpc: str, request: Any, actor: str) -> Any:
        """The reply, or the Refusal; any other failure is a server fault."""
        self.tally.ops[rpc] += 1
        try:
            reply = await getattr(self.stubs[service], rpc)(
                request, metadata=(("kanban-actor", actor),), timeout=60
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in REFUSAL_CODES:
                raise AssertionError(
                    f"{rpc} by {actor}: {error.code()} {error.details()}"
                ) from None
            answer: Any = Refusal(error)
            self.tally.refusals[outcome(answer).split()[-1]] += 1
        else:
            answer = reply
            self.tally.accepted[rpc] += 1
        if hasattr(request, "request_id"):
            self._remember(service, rpc, request, actor, answer)
        return answer

    def _remember(self, service: str, rpc: str, request: Any, actor: str, answer: Any) -> None:
        result = outcome(answer)
        key = (service, request.request_id)
        if result == OK and key in self.answered_ids:
            return  # a repeat: the first answer again, and no second record
        if result == OK:
            self.answered_ids.add(key)
            self.answered.append((service, rpc, request, actor, answer))
        self.unaudited[service][(request.request_id, actor, audit_result(result))] += 1


class Watcher:
    """A terminal's WatchSignals stream, kept open across steps; when it drops, the
    terminal is away for a while, then resumes from the last sequence it saw. It
    notes what it was sent, and anything sent twice or out of order.

    A withdrawal may only take back what the terminal may have seen: what this
    connection sent, or what came before the cursor it resumed from (the server
    cannot know what an earlier connection delivered). Checked for signals, whose
    withdrawals name their sequence.
    """

    def __init__(self, stub: Any, site_id: str, station_id: str) -> None:
        self.stub, self.site_id, self.station_id = stub, site_id, station_id
        self.cursor = 0
        self.signals: dict[int, str] = {}  # sequence -> card code
        self.withdrawn_signals: set[int] = set()
        self.instructions: dict[str, int] = {}  # id -> sequence of the last announcement
        self.withdrawn_instructions: set[str] = set()
        self.problems: list[str] = []
        self.online = False
        self.resumed_from = 0
        self.signals_on_this_connection: set[int] = set()

    async def connect(self) -> None:
        self.online = True
        self.resumed_from = self.cursor
        self.signals_on_this_connection = set()
        self._call = self.stub.WatchSignals(
            pb.WatchSignalsRequest(
                site_id=self.site_id, station_id=self.station_id, after_sequence=self.cursor
            )
        )
        self._task = asyncio.create_task(self._read(self._call))

    async def _read(self, call: Any) -> None:
        try:
            async for message in call:
                self._take(message)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.problems.append(f"the stream failed: {error.code()} {error.details()}")
            return
        self.problems.append("the stream ended though no server stopped")

    def _take(self, message: Any) -> None:
        kind = message.WhichOneof("message")
        if kind == "heartbeat":
            return
        item = getattr(message, kind)
        if item.sequence <= self.cursor:
            self.problems.append(f"{kind} {item.sequence} came after {self.cursor}")
        self.cursor = max(self.cursor, item.sequence)
        if kind == "signal":
            self.signals[item.sequence] = item.card_code
            self.signals_on_this_connection.add(item.sequence)
        elif kind == "signal_withdrawal":
            taken_back = item.signal_sequence
            if taken_back > self.resumed_from and taken_back not in self.signals_on_this_connection:
                self.problems.append(f"withdrawal of signal {taken_back}, never sent")
            self.withdrawn_signals.add(taken_back)
        elif kind == "instruction":
            self.instructions[item.instruction_id] = item.sequence
        elif kind == "withdrawal":
            self.withdrawn_instructions.add(item.instruction_id)

    async def disconnect(self) -> None:
        self.online = False
        self._call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def until_no_problems(check: Callable[[], Awaitable[list[str]]]) -> list[str]:
    """Waits until the check finds nothing wrong (for what travels asynchronously);
    what it still finds when the wait is over."""
    problems: list[str] = []

    async def none_left() -> bool:
        nonlocal problems
        problems = await check()
        return not problems

    await eventually(none_left)
    return problems


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


# Every draw is made the same way whatever the services did: hypothesis replays
# and extends earlier sequences of choices, and live services may settle a race
# differently the second time. So a step draws a fixed set of plain numbers, and
# the model maps them onto what there is (cards, lots, orders...) to act on.
CHOICE = st.integers(0, 999)  # taken modulo a count, which evens out its lean towards 0
# How much of an instruction the pacemaker makes: mostly all of it.
MADE = ("all", "all", "less", "one too many")


def between(low: int, high: int) -> st.SearchStrategy[int]:
    """Evenly from low to high: st.integers leans hard towards its bounds (a third of
    draws from 0 to 9 are 0), which would shrink every loop to one card."""
    return st.sampled_from(range(low, high + 1))


def choose(data: st.DataObject, items: Sequence[T]) -> T | None:
    """One of the items, or None if there are none."""
    index = data.draw(CHOICE)
    return items[index % len(items)] if items else None


def rarely(data: st.DataObject) -> bool:
    """True one time in ten: mostly the sensible choice, now and then the odd one."""
    return data.draw(between(0, 9)) == 0


def expect(got: str, wanted: str, what: str) -> None:
    assert got == wanted, f"{what}: expected {wanted}, got {got}"


class LineMachine(RuleBasedStateMachine):
    """One example: a fresh site with a three-station line, a warehouse and a product."""

    # What every example shares; the test sets them on a subclass of its own.
    world: World
    tally: Tally

    def __init__(self) -> None:
        super().__init__()
        tally = self.tally
        self.site = new_id("prop")
        self.model = LineModel()
        self.calls = Calls(self.world.stack, tally)
        # Per quarantined lot: the highest ledger id when its hold was answered.
        self.watermarks: dict[str, int] = {}
        # Audit log ids already compared, per service.
        self.audited_up_to = dict.fromkeys(AUDITED, 0)
        # Instructions as stations had them at the last drained moment.
        self.instructions: dict[str, asyncpg.Record] = {}
        self.set_up_checked = False
        tally.examples += 1
        self.run(self._set_up())

    def run(self, step: Coroutine[Any, Any, T]) -> T:
        return self.world.runner.run(step)

    @property
    def stations(self) -> Any:
        return self.world.stack.stations

    # Set-up

    async def _set_up(self) -> None:
        s, site, planner = "stations", self.site, "planner-1"
        await self._must(s, "CreateSite", pb.CreateSiteRequest(site_id=site, name="Plant"), planner)
        for station in ("STAMP", "WELD", "ASSY"):
            await self._must(
                s,
                "CreateStation",
                pb.CreateStationRequest(site_id=site, station_id=station, name=station),
                planner,
            )
        for item in ("PART", "WELDED"):
            await self._must(
                s,
                "CreateItem",
                pb.CreateItemRequest(site_id=site, item_id=item, unit_of_measure="pcs"),
                planner,
            )
        for loop in (
            LoopModel("P", "PART", "STAMP", "WELD", "SM-P", CONTAINER, target=3, numbered=3),
            LoopModel("W", "WELDED", "WELD", "ASSY", "SM-W", CONTAINER, target=3, numbered=3),
        ):
            await self._must(
                s,
                "CreateLoop",
                pb.CreateLoopRequest(
                    site_id=site,
                    loop_id=loop.loop_id,
                    item_id=loop.item_id,
                    supplier_station_id=loop.supplier,
                    consumer_station_id=loop.consumer,
                    supermarket_location_id=loop.location,
                    container_quantity=loop.container_quantity,
                    card_count=3,
                ),
                planner,
            )
            self.model.add_loop(loop, 3)
        keeper = "warehouse-1"
        await self._must(
            "stock",
            "CreateWarehouse",
            stock_pb2.CreateWarehouseRequest(site_id=site, warehouse_id="WH", name="Main"),
            keeper,
        )
        for location, kind in (
            *((b, stock_pb2.LOCATION_KIND_WAREHOUSE_BIN) for b in BINS),
            (QUARANTINE_AREA, stock_pb2.LOCATION_KIND_QUARANTINE),
        ):
            await self._must(
                "stock",
                "CreateLocation",
                stock_pb2.CreateLocationRequest(
                    site_id=site, location_id=location, warehouse_id="WH", kind=kind
                ),
                keeper,
            )
        await self._must(
            "stock",
            "CreateItem",
            stock_pb2.CreateItemRequest(site_id=site, item_id=RAW, unit_of_measure="kg"),
            keeper,
        )
        await self._must(
            "orders",
            "DefineProduct",
            orders_pb2.DefineProductRequest(
                site_id=site,
                item_id=PRODUCT,
                pacemaker_station_id="ASSY",
                container_quantity=PRODUCT_CONTAINER,
                finished_goods_location_id="FG",
            ),
            "erp-1",
        )
        self.watchers = {
            station: Watcher(self.stations, site, station) for station in ("STAMP", "WELD", "ASSY")
        }
        for watcher in self.watchers.values():
            await watcher.connect()

    async def _must(self, service: str, rpc: str, request: Any, actor: str) -> Any:
        request.request_id = new_id("r")
        reply = await self.calls(service, rpc, request, actor)
        assert outcome(reply) == OK, f"set-up {rpc}: {outcome(reply)}"
        return reply

    async def _send(self, service: str, rpc: str, request: Any, actor: str) -> Any:
        request.request_id = new_id("r")
        request.site_id = self.site
        return await self.calls(service, rpc, request, actor)

    def teardown(self) -> None:
        try:
            self.run(self._drained_checks())
            # Terminals away come back: they must catch up on all they missed.
            self.run(self._all_terminals_back())
        finally:
            self.run(self._disconnect_watchers())

    async def _all_terminals_back(self) -> None:
        for watcher in self.watchers.values():
            if not watcher.online:
                await watcher.connect()
        await self._check_streams()

    async def _disconnect_watchers(self) -> None:
        for watcher in self.watchers.values():
            if watcher.online:
                await watcher.disconnect()

    # Drawing what to act on

    def terminal(self, data: st.DataObject, station: str) -> str:
        return f"{station}-T{data.draw(between(1, TERMINALS_PER_STATION))}"

    def draw_card(self, data: st.DataObject, *states: int) -> str:
        """A card, preferably in one of the states given, else any (refusals are part
        of the model)."""
        cards = self.model.cards.values()
        preferred = sorted(c.code for c in cards if c.state in states)
        anything = sorted(c.code for c in cards)
        odd = rarely(data)
        code = choose(data, anything if odd or not preferred else preferred)
        assert code is not None  # a loop always has cards
        return code

    def station_for(self, data: st.DataObject, code: str, role: str) -> str:
        """Mostly the card's own consumer or supplier, now and then another station."""
        loop = self.model.loops[self.model.cards[code].loop_id]
        right = loop.consumer if role == "consumer" else loop.supplier
        odd, other = rarely(data), data.draw(st.sampled_from(["STAMP", "WELD", "ASSY"]))
        return other if odd else right

    # The pull loop: one terminal at a time

    @rule(data=st.data())
    def scan_card(self, data: st.DataObject) -> None:
        code = self.draw_card(data, pb.CARD_STATE_FULL)
        station = self.station_for(data, code, "consumer")
        self.run(self._scan(code, station, self.terminal(data, station)))

    async def _scan(self, code: str, station: str, actor: str) -> None:
        wanted = self.model.expect_scan(code, station)
        retires = self.model.to_retire(self.model.cards[code].loop_id) > 0
        reply = await self._send(
            "stations",
            "ScanCard",
            pb.ScanCardRequest(station_id=station, card_code=code),
            actor,
        )
        expect(outcome(reply), wanted, f"scan of {code} by {station}")
        if wanted == OK:
            assert reply.HasField("signal") != retires, f"{code} retired: {not retires} expected"
            self.model.scanned(reply)

    @rule(data=st.data())
    def start_signal(self, data: st.DataObject) -> None:
        """A named card, or the oldest open signal of a supplier."""
        named, code = data.draw(st.booleans()), self.draw_card(data, pb.CARD_STATE_EMPTY)
        own, supplier = (
            self.station_for(data, code, "supplier"),
            data.draw(st.sampled_from(["STAMP", "WELD"])),
        )
        station = own if named else supplier
        self.run(self._start(station, code if named else "", self.terminal(data, station)))

    async def _start(self, station: str, code: str, actor: str) -> None:
        wanted, card = self.model.expect_start(station, code)
        reply = await self._send(
            "stations",
            "StartSignal",
            pb.StartSignalRequest(station_id=station, card_code=code),
            actor,
        )
        expect(outcome(reply), wanted, f"start of {code or 'the oldest signal'} at {station}")
        if wanted == OK:
            assert reply.card.card_code == card, f"started {reply.card.card_code}, not {card}"
            self.model.started(reply)

    @rule(data=st.data())
    def complete_card(self, data: st.DataObject) -> None:
        code = self.draw_card(data, pb.CARD_STATE_IN_PROCESS)
        station = self.station_for(data, code, "supplier")
        # Now and then more than the container holds: over-production.
        quantity = data.draw(between(1, CONTAINER + 2))
        self.run(self._complete(code, station, quantity, self.terminal(data, station)))

    async def _complete(self, code: str, station: str, quantity: int, actor: str) -> None:
        wanted = self.model.expect_complete(code, station, quantity)
        reply = await self._send(
            "stations",
            "CompleteCard",
            pb.CompleteCardRequest(
                station_id=station,
                card_code=code,
                lot_id=self.model.new_id("LOT-"),
                quantity=quantity,
            ),
            actor,
        )
        expect(outcome(reply), wanted, f"completion of {code} ({quantity}) by {station}")
        if wanted == OK:
            self.model.completed(reply)

    @rule(
        moves=st.lists(
            st.tuples(CHOICE, between(1, CONTAINER), between(1, TERMINALS_PER_STATION)),
            min_size=1,
            max_size=6,
        )
    )
    def work_the_line(self, moves: list[tuple[int, int, int]]) -> None:
        """Terminals do what card after card asks for: the consumer takes a full
        container, the supplier starts an empty card or completes one in process."""

        async def work() -> None:
            for choice, quantity, terminal in moves:
                in_loops = sorted(
                    c.code for c in self.model.cards.values() if c.state != pb.CARD_STATE_RETIRED
                )
                card = self.model.cards[in_loops[choice % len(in_loops)]]
                loop = self.model.loops[card.loop_id]
                if card.state == pb.CARD_STATE_FULL:
                    await self._scan(card.code, loop.consumer, f"{loop.consumer}-T{terminal}")
                elif card.state == pb.CARD_STATE_EMPTY:
                    await self._start(loop.supplier, card.code, f"{loop.supplier}-T{terminal}")
                else:
                    actor = f"{loop.supplier}-T{terminal}"
                    await self._complete(card.code, loop.supplier, quantity, actor)

        self.run(work())

    @rule(data=st.data(), count=between(1, 6))
    def resize_loop(self, data: st.DataObject, count: int) -> None:
        loop_id = data.draw(st.sampled_from(["P", "W"]))
        self.run(self._resize(loop_id, count))

    async def _resize(self, loop_id: str, count: int) -> None:
        added, retired = self.model.expect_resize(loop_id, count)
        reply = await self._send(
            "stations",
            "ResizeLoop",
            pb.ResizeLoopRequest(loop_id=loop_id, card_count=count, reason="demand changed"),
            "planner-1",
        )
        expect(outcome(reply), OK, f"resize of {loop_id} to {count}")
        assert [c.card_code for c in reply.added_cards] == added, "cards added"
        assert [c.card_code for c in reply.retired_cards] == retired, "cards retired at once"
        self.tally.resizes += 1
        self.model.resized(loop_id, count, reply)

    # The pull loop: terminals racing

    @rule(data=st.data(), racers=between(2, 4))
    def race_for_one_card(self, data: st.DataObject, racers: int) -> None:
        """Several terminals act on the same card at once: one wins, the others are
        refused, and the card moves once."""
        action = data.draw(st.sampled_from(["scan", "start", "complete"]))
        state = {
            "scan": pb.CARD_STATE_FULL,
            "start": pb.CARD_STATE_EMPTY,
            "complete": pb.CARD_STATE_IN_PROCESS,
        }[action]
        code = self.draw_card(data, state)
        quantity = data.draw(between(1, CONTAINER))
        self.run(self._race_for_card(action, code, racers, quantity))

    async def _race_for_card(self, action: str, code: str, racers: int, quantity: int) -> None:
        loop = self.model.loops[self.model.cards[code].loop_id]
        retires = self.model.to_retire(loop.loop_id) > 0
        requests: list[Any]
        if action == "scan":
            station, rpc, loser = loop.consumer, "ScanCard", "INVALID_CARD_STATE"
            wanted = self.model.expect_scan(code, station)
            requests = [
                pb.ScanCardRequest(station_id=station, card_code=code) for _ in range(racers)
            ]
        elif action == "start":
            station, rpc, loser = loop.supplier, "StartSignal", "INVALID_CARD_STATE"
            wanted = self.model.expect_start(station, code)[0]
            requests = [
                pb.StartSignalRequest(station_id=station, card_code=code) for _ in range(racers)
            ]
        else:
            station, rpc, loser = loop.supplier, "CompleteCard", "OVERPRODUCTION_BLOCKED"
            wanted = self.model.expect_complete(code, station, quantity)
            requests = [
                pb.CompleteCardRequest(
                    station_id=station,
                    card_code=code,
                    lot_id=self.model.new_id("LOT-"),
                    quantity=quantity,
                )
                for _ in range(racers)
            ]
        replies = await asyncio.gather(
            *(
                self._send("stations", rpc, request, f"{station}-T{n}")
                for n, request in enumerate(requests, start=1)
            )
        )
        results = sorted(outcome(r) for r in replies)
        if wanted != OK:
            assert results == [wanted] * racers, f"{racers} x {rpc} {code}: {results}"
            return
        assert results == sorted([OK] + [refusal(loser)] * (racers - 1)), (
            f"{racers} x {rpc} {code}: one should win, got {results}"
        )
        (winner,) = [r for r in replies if outcome(r) == OK]
        if action == "scan":
            assert winner.HasField("signal") != retires, f"{code} retired: {not retires} expected"
            self.model.scanned(winner)
        elif action == "start":
            self.model.started(winner)
        else:
            self.model.completed(winner)

    @rule(data=st.data(), racers=between(2, 4))
    def race_to_start_signals(self, data: st.DataObject, racers: int) -> None:
        """Several terminals of a supplier take 'the oldest open signal' at once: each
        gets its own, the oldest ones, or is told there is none left."""
        station = data.draw(st.sampled_from(["STAMP", "WELD"]))
        self.run(self._race_to_start(station, racers))

    async def _race_to_start(self, station: str, racers: int) -> None:
        waiting = self.model.open_signals[station]
        oldest = sorted(waiting, key=waiting.__getitem__)[:racers]
        replies = await asyncio.gather(
            *(
                self._send(
                    "stations",
                    "StartSignal",
                    pb.StartSignalRequest(station_id=station),
                    f"{station}-T{n}",
                )
                for n in range(1, racers + 1)
            )
        )
        started = sorted(r.card.card_code for r in replies if outcome(r) == OK)
        assert started == sorted(oldest), f"started {started}, the oldest open were {oldest}"
        others = [outcome(r) for r in replies if outcome(r) != OK]
        assert others == [refusal("NO_OPEN_SIGNAL")] * (racers - len(oldest)), others
        for reply in replies:
            if outcome(reply) == OK:
                self.model.started(reply)

    @rule(data=st.data())
    def burst_of_moves(self, data: st.DataObject) -> None:
        """Scans, starts and completions of different cards at once, perhaps while a
        planner resizes one of the loops: a scan then retires its card or asks its
        supplier, and a card about to be started may retire first."""
        choices = data.draw(st.lists(CHOICE, min_size=2, max_size=5))
        cards = sorted(self.model.cards)
        codes = list(dict.fromkeys(cards[n % len(cards)] for n in choices))
        resize = data.draw(st.none() | st.tuples(st.sampled_from(["P", "W"]), between(1, 6)))
        quantity = data.draw(between(1, CONTAINER + 1))
        self.run(self._burst(codes, resize, quantity))

    async def _burst(self, codes: list[str], resize: tuple[str, int] | None, quantity: int) -> None:
        model = self.model
        moves: list[tuple[str, str, Any, str]] = []  # (code, rpc, request, wanted)
        for code in codes:
            card = model.cards[code]
            loop = model.loops[card.loop_id]
            if card.state == pb.CARD_STATE_EMPTY:
                request: Any = pb.StartSignalRequest(station_id=loop.supplier, card_code=code)
                moves.append(
                    (code, "StartSignal", request, model.expect_start(loop.supplier, code)[0])
                )
            elif card.state == pb.CARD_STATE_IN_PROCESS:
                request = pb.CompleteCardRequest(
                    station_id=loop.supplier,
                    card_code=code,
                    lot_id=model.new_id("LOT-"),
                    quantity=quantity,
                )
                moves.append(
                    (
                        code,
                        "CompleteCard",
                        request,
                        model.expect_complete(code, loop.supplier, quantity),
                    )
                )
            else:
                request = pb.ScanCardRequest(station_id=loop.consumer, card_code=code)
                moves.append((code, "ScanCard", request, model.expect_scan(code, loop.consumer)))
        calls = [
            self._send(
                "stations", rpc, request, f"{request.station_id}-T{n % TERMINALS_PER_STATION + 1}"
            )
            for n, (_, rpc, request, _) in enumerate(moves)
        ]
        if resize:
            calls.append(
                self._send(
                    "stations",
                    "ResizeLoop",
                    pb.ResizeLoopRequest(loop_id=resize[0], card_count=resize[1], reason="burst"),
                    "planner-1",
                )
            )
        replies = await asyncio.gather(*calls)
        resized = replies.pop() if resize else None
        waiting_before = {c.code for loop_id in model.loops for c in model.waiting(loop_id)}
        owed = {loop_id: max(0, model.to_retire(loop_id)) for loop_id in model.loops}
        # Per loop, for each of its scans that went through: did the card retire?
        retired_by_scan: dict[str, list[bool]] = {loop_id: [] for loop_id in model.loops}
        for (code, rpc, _, wanted), reply in zip(moves, replies, strict=True):
            got = outcome(reply)
            in_resized_loop = resize is not None and model.cards[code].loop_id == resize[0]
            if rpc == "StartSignal" and in_resized_loop and got == refusal("INVALID_CARD_STATE"):
                # The resize retired the card before the start reached it.
                assert resized is not None and code in {c.card_code for c in resized.retired_cards}
                continue
            expect(got, wanted, f"{rpc} {code} in a burst")
            if got != OK:
                continue
            if rpc == "ScanCard":
                if not in_resized_loop:
                    retired_by_scan[model.cards[code].loop_id].append(not reply.HasField("signal"))
                model.scanned(reply)
            elif rpc == "StartSignal":
                model.started(reply)
            else:
                model.completed(reply)
        # Which of a loop's scans retires its card follows the order the server took
        # them in, not this list's: as many retire as the loop owed, one per scan at most.
        for loop_id, retired in retired_by_scan.items():
            assert sum(retired) == min(owed[loop_id], len(retired)), (loop_id, owed, retired)
        if resized is not None and resize is not None:
            started = {c for c, rpc, _, _ in moves if rpc == "StartSignal"} & {
                r.card.card_code for r in replies if outcome(r) == OK
            }
            self._resized_in_burst(resize, resized, moves, waiting_before - started)

    def _resized_in_burst(
        self,
        resize: tuple[str, int],
        reply: Any,
        moves: list[tuple[str, str, Any, str]],
        waiting_before: set[str],
    ) -> None:
        """Applies a resize that raced the burst's moves: it retired cards that were
        waiting, before or after a scan in the burst emptied them."""
        expect(outcome(reply), OK, f"resize of {resize[0]} to {resize[1]} in a burst")
        loop = self.model.loops[resize[0]]
        scanned = {code for code, rpc, _, _ in moves if rpc == "ScanCard"}
        for card in reply.retired_cards:
            assert card.card_code in waiting_before | scanned, f"{card.card_code} was not waiting"
        numbers = range(loop.numbered + 1, loop.numbered + 1 + len(reply.added_cards))
        assert [c.card_code for c in reply.added_cards] == [loop.code(n) for n in numbers]
        self.model.resized(resize[0], resize[1], reply)
        self.tally.resizes += 1

    # Quality

    def lots_to_hold(self) -> list[str]:
        on_cards = {c.lot for c in self.model.cards.values() if c.state == pb.CARD_STATE_FULL}
        return sorted((on_cards | self.model.raw_lots) - self.model.written_off)

    @rule(data=st.data())
    def quarantine_lot(self, data: st.DataObject) -> None:
        if lot := choose(data, self.lots_to_hold()):
            self.run(self._quarantine(lot))

    async def _quarantine(self, lot: str) -> None:
        # A lot made at a station reaches stock by event: quality holds what it has.
        await self._until_stock_knows(lot)
        wanted = self.model.expect_quarantine(lot)
        reply = await self._send(
            "stock",
            "QuarantineLot",
            stock_pb2.QuarantineLotRequest(lot_id=lot, reason="cracks"),
            "quality-1",
        )
        expect(outcome(reply), wanted, f"quarantine of {lot}")
        if wanted != OK:
            return
        self.model.dispositions[lot] = reply.disposition.disposition_id
        async with self.world.pool.acquire() as conn:
            self.watermarks[lot] = await conn.fetchval(
                "SELECT coalesce(max(id), 0) FROM stock.movements"
            )
        # The hold reaches stations by event: from then on no scan may take the lot.
        await self._until_cards_show_hold(lot, held=True)
        self.model.held.add(lot)

    async def _until_stock_knows(self, lot: str) -> None:
        async def known() -> bool:
            try:
                await self.world.stack.stock.GetLot(
                    stock_pb2.GetLotRequest(site_id=self.site, lot_id=lot)
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False
            return True

        assert await eventually(known), f"lot {lot} never reached stock"

    async def _until_cards_show_hold(self, lot: str, *, held: bool) -> None:
        codes = {c.code for c in self.model.full_cards_of_lot(lot)}

        async def arrived() -> list[str]:
            return [
                f"{card.card_code} quarantined={card.lot_quarantined}"
                for card in await self._cards()
                if card.card_code in codes and card.lot_quarantined != held
            ]

        problems = await until_no_problems(arrived)
        assert not problems, f"the hold on {lot} (held={held}) never reached stations: {problems}"

    async def _cards(self) -> list[Any]:
        cards: list[Any] = []
        for loop_id in self.model.loops:
            reply = await self.stations.GetLoop(
                pb.GetLoopRequest(site_id=self.site, loop_id=loop_id)
            )
            cards += reply.cards
        return cards

    @rule(data=st.data())
    def release_lot(self, data: st.DataObject) -> None:
        """Mostly a held lot; now and then one that is not (refused)."""
        held = sorted(self.model.dispositions)
        if lot := choose(data, self.lots_to_hold() if rarely(data) or not held else held):
            self.run(self._release(lot))

    async def _release(self, lot: str) -> None:
        await self._until_stock_knows(lot)
        wanted = self.model.expect_release(lot)
        reply = await self._send(
            "stock",
            "ReleaseLot",
            stock_pb2.ReleaseLotRequest(lot_id=lot, comment="fine after all"),
            "quality-1",
        )
        expect(outcome(reply), wanted, f"release of {lot}")
        if wanted != OK:
            return
        del self.model.dispositions[lot]
        del self.watermarks[lot]
        await self._until_cards_show_hold(lot, held=False)
        self.model.held.discard(lot)

    @rule(data=st.data())
    def scrap_lot(self, data: st.DataObject) -> None:
        if lot := choose(data, sorted(self.model.dispositions)):
            self.run(self._scrap(lot))

    async def _scrap(self, lot: str) -> None:
        """Quality scraps a held lot: stock writes it off everywhere, and its containers'
        cards empty (or retire, while their loop shrinks) as if consumed."""
        cards = self.model.full_cards_of_lot(lot)
        to_retire = {loop_id: self.model.to_retire(loop_id) for loop_id in self.model.loops}
        reply = await self._send(
            "stock",
            "CloseDisposition",
            stock_pb2.CloseDispositionRequest(
                disposition_id=self.model.dispositions[lot],
                outcome=stock_pb2.DISPOSITION_OUTCOME_SCRAP,
                comment="cracked",
            ),
            "quality-1",
        )
        expect(outcome(reply), OK, f"scrap of {lot}")
        del self.model.dispositions[lot], self.watermarks[lot]
        self.model.written_off.add(lot)
        for key in [k for k in self.model.raw if k[1] == lot]:
            self.model.raw[key] = 0
        codes = {c.code for c in cards}

        async def written_off() -> list[str]:
            return [
                f"{c.card_code} still FULL"
                for c in await self._cards()
                if c.card_code in codes and c.state == pb.CARD_STATE_FULL
            ]

        problems = await until_no_problems(written_off)
        assert not problems, f"the write-off of {lot} never reached stations: {problems}"
        async with self.world.pool.acquire() as conn:
            open_signals = {
                r["card_code"]: r["sequence"]
                for r in await conn.fetch(
                    """SELECT card_code, sequence FROM stations.signals
                       WHERE site_id = $1 AND card_code = ANY($2::text[]) AND state = 'OPEN'""",
                    self.site,
                    sorted(codes),
                )
            }
        for card in cards:
            now = await self.stations.GetCard(
                pb.GetCardRequest(site_id=self.site, card_code=card.code)
            )
            card.lot, card.quantity, card.state = "", 0, now.card.state
            if card.state == pb.CARD_STATE_EMPTY:
                card.signals += 1
                self.model.open_signals[self.model.loops[card.loop_id].supplier][card.code] = (
                    open_signals[card.code]
                )
        for loop_id, before in to_retire.items():
            retired = sum(c.state == pb.CARD_STATE_RETIRED for c in cards if c.loop_id == loop_id)
            mine = sum(c.loop_id == loop_id for c in cards)
            assert retired == min(mine, before), (
                f"{loop_id}: {retired} of {mine} written off retired"
            )
        self.model.held.discard(lot)

    # The warehouse

    @rule(data=st.data(), quantity=between(1, 50))
    def receive_raw(self, data: st.DataObject, quantity: int) -> None:
        new, known = data.draw(st.booleans()), choose(data, sorted(self.model.raw_lots))
        lot = self.model.new_id("RAW-") if new or known is None else known
        location = data.draw(st.sampled_from(BINS))
        self.run(self._receive(lot, location, quantity, "warehouse-1"))

    async def _receive(self, lot: str, location: str, quantity: int, actor: str) -> None:
        wanted = self.model.expect_receipt(lot)
        reply = await self._send(
            "stock", "ReceiveStock", self._receipt(lot, location, quantity), actor
        )
        expect(outcome(reply), wanted, f"receipt of {quantity} {lot} at {location}")
        if wanted == OK:
            self.model.raw[(location, lot)] += quantity
            self.model.raw_lots.add(lot)

    def _receipt(self, lot: str, location: str, quantity: int) -> Any:
        return stock_pb2.ReceiveStockRequest(
            location_id=location,
            item_id=RAW,
            lot_id=lot,
            quantity=quantity,
            source=stock_pb2.RECEIPT_SOURCE_SUPPLIER,
            origin_id="ACME",
        )

    @rule(quantities=st.tuples(between(1, 50), between(1, 50)))
    def receive_one_delivery_at_two_docks(self, quantities: tuple[int, int]) -> None:
        """A supplier's new lot arrives split over two docks, received at the same time."""
        self.run(self._two_docks(self.model.new_id("RAW-"), quantities))

    async def _two_docks(self, lot: str, quantities: tuple[int, int]) -> None:
        replies = await asyncio.gather(
            *(
                self._send(
                    "stock", "ReceiveStock", self._receipt(lot, location, q), f"warehouse-{n}"
                )
                for n, (location, q) in enumerate(zip(BINS, quantities, strict=True), start=1)
            )
        )
        assert [outcome(r) for r in replies] == [OK, OK], f"two receipts of new lot {lot}"
        for location, quantity in zip(BINS, quantities, strict=True):
            self.model.raw[(location, lot)] += quantity
        self.model.raw_lots.add(lot)

    @rule(data=st.data(), location=st.sampled_from(BINS), share=between(0, 100))
    def issue_raw(self, data: st.DataObject, location: str, share: int) -> None:
        if lot := choose(data, sorted(self.model.raw_lots)):
            quantity = self.some_of(location, lot, share)
            self.run(self._issue(lot, location, quantity))

    def some_of(self, location: str, lot: str, share: int) -> int:
        """A share (in percent) of what the books hold there, and now and then more."""
        return 1 + share * (self.model.raw[(location, lot)] + 5) // 100

    async def _issue(self, lot: str, location: str, quantity: int) -> None:
        wanted = self.model.expect_take(lot, location, quantity, into_quarantine=False)
        reply = await self._send(
            "stock",
            "IssueStock",
            stock_pb2.IssueStockRequest(
                location_id=location,
                item_id=RAW,
                lot_id=lot,
                quantity=quantity,
                destination=stock_pb2.ISSUE_DESTINATION_STATION,
                destination_id="STAMP",
            ),
            "warehouse-2",
        )
        expect(outcome(reply), wanted, f"issue of {quantity} {lot} from {location}")
        if wanted == OK:
            self.model.raw[(location, lot)] -= quantity

    @rule(
        data=st.data(),
        places=st.permutations([*BINS, QUARANTINE_AREA]),
        share=between(0, 100),
    )
    def transfer_raw(self, data: st.DataObject, places: list[str], share: int) -> None:
        source, target = places[:2]
        if lot := choose(data, sorted(self.model.raw_lots)):
            self.run(self._transfer(lot, source, target, self.some_of(source, lot, share)))

    async def _transfer(self, lot: str, source: str, target: str, quantity: int) -> None:
        wanted = self.model.expect_take(
            lot, source, quantity, into_quarantine=target == QUARANTINE_AREA
        )
        reply = await self._send(
            "stock",
            "TransferStock",
            stock_pb2.TransferStockRequest(
                from_location_id=source,
                to_location_id=target,
                item_id=RAW,
                lot_id=lot,
                quantity=quantity,
            ),
            "warehouse-1",
        )
        expect(outcome(reply), wanted, f"transfer of {quantity} {lot} {source}->{target}")
        if wanted == OK:
            self.model.raw[(source, lot)] -= quantity
            self.model.raw[(target, lot)] += quantity

    # Cycle counts, spread over several steps while stock keeps moving

    @rule(
        location=st.sampled_from([*BINS, QUARANTINE_AREA]),
        tolerance=st.sampled_from([0.0, 10.0, 100.0]),
        # What the counter finds on each line: the books, or a little more or less;
        # None: a line it misses (lines beyond these are missed too).
        findings=st.lists(between(-3, 3) | st.none(), min_size=8, max_size=8),
    )
    def count_a_location(self, location: str, tolerance: float, findings: list[int | None]) -> None:
        """A counter opens a count and counts the lines it shows; it is reconciled and
        approved in later steps, while stock moves on."""
        count_id = self.model.new_id("C-")
        self.run(self._open_count(count_id, location, tolerance))
        count = self.model.counts.get(count_id)
        if count is None:
            return  # refused: the location was being counted already
        for lot, off in zip(sorted(count.lines), findings, strict=False):
            if off is not None:
                found = max(0, self.model.raw[(location, lot)] + off)
                self.run(self._record_count(count, lot, found))

    async def _open_count(self, count_id: str, location: str, tolerance: float) -> None:
        busy = any(
            c.location == location and c.state != "CLOSED" for c in self.model.counts.values()
        )
        wanted = refusal("COUNT_ALREADY_OPEN") if busy else OK
        reply = await self._send(
            "stock",
            "OpenCount",
            stock_pb2.OpenCountRequest(
                count_id=count_id, location_id=location, tolerance_percent=tolerance
            ),
            "counter-1",
        )
        expect(outcome(reply), wanted, f"count at {location}")
        if wanted != OK:
            return
        books = sorted(
            lot for (where, lot), q in self.model.raw.items() if where == location and q > 0
        )
        assert [line.lot_id for line in reply.count.lines] == books, "count lines"
        self.model.counts[count_id] = CountModel(
            count_id, location, tolerance, lines=dict.fromkeys(books)
        )

    async def _record_count(self, count: CountModel, lot: str, counted: int) -> None:
        wanted = OK if count.state == "OPEN" else refusal("INVALID_COUNT_STATE")
        reply = await self._send(
            "stock",
            "RecordCount",
            stock_pb2.RecordCountRequest(
                count_id=count.count_id, item_id=RAW, lot_id=lot, counted_quantity=counted
            ),
            "counter-1",
        )
        expect(outcome(reply), wanted, f"count of {lot} in {count.count_id}")
        if wanted == OK:
            count.lines[lot] = counted

    def draw_count(self, data: st.DataObject, state: str) -> CountModel | None:
        """A count in the state given if there is one; now and then any."""
        counts = list(self.model.counts.values())
        preferred = [c for c in counts if c.state == state]
        return choose(data, counts if rarely(data) or not preferred else preferred)

    @rule(data=st.data())
    def reconcile_count(self, data: st.DataObject) -> None:
        if count := self.draw_count(data, "OPEN"):
            self.run(self._reconcile(count))

    async def _reconcile(self, count: CountModel) -> None:
        if count.state != "OPEN":
            wanted = refusal("INVALID_COUNT_STATE")
        elif None in count.lines.values():
            wanted = refusal("COUNT_INCOMPLETE")
        else:
            wanted = OK
        reply = await self._send(
            "stock",
            "ReconcileCount",
            stock_pb2.ReconcileCountRequest(count_id=count.count_id),
            "counter-1",
        )
        expect(outcome(reply), wanted, f"reconciliation of {count.count_id}")
        if wanted != OK:
            return
        beyond = False
        for lot, counted in count.lines.items():
            assert counted is not None
            book = self.model.raw[(count.location, lot)]
            if abs(counted - book) <= book * count.tolerance_percent / 100:
                self.model.raw[(count.location, lot)] = counted
            else:
                count.variances[lot] = counted - book
                beyond = True
        count.state = "AWAITING_APPROVAL" if beyond else "CLOSED"
        expect(
            stock_pb2.CountState.Name(reply.count.state),
            f"COUNT_STATE_{count.state}",
            "count state",
        )

    @rule(data=st.data())
    def approve_count(self, data: st.DataObject) -> None:
        if count := self.draw_count(data, "AWAITING_APPROVAL"):
            self.run(self._approve(count))

    async def _approve(self, count: CountModel) -> None:
        wanted = OK if count.state == "AWAITING_APPROVAL" else refusal("INVALID_COUNT_STATE")
        for lot, variance in sorted(count.variances.items()):
            if wanted != OK:
                break
            if variance > 0 and lot in self.model.written_off:
                wanted = refusal("LOT_WRITTEN_OFF")
            elif self.model.raw[(count.location, lot)] + variance < 0:
                # The books moved since the count: the variance no longer fits.
                wanted = refusal("INSUFFICIENT_STOCK")
        reply = await self._send(
            "stock",
            "ApproveCount",
            stock_pb2.ApproveCountRequest(count_id=count.count_id),
            "supervisor-1",
        )
        expect(outcome(reply), wanted, f"approval of {count.count_id}")
        if wanted == OK:
            for lot, variance in count.variances.items():
                self.model.raw[(count.location, lot)] += variance
            count.state = "CLOSED"

    # Orders from the ERP, and the pacemaker's instructions

    @rule(
        quantity=between(1, 40),
        due_hours=between(-5, 48),
        priority=between(0, 3),
        release=st.booleans(),
    )
    def create_order(self, quantity: int, due_hours: int, priority: int, release: bool) -> None:
        """The ERP sends an order, often releasing it to the line at once."""
        erp_order_id = self.model.new_id("SO-")
        self.run(self._create_order(erp_order_id, quantity, due_hours, priority))
        if release:
            self.run(self._release_order(self.model.orders[erp_order_id]))

    async def _create_order(
        self, erp_order_id: str, quantity: int, due_hours: int, priority: int
    ) -> None:
        reply = await self._send(
            "orders",
            "CreateOrder",
            orders_pb2.CreateOrderRequest(
                erp_order_id=erp_order_id,
                item_id=PRODUCT,
                quantity=quantity,
                due_time=timestamp(datetime.now(UTC) + timedelta(hours=due_hours)),
                priority=priority,
            ),
            "erp-1",
        )
        expect(outcome(reply), OK, f"order {erp_order_id}")
        self.model.orders[erp_order_id] = OrderModel(erp_order_id, quantity)

    @rule(data=st.data())
    def release_order(self, data: st.DataObject) -> None:
        if order := choose(data, list(self.model.orders.values())):
            self.run(self._release_order(order))

    async def _release_order(self, order: OrderModel) -> None:
        await self._drained_checks()
        wanted = self.model.expect_release_order(order)
        reply = await self._send(
            "orders",
            "ReleaseOrder",
            orders_pb2.ReleaseOrderRequest(erp_order_id=order.erp_order_id),
            "erp-1",
        )
        expect(outcome(reply), wanted, f"release of {order.erp_order_id}")
        if wanted == OK:
            order.state = orders_pb2.ORDER_STATE_RELEASED
            self._same_order(reply.order, order)

    def _same_order(self, got: Any, order: OrderModel) -> None:
        assert (got.quantity, got.made_quantity, got.state) == (
            order.quantity,
            order.made,
            order.state,
        ), f"order {order.erp_order_id}: {got} vs {order}"

    @rule(data=st.data(), quantity=between(1, 40))
    def change_order_quantity(self, data: st.DataObject, quantity: int) -> None:
        if order := choose(data, list(self.model.orders.values())):
            self.run(self._change_order(order, quantity, settle=True))

    async def _change_order(self, order: OrderModel, quantity: int, *, settle: bool) -> None:
        if settle:
            await self._drained_checks()
        wanted = self.model.expect_change_order(order, quantity)
        reply = await self._send(
            "orders",
            "ChangeOrderQuantity",
            orders_pb2.ChangeOrderQuantityRequest(
                erp_order_id=order.erp_order_id, quantity=quantity
            ),
            "erp-1",
        )
        expect(outcome(reply), wanted, f"change of {order.erp_order_id} to {quantity}")
        if wanted == OK:
            order.quantity = quantity
            if order.made >= quantity:
                order.state = orders_pb2.ORDER_STATE_COMPLETED
            self._same_order(reply.order, order)

    @rule(data=st.data())
    def cancel_order(self, data: st.DataObject) -> None:
        if order := choose(data, list(self.model.orders.values())):
            self.run(self._cancel_order(order, settle=True))

    async def _cancel_order(self, order: OrderModel, *, settle: bool) -> None:
        if settle:
            await self._drained_checks()
        wanted = refusal("ORDER_CLOSED") if order.closed else OK
        reply = await self._send(
            "orders",
            "CancelOrder",
            orders_pb2.CancelOrderRequest(
                erp_order_id=order.erp_order_id, reason="customer cancelled"
            ),
            "erp-1",
        )
        expect(outcome(reply), wanted, f"cancellation of {order.erp_order_id}")
        if wanted == OK:
            order.state = orders_pb2.ORDER_STATE_CANCELLED

    def released_orders(self) -> list[OrderModel]:
        return [o for o in self.model.orders.values() if o.state == orders_pb2.ORDER_STATE_RELEASED]

    @rule(data=st.data(), quantity=between(1, 40))
    def erp_changes_its_mind(self, data: st.DataObject, quantity: int) -> None:
        """A released order is cut and then cancelled right after: the pacemaker's
        terminals, which were sent its instructions, must be told to drop every one."""
        order = choose(data, self.released_orders())
        if order is None:
            return

        async def both() -> None:
            await self._change_order(order, quantity, settle=True)
            await self._cancel_order(order, settle=False)

        self.run(both())

    async def _read_instructions(self) -> None:
        """The instructions as stations has them once every event arrived."""
        await self._drained_checks()
        async with self.world.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT instruction_id, erp_order_id, station_id, state, quantity, made_quantity,
                          due_time, priority, sequence
                   FROM stations.instructions WHERE site_id = $1""",
                self.site,
            )
        self.instructions = {r["instruction_id"]: r for r in rows}

    def most_urgent(self) -> list[str]:
        open_ones = [i for i in self.instructions.values() if i["state"] == "OPEN"]
        return [
            i["instruction_id"]
            for i in sorted(open_ones, key=lambda i: (i["due_time"], -i["priority"], i["sequence"]))
        ]

    @rule(data=st.data(), named=st.booleans(), make_it=st.booleans(), made=st.sampled_from(MADE))
    def start_instruction(self, data: st.DataObject, named: bool, make_it: bool, made: str) -> None:
        """The pacemaker starts the most urgent instruction, or a named one, and often
        makes it right away."""
        station = "WELD" if rarely(data) else "ASSY"
        actor, pick = self.terminal(data, station), data.draw(CHOICE)
        if not self.model.orders:
            return

        async def start() -> None:
            await self._read_instructions()
            known = sorted(self.instructions)
            instruction_id = known[pick % len(known)] if named and known else ""
            started = await self._start_instruction(station, instruction_id, actor)
            if started and make_it:
                quantity = self.made_quantity(started, made)
                await self._complete_instruction(started, "STARTED", quantity, actor)

        self.run(start())

    def made_quantity(self, instruction_id: str, made: str) -> int:
        planned = int(self.instructions[instruction_id]["quantity"])
        return {"all": planned, "less": max(1, planned - 3), "one too many": planned + 1}[made]

    async def _start_instruction(self, station: str, instruction_id: str, actor: str) -> str:
        """The instruction started, if the start was to succeed."""
        if not instruction_id:
            urgent = self.most_urgent()
            wanted = OK if urgent else refusal("NO_OPEN_INSTRUCTION")
            if station != "ASSY":
                wanted = refusal("NO_OPEN_INSTRUCTION")
            instruction_id_wanted = urgent[0] if urgent else ""
        else:
            state = self.instructions[instruction_id]["state"]
            wanted = (
                refusal("WRONG_STATION")
                if station != "ASSY"
                else refusal("INSTRUCTION_WITHDRAWN")
                if state == "WITHDRAWN"
                else refusal("INVALID_INSTRUCTION_STATE")
                if state != "OPEN"
                else OK
            )
            instruction_id_wanted = instruction_id
        reply = await self._send(
            "stations",
            "StartInstruction",
            pb.StartInstructionRequest(station_id=station, instruction_id=instruction_id),
            actor,
        )
        expect(
            outcome(reply),
            wanted,
            f"start of instruction {instruction_id or 'most urgent'} at {station}",
        )
        if wanted != OK:
            return ""
        assert reply.instruction.instruction_id == instruction_id_wanted, "the most urgent first"
        return instruction_id_wanted

    @rule(data=st.data(), made=st.sampled_from(MADE))
    def complete_instruction(self, data: st.DataObject, made: str) -> None:
        """Mostly a started instruction; now and then any (refused unless started)."""
        odd, pick, actor = rarely(data), data.draw(CHOICE), self.terminal(data, "ASSY")
        if not self.model.orders:
            return

        async def complete() -> None:
            await self._read_instructions()
            started = sorted(i for i, r in self.instructions.items() if r["state"] == "STARTED")
            known = sorted(self.instructions)
            pool = known if odd or not started else started
            if not pool:
                return
            instruction_id = pool[pick % len(pool)]
            quantity = self.made_quantity(instruction_id, made)
            state = self.instructions[instruction_id]["state"]
            await self._complete_instruction(instruction_id, state, quantity, actor)

        self.run(complete())

    async def _complete_instruction(
        self, instruction_id: str, state: str, quantity: int, actor: str
    ) -> None:
        row = self.instructions[instruction_id]
        too_many = quantity > row["quantity"]
        wanted = OK if state == "STARTED" and not too_many else refusal("OVERPRODUCTION_BLOCKED")
        reply = await self._send(
            "stations",
            "CompleteInstruction",
            pb.CompleteInstructionRequest(
                station_id="ASSY",
                instruction_id=instruction_id,
                lot_id=self.model.new_id("FG-"),
                quantity=quantity,
            ),
            actor,
        )
        expect(outcome(reply), wanted, f"completion of {instruction_id} ({quantity})")
        if wanted == OK:
            self.model.order_made(row["erp_order_id"], quantity)

    @rule(data=st.data(), racers=between(2, 4), quantity=between(1, 40))
    def cut_while_the_pacemaker_starts(
        self, data: st.DataObject, racers: int, quantity: int
    ) -> None:
        """The ERP cuts an order while assembly terminals start instructions: every
        instruction is started or withdrawn, never both, and what started counts."""
        order = choose(data, list(self.model.orders.values()))
        if order is None:
            return

        async def race() -> None:
            await self._read_instructions()
            # Open ones, or new ones of this order if the change raised it.
            could_start = set(self.most_urgent())
            prefix = f"{order.erp_order_id}-"
            replies = await asyncio.gather(
                self._change_order(order, quantity, settle=False),
                *(
                    self._send(
                        "stations",
                        "StartInstruction",
                        pb.StartInstructionRequest(station_id="ASSY"),
                        f"ASSY-T{n}",
                    )
                    for n in range(1, racers + 1)
                ),
            )
            started = [r.instruction.instruction_id for r in replies[1:] if outcome(r) == OK]
            assert len(set(started)) == len(started), f"one instruction started twice: {started}"
            unknown = {i for i in started if i not in could_start and not i.startswith(prefix)}
            assert not unknown, f"started {started}, open were {could_start}"
            others = {outcome(r) for r in replies[1:] if outcome(r) != OK}
            assert others <= {refusal("NO_OPEN_INSTRUCTION")}, others

        self.run(race())

    # Faults

    @rule(data=st.data(), copies=between(1, 3))
    def retry_a_request(self, data: st.DataObject, copies: int) -> None:
        """A terminal or the ERP repeats a request it had an answer to (a timeout, a
        double tap), several copies at once: each gets the first answer, nothing moves."""
        answered = choose(data, self.calls.answered)
        assert answered is not None  # the set-up's requests at least
        service, rpc, request, actor, first = answered
        self.tally.faults["request repeated"] += copies

        async def repeat() -> None:
            replies = await asyncio.gather(
                *(self.calls(service, rpc, request, actor) for _ in range(copies))
            )
            for reply in replies:
                assert reply == first, f"{rpc} {request.request_id} repeated: {reply} vs {first}"

        self.run(repeat())

    @rule(data=st.data())
    def reuse_a_request_id(self, data: st.DataObject) -> None:
        """A buggy terminal reuses a request id for another card: refused, nothing moves."""
        scan = choose(data, [a for a in self.calls.answered if a[1] == "ScanCard"])
        other = choose(data, sorted(self.model.cards))
        if scan is None or other is None or other == scan[2].card_code:
            return
        _, _, request, actor, _ = scan
        self.tally.faults["request id reused"] += 1
        changed = pb.ScanCardRequest()
        changed.CopyFrom(request)
        changed.card_code = other

        async def reuse() -> None:
            reply = await self.calls("stations", "ScanCard", changed, actor)
            expect(outcome(reply), "INVALID_ARGUMENT request_id", "a request id reused")

        self.run(reuse())

    @rule(data=st.data(), copies=between(2, 3))
    def double_tap_a_scan(self, data: st.DataObject, copies: int) -> None:
        """A terminal sends one scan several times at once (a double tap, a client retry
        racing its first attempt): the same answer for each, and one effect."""
        code = self.draw_card(data, pb.CARD_STATE_FULL)
        self.tally.faults["request sent twice at once"] += copies - 1
        self.run(self._double_tap(code, copies))

    async def _double_tap(self, code: str, copies: int) -> None:
        loop = self.model.loops[self.model.cards[code].loop_id]
        wanted = self.model.expect_scan(code, loop.consumer)
        retires = self.model.to_retire(loop.loop_id) > 0
        request = pb.ScanCardRequest(
            request_id=new_id("r"), site_id=self.site, station_id=loop.consumer, card_code=code
        )
        actor = f"{loop.consumer}-T1"
        replies = await asyncio.gather(
            *(self.calls("stations", "ScanCard", request, actor) for _ in range(copies))
        )
        assert [outcome(r) for r in replies] == [wanted] * copies, f"scan of {code} x {copies}"
        if wanted == OK:
            assert all(r == replies[0] for r in replies), f"different answers: {replies}"
            assert replies[0].HasField("signal") != retires, f"{code} retired: {not retires}"
            self.model.scanned(replies[0])

    @rule(station=st.sampled_from(["STAMP", "WELD", "ASSY"]))
    def drop_a_stream(self, station: str) -> None:
        """A terminal loses its connection; it stays away until it comes back."""
        watcher = self.watchers[station]
        if watcher.online:
            self.tally.faults["stream dropped"] += 1
            self.run(watcher.disconnect())

    @rule(data=st.data())
    def terminal_comes_back(self, data: st.DataObject) -> None:
        """It reconnects from the last sequence it saw: it must miss nothing."""
        away = choose(data, sorted(s for s, w in self.watchers.items() if not w.online))
        if away:
            self.run(self.watchers[away].connect())

    # Invariants, after every step

    @invariant()
    def count_the_step(self) -> None:
        # Invariants run once after set-up, then after every step.
        if self.set_up_checked:
            self.tally.steps += 1
        self.set_up_checked = True

    @invariant()
    def wip_within_cap_and_cards_as_modelled(self) -> None:
        self.run(self._check_board())

    async def _check_board(self) -> None:
        self.tally.checks["wip <= cap"] += 1
        board = await self.stations.GetBoard(pb.GetBoardRequest(site_id=self.site))
        for status in board.loops:
            loop_id = status.loop.loop_id
            assert status.wip_units <= status.loop.cap_units, f"{loop_id}: WIP above cap: {status}"
            cards = self.model.cards_of(loop_id)
            count = self.model.card_count(loop_id)
            got = (
                status.loop.card_count,
                status.loop.target_card_count,
                status.loop.cap_units,
                status.full_cards,
                status.empty_cards,
                status.in_process_cards,
                status.units_in_supermarket,
                status.quarantined_cards,
            )
            full = [c for c in cards if c.state == pb.CARD_STATE_FULL]
            wanted = (
                count,
                self.model.loops[loop_id].target,
                count * CONTAINER,
                len(full),
                sum(c.state == pb.CARD_STATE_EMPTY for c in cards),
                sum(c.state == pb.CARD_STATE_IN_PROCESS for c in cards),
                sum(c.quantity for c in full),
                sum(c.lot in self.model.held for c in full),
            )
            assert got == wanted, f"board of {loop_id}: {got}, model {wanted}"
        listed = await self._cards()
        in_loops = sorted(
            c.code for c in self.model.cards.values() if c.state != pb.CARD_STATE_RETIRED
        )
        assert sorted(c.card_code for c in listed) == in_loops, "the loops' cards, retired left out"
        for card in listed:
            mine = self.model.cards[card.card_code]
            held = mine.state == pb.CARD_STATE_FULL and mine.lot in self.model.held
            got_card = (card.state, card.lot_id, card.quantity, card.lot_quarantined)
            assert got_card == (mine.state, mine.lot, mine.quantity, held), (
                f"card {card.card_code}: {card} vs {mine}"
            )

    @invariant()
    def one_signal_per_emptied_card(self) -> None:
        self.run(self._check_signals())

    async def _check_signals(self) -> None:
        self.tally.checks["one signal per emptied card"] += 1
        async with self.world.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            signals = await conn.fetch(
                """SELECT station_id, sequence, loop_id, card_code, state, withdrawn_sequence
                   FROM stations.signals WHERE site_id = $1""",
                self.site,
            )
            notices = await conn.fetch(
                """SELECT station_id, held_sequence, lifted_sequence
                   FROM stations.lot_hold_notices WHERE site_id = $1""",
                self.site,
            )
            last = dict(
                await conn.fetch(
                    "SELECT station_id, last_sequence FROM stations.stations WHERE site_id = $1",
                    self.site,
                )
            )
        per_card = Counter(s["card_code"] for s in signals)
        for code, card in self.model.cards.items():
            assert per_card[code] == card.signals, (
                f"{code}: {per_card[code]} signals, emptied {card.signals} times"
            )
            active = [
                s["state"]
                for s in signals
                if s["card_code"] == code and s["state"] in ("OPEN", "STARTED")
            ]
            wanted = {pb.CARD_STATE_EMPTY: ["OPEN"], pb.CARD_STATE_IN_PROCESS: ["STARTED"]}.get(
                card.state, []
            )
            assert active == wanted, (
                f"{code} ({pb.CardState.Name(card.state)}) has active signals {active}"
            )
        # Signals and what else a station is sent share its numbering: no gaps at the
        # suppliers (ASSY's instructions are renumbered when they shrink).
        for station in ("STAMP", "WELD"):
            used = [s["sequence"] for s in signals if s["station_id"] == station]
            used += [
                s["withdrawn_sequence"]
                for s in signals
                if s["station_id"] == station and s["withdrawn_sequence"]
            ]
            used += [n["held_sequence"] for n in notices if n["station_id"] == station]
            used += [
                n["lifted_sequence"]
                for n in notices
                if n["station_id"] == station and n["lifted_sequence"]
            ]
            assert sorted(used) == list(range(1, last[station] + 1)), (
                f"{station} sequences {sorted(used)}"
            )

    @invariant()
    def every_signal_reaches_its_terminal_once(self) -> None:
        self.run(self._check_streams())

    async def _check_streams(self) -> None:
        self.tally.checks["signals delivered once"] += 1

        async def undelivered() -> list[str]:
            async with (
                self.world.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read"),
            ):
                signals = await conn.fetch(
                    """SELECT station_id, sequence, card_code, state FROM stations.signals
                       WHERE site_id = $1""",
                    self.site,
                )
                instructions = await conn.fetch(
                    """SELECT station_id, instruction_id, sequence, state FROM stations.instructions
                       WHERE site_id = $1""",
                    self.site,
                )
            problems = []
            for station, watcher in self.watchers.items():
                problems += [f"{station}: {p}" for p in watcher.problems]
                if not watcher.online:
                    continue  # it catches up when it comes back
                for s in (s for s in signals if s["station_id"] == station):
                    sent = watcher.signals.get(s["sequence"])
                    if sent is not None and sent != s["card_code"]:
                        problems.append(f"{station} signal {s['sequence']} sent for {sent}")
                    if s["state"] == "OPEN" and sent is None:
                        problems.append(f"{station}: open signal {s['sequence']} not sent")
                    if (
                        s["state"] == "WITHDRAWN"
                        and sent
                        and s["sequence"] not in watcher.withdrawn_signals
                    ):
                        problems.append(f"{station}: withdrawal of signal {s['sequence']} not sent")
                for i in (i for i in instructions if i["station_id"] == station):
                    seen = watcher.instructions.get(i["instruction_id"])
                    if i["state"] == "OPEN" and seen != i["sequence"]:
                        problems.append(
                            f"{station}: {i['instruction_id']} at {i['sequence']} not sent"
                        )
                    if (
                        i["state"] == "WITHDRAWN"
                        and seen is not None
                        and i["instruction_id"] not in watcher.withdrawn_instructions
                    ):
                        problems.append(f"{station}: withdrawal of {i['instruction_id']} not sent")
            return problems

        problems = await until_no_problems(undelivered)
        assert not problems, f"terminals: {problems}"

    @invariant()
    def stock_never_negative_and_equal_to_its_ledger(self) -> None:
        self.run(self._check_ledger())

    async def _check_ledger(self) -> None:
        self.tally.checks["stock = ledger >= 0"] += 1
        async with self.world.pool.acquire() as conn:
            rows = await conn.fetch(
                """WITH books AS (SELECT location_id, item_id, lot_id, quantity FROM stock.on_hand
                                  WHERE site_id = $1),
                        ledger AS (SELECT location_id, item_id, lot_id, sum(quantity) AS quantity
                                   FROM stock.movements WHERE site_id = $1
                                   GROUP BY location_id, item_id, lot_id)
                   SELECT location_id, item_id, lot_id, books.quantity AS on_hand,
                          ledger.quantity AS ledger
                   FROM books FULL JOIN ledger USING (location_id, item_id, lot_id)""",
                self.site,
            )
        for r in rows:
            assert (r["on_hand"] or 0) == (r["ledger"] or 0), (
                f"on hand is not the ledger's sum: {dict(r)}"
            )
            assert (r["on_hand"] or 0) >= 0, f"negative stock: {dict(r)}"
        # The warehouse moves only by this test's requests: it is exactly the model.
        raw = {
            (r["location_id"], r["lot_id"]): r["on_hand"]
            for r in rows
            if r["item_id"] == RAW and r["on_hand"]
        }
        assert raw == {k: q for k, q in self.model.raw.items() if q}, (
            f"warehouse {raw} vs {self.model.raw}"
        )

    @invariant()
    def quarantined_lots_never_leave(self) -> None:
        self.run(self._check_quarantine())

    async def _check_quarantine(self) -> None:
        """Since its hold was answered, a quarantined lot was moved by hand only into
        quarantine or by a count's adjustment. (Kanban consumptions are the stations'
        side: a scan of a held container is refused, checked in the scan rules.)"""
        self.tally.checks["quarantined lots never consumed"] += 1
        if not self.watermarks:
            return
        async with self.world.pool.acquire() as conn:
            moves = await conn.fetch(
                """SELECT m.id, m.lot_id, m.kind, m.quantity, m.request_id, l.kind AS location_kind
                   FROM stock.movements m JOIN stock.locations l USING (site_id, location_id)
                   WHERE m.site_id = $1 AND m.lot_id = ANY($2::text[]) AND m.request_id <> ''""",
                self.site,
                sorted(self.watermarks),
            )
        after = [m for m in moves if m["id"] > self.watermarks[m["lot_id"]]]
        into_quarantine = {
            m["request_id"]
            for m in after
            if m["location_kind"] == "QUARANTINE" and m["quantity"] > 0
        }
        for m in after:
            if m["quantity"] < 0 and m["kind"] != "ADJUSTMENT":
                assert m["kind"] == "TRANSFER" and m["request_id"] in into_quarantine, (
                    f"quarantined lot {m['lot_id']} left stock: {dict(m)}"
                )

    @invariant()
    def every_request_audited(self) -> None:
        self.run(self._check_audit())

    async def _check_audit(self) -> None:
        self.tally.checks["audit record per request"] += 1
        async with self.world.pool.acquire() as conn:
            for service in AUDITED:
                rows = await conn.fetch(
                    f"""SELECT id, request_id, actor, result FROM {service}.audit_log
                        WHERE site_id = $1 AND id > $2""",
                    self.site,
                    self.audited_up_to[service],
                )
                found = Counter(
                    (r["request_id"], r["actor"], audit_result(r["result"])) for r in rows
                )
                owed = self.calls.unaudited[service]
                assert found == owed, (
                    f"{service} audit: missing {owed - found}, unexpected {found - owed}"
                )
                if rows:
                    self.audited_up_to[service] = max(r["id"] for r in rows)
                owed.clear()

    # Once every event arrived

    async def _drained_checks(self) -> None:
        """Waits until no service has an event of this site left to deliver, then
        compares what travels by events: stock with the cards, orders with the
        instructions."""

        undelivered = " + ".join(
            f"(SELECT count(*) FROM {s}.outbox WHERE site_id = $1 AND delivered_at IS NULL)"
            for s in ("stations", "stock", "orders", "alerts")
        )

        async def drained() -> bool:
            async with self.world.pool.acquire() as conn:
                return await conn.fetchval(f"SELECT {undelivered}", self.site) == 0

        assert await eventually(drained), "events still undelivered"
        self.tally.checks["stock follows cards, orders follow instructions"] += 1
        async with self.world.pool.acquire() as conn:
            supermarkets = await conn.fetch(
                """SELECT location_id, lot_id, quantity FROM stock.on_hand
                   WHERE site_id = $1 AND location_id = ANY($2::text[]) AND quantity > 0""",
                self.site,
                ["SM-P", "SM-W"],
            )
            caps = dict(
                await conn.fetch(
                    "SELECT location_id, cap_units FROM stock.location_caps WHERE site_id = $1",
                    self.site,
                )
            )
            instructions = await conn.fetch(
                """SELECT erp_order_id, state, quantity, made_quantity FROM stations.instructions
                   WHERE site_id = $1""",
                self.site,
            )
        in_stock = {(r["location_id"], r["lot_id"]): r["quantity"] for r in supermarkets}
        on_cards: Counter[tuple[str, str]] = Counter()
        for card in self.model.cards.values():
            if card.state == pb.CARD_STATE_FULL:
                on_cards[(self.model.loops[card.loop_id].location, card.lot)] += card.quantity
        assert in_stock == dict(on_cards), f"supermarket stock {in_stock} vs cards {dict(on_cards)}"
        for loop in self.model.loops.values():
            cap = self.model.card_count(loop.loop_id) * loop.container_quantity
            assert caps[loop.location] == cap, (
                f"stock's cap of {loop.location}: {caps[loop.location]}, loop {cap}"
            )
        for order in self.model.orders.values():
            reply = await self.world.stack.orders.GetOrder(
                orders_pb2.GetOrderRequest(site_id=self.site, erp_order_id=order.erp_order_id)
            )
            self._same_order(reply.order, order)
            mine = [i for i in instructions if i["erp_order_id"] == order.erp_order_id]
            made = sum(i["made_quantity"] for i in mine if i["state"] == "COMPLETED")
            assert made == order.made, (
                f"{order.erp_order_id}: instructions made {made}, order {order.made}"
            )
            open_units = sum(i["quantity"] for i in mine if i["state"] == "OPEN")
            committed = made + sum(i["quantity"] for i in mine if i["state"] == "STARTED")
            if order.closed:
                assert open_units == 0, (
                    f"{order.erp_order_id} is closed, {open_units} still to make"
                )
            else:
                assert committed + open_units <= order.quantity or not open_units, (
                    f"{order.erp_order_id}: {committed} made or started + {open_units} open"
                    f" > {order.quantity}"
                )


# A guard against a hang, generous for a slow machine, growing with a longer run.
@pytest.mark.timeout(120 + 60 * EXAMPLES)
def test_the_invariants_hold_whatever_the_terminals_do(database_url, report):
    tally = Tally()
    run_seed = int(os.environ.get("KANBAN_PROPERTY_SEED") or random.randrange(2**32))
    with asyncio.Runner() as runner:
        url = runner.run(fresh_database(database_url))
        world = runner.run(World.start(runner, url))
        violations = 1
        try:

            class Machine(LineMachine):
                pass

            Machine.world, Machine.tally = world, tally
            run_state_machine_as_test(
                seed(run_seed)(Machine),
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    # Examples replay on live services: a failure prints its steps as
                    # they ran; shrinking them would take longer than the run.
                    phases=[Phase.explicit, Phase.generate],
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                ),
            )
            violations = 0
        finally:
            runner.run(world.close())
            database = urlsplit(url).path.lstrip("/")
            report(tally.line(run_seed, database, violations))
