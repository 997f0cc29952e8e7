"""kanban-terminal, driven headless with Textual's pilot against the real services."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from textual.pilot import Pilot
from textual.widgets import Static

from clients.terminal.app import TerminalApp
from services.core import client
from services.core.auth import Role
from services.core.server import RunningService, start_service
from services.stations.app import SPEC as STATIONS
from tests.conftest import Line, eventually, fast_settings, free_port, fresh_database, start_stack
from tests.integration.test_access import SITE, issue
from tests.integration.test_instructions import reduce, release
from tests.integration.test_lot_holds import deliver, held


def terminal(line: Line, address: str, station: str, **options) -> TerminalApp:
    # The test stack runs without authentication: no token.
    options.setdefault("language", "en")
    return TerminalApp(
        station_id=station, site_id=line.site_id, address=address, token="", **options
    )


@asynccontextmanager
async def running(app: TerminalApp) -> AsyncIterator[Pilot[None]]:
    """app.run_test(), ended the way a real exit ends: run_test removes the widgets
    while the app's workers still run (one could update a widget that is gone),
    whereas App.exit() stops the workers first."""
    async with app.run_test() as pilot:
        try:
            yield pilot
        finally:
            app.workers.cancel_all()


def shown(app: TerminalApp, widget_id: str) -> str:
    return str(app.query_one(f"#{widget_id}", Static).content)


async def shows(app: TerminalApp, widget_id: str, text: str) -> str:
    """Waits until the widget shows `text`; returns all it shows."""

    async def check() -> bool:
        return text in shown(app, widget_id)

    assert await eventually(check), f"#{widget_id} shows {shown(app, widget_id)!r}"
    return shown(app, widget_id)


async def scan(pilot: Pilot[None], code: str) -> None:
    """What a barcode scanner does: types the code, then Enter."""
    await pilot.press(*code, "enter")


async def card(line: Line, code: str) -> pb.Card:
    found = await line.stub.GetCard(pb.GetCardRequest(site_id=line.site_id, card_code=code))
    return found.card


async def test_the_queue_shows_a_signal_once_the_consumer_scans(stack, line):
    app = terminal(line, stack.peers["stations"], "STAMP")
    async with running(app):
        await shows(app, "queue", "Nothing to make")
        await shows(app, "loops", "No input loops")

        await line.scan("WELD", "P-001")

        await shows(app, "queue", "Make 500 PART · card P-001")
        await shows(app, "connection", "Online")


async def test_scanning_a_full_card_at_the_consumer_takes_it(stack, line):
    app = terminal(line, stack.peers["stations"], "WELD")
    async with running(app) as pilot:
        await shows(app, "loops", "P PART from STAMP: 1500/1500 · 3 full · 0 empty")

        await scan(pilot, "P-001")

        await shows(app, "banner", "TAKEN: P-001 — STAMP will make a new one")
        assert (await card(line, "P-001")).state == pb.CARD_STATE_EMPTY
        await shows(app, "loops", "P PART from STAMP: 1000/1500 · 2 full · 1 empty")


async def test_the_supplier_starts_and_completes_a_card_by_scanning_it(stack, line):
    app = terminal(line, stack.peers["stations"], "STAMP", repeat_window=0)
    async with running(app) as pilot:
        await line.scan("WELD", "P-001")
        await shows(app, "queue", "card P-001")

        await scan(pilot, "P-001")

        await shows(app, "banner", "STARTED: P-001 — make 500 PART")
        await shows(app, "queue", "Nothing to make")
        await shows(app, "in-process", "Card P-001: 500 PART")
        assert (await card(line, "P-001")).state == pb.CARD_STATE_IN_PROCESS

        await scan(pilot, "P-001")

        await shows(app, "banner", "DONE: P-001 — 500 PART into the buffer, lot P-001-")
        await shows(app, "in-process", "Nothing in process")
        filled = await card(line, "P-001")
        assert (filled.state, filled.quantity) == (pb.CARD_STATE_FULL, 500)
        assert filled.lot_id in shown(app, "banner")


async def test_completing_a_card_nobody_emptied_is_refused_as_overproduction(stack, line):
    app = terminal(line, stack.peers["stations"], "STAMP")
    async with running(app) as pilot:
        await scan(pilot, "P-002")

        await shows(app, "banner", "Buffer full: do not produce")
        unchanged = await card(line, "P-002")
        assert (unchanged.state, unchanged.lot_id) == (pb.CARD_STATE_FULL, "P-OPENING")


async def test_other_stations_cards_and_unknown_codes_are_refused(stack, line):
    app = terminal(line, stack.peers["stations"], "ASSY")
    async with running(app) as pilot:
        await scan(pilot, "P-001")
        await shows(app, "banner", "Not this station's card")

        await scan(pilot, "NO-SUCH-CARD")
        await shows(app, "banner", "Unknown card: check the code")
        assert (await card(line, "P-001")).state == pb.CARD_STATE_FULL


async def test_containers_of_a_quarantined_lot_are_set_aside(stack, line):
    app = terminal(line, stack.peers["stations"], "WELD")
    async with running(app) as pilot:
        await deliver(stack, held(line.site_id))

        await shows(
            app, "holds", "SET ASIDE P-001, P-002, P-003 — lot P-OPENING: burrs on the edge"
        )
        await shows(app, "loops", "3 set aside")

        await scan(pilot, "P-001")

        await shows(app, "banner", "Lot quarantined: set this container aside")
        assert (await card(line, "P-001")).state == pb.CARD_STATE_FULL


class Replica:
    """A stations replica of the terminal's own, on a port that outlives it."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.address = f"localhost:{settings.grpc_port}"
        self.running: RunningService | None = None

    async def start(self) -> None:
        self.running = await start_service(STATIONS, self.settings)

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop(0.5)
            self.running = None


@pytest.fixture
async def replica(stack, database_url):
    replica = Replica(fast_settings(database_url, grpc_port=free_port(), peers=stack.peers))
    await replica.start()
    yield replica
    await replica.stop()


async def test_a_reconnecting_terminal_shows_what_it_missed_once(line, replica):
    app = terminal(line, replica.address, "STAMP")
    async with running(app):
        await line.scan("WELD", "P-001")
        await shows(app, "queue", "card P-001")
        await shows(app, "connection", "Online")

        await replica.stop()
        await shows(app, "connection", "No connection — retrying")
        # Consumed while the terminal is away (through the stack's own replica).
        await line.scan("WELD", "P-002")
        await replica.start()

        await shows(app, "queue", "card P-002")
        await shows(app, "connection", "Online")
        await asyncio.sleep(1)  # a few heartbeats: time for anything sent twice
        queue = shown(app, "queue")
        assert (queue.count("card P-001"), queue.count("card P-002")) == (1, 1)
        assert app.work.cursor == 2


async def test_a_scan_while_the_service_is_away_is_made_once_it_is_back(line, replica):
    app = terminal(line, replica.address, "WELD")
    async with running(app) as pilot:
        await shows(app, "connection", "Online")
        await replica.stop()
        await shows(app, "connection", "No connection")

        await scan(pilot, "P-001")
        await shows(app, "banner", "No connection — retrying")
        await replica.start()

        await shows(app, "banner", "TAKEN: P-001")
        assert (await card(line, "P-001")).state == pb.CARD_STATE_EMPTY
        board = await line.stub.GetBoard(pb.GetBoardRequest(site_id=line.site_id))
        stamp = next(s for s in board.stations if s.station_id == "STAMP")
        assert stamp.open_signals == 1


async def test_the_pacemaker_works_orders_by_scanning_their_instructions(stack, line):
    app = terminal(line, stack.peers["stations"], "ASSY", repeat_window=0)
    async with running(app) as pilot:
        first, second = await release(stack, line.site_id, "ORD-7", [10, 10])
        await shows(app, "queue", "Order ORD-7: make 10 CHASSIS · due")
        await shows(app, "queue", f"scan {second}")

        await scan(pilot, first)
        await shows(app, "banner", "STARTED: order ORD-7 — make 10 CHASSIS")
        await shows(app, "in-process", f"Order ORD-7: 10 CHASSIS · scan {first} when done")

        await reduce(stack, line.site_id, "ORD-7", 10)  # the customer cut the order
        await shows(app, "queue", "Nothing to make")

        await scan(pilot, first)
        await shows(app, "banner", f"DONE: order ORD-7 — 10 CHASSIS, lot {first}-")
        await shows(app, "in-process", "Nothing in process")


async def test_the_terminal_speaks_chinese(stack, line):
    app = terminal(line, stack.peers["stations"], "WELD", language="zh")
    async with running(app) as pilot:
        await shows(app, "banner", "就绪")
        await shows(app, "loops", "P PART 来自 STAMP")

        await scan(pilot, "P-001")

        await shows(app, "banner", "已取用")
        await shows(app, "banner", "P-001 — STAMP 将补做一箱")


@pytest.fixture(scope="module")
async def secured(database_url):
    """The services with authentication on, a line, and the welding terminal's token."""
    url = await fresh_database(database_url)
    relay = await issue(url, "relay", [Role.SERVICE])
    stack = await start_stack(url, auth_enabled=True, service_token=relay)
    planner = await issue(url, "planner", [Role.PLANNER])
    async with client.channel(stack.peers["stations"], planner) as channel:
        await Line(stations_pb2_grpc.StationsServiceStub(channel), SITE).create()
    yield stack.peers["stations"], await issue(url, "weld-terminal", [Role.OPERATOR], "WELD")
    await stack.close()


def secured_terminal(address: str, station: str, token: str) -> TerminalApp:
    return TerminalApp(
        station_id=station, site_id=SITE, address=address, token=token, language="en"
    )


async def test_the_station_token_lets_the_terminal_work_at_its_station(secured):
    address, weld_token = secured
    app = secured_terminal(address, "WELD", weld_token)
    async with running(app) as pilot:
        await shows(app, "connection", "Online")
        await scan(pilot, "P-001")
        await shows(app, "banner", "TAKEN: P-001 — STAMP will make a new one")


async def test_a_token_of_another_station_may_not_work_here(secured):
    address, weld_token = secured
    app = secured_terminal(address, "STAMP", weld_token)
    async with running(app) as pilot:
        await shows(app, "connection", "This terminal may not do that — retrying")
        await scan(pilot, "P-002")
        await shows(app, "banner", "This terminal may not do that")


async def test_a_bad_token_is_not_accepted(secured):
    address, _ = secured
    app = secured_terminal(address, "WELD", "not-a-token")
    async with running(app):
        await shows(app, "connection", "Token not accepted — retrying")
