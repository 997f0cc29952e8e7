"""Fixtures shared by every test: a real PostgreSQL and real gRPC services."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from kanban.alerts.v1 import alerts_pb2_grpc
from kanban.orders.v1 import orders_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc

from services.alerts.app import SPEC as ALERTS
from services.core.config import Settings
from services.core.server import RunningService, start_service
from services.devstack.processes import free_port as free_port  # tests import it from here
from services.orders.app import SPEC as ORDERS
from services.stations.app import SPEC as STATIONS
from services.stock.app import SPEC as STOCK

RUN_REPORT = pytest.StashKey[list[str]]()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Lines a fault, property or bad-input run says about itself (operations, faults
    injected, invariant checks, violations); printed together after the run, where
    pytest's output capture does not hide them."""
    lines = request.config.stash.setdefault(RUN_REPORT, [])

    def say(line: str) -> None:
        lines.append(f"{request.node.name}: {line}")

    return say


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if lines := config.stash.get(RUN_REPORT, []):
        terminalreporter.section("what the fault, property and bad-input runs did")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL if set; else an embedded PostgreSQL (pgserver) for this test run."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    import pgserver

    data_dir: Path = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


async def fresh_database(url: str) -> str:
    """A new, empty database on the same server, for services that must not share the
    session's: tokens of their own, or relays that alone deliver their events."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def fast_settings(database_url: str, **overrides: object) -> Settings:
    """Short heartbeats and polls so tests do not wait on timers meant for a plant."""
    values: dict[str, object] = dict(
        database_url=database_url,
        heartbeat_seconds=0.5,
        relay_poll_seconds=0.2,
        gauge_refresh_seconds=0.2,
        shutdown_grace_seconds=1.0,
        alert_evaluate_seconds=0.2,
        alert_clear_seconds=1.0,
        analysis_refresh_seconds=1.0,
        sizing_check_seconds=0.2,
        # Most tests are about something else; tests/integration/test_access.py
        # runs the services with authentication on.
        auth_enabled=False,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class Stack:
    """Alerts, stock, orders and stations running in this process, on free ports."""

    def __init__(
        self,
        alerts: RunningService,
        stock: RunningService,
        orders: RunningService,
        stations: RunningService,
    ) -> None:
        self.alerts_service = alerts
        self.stock_service = stock
        self.orders_service = orders
        self.stations_service = stations
        # Where each service listens, as a replica's Settings.peers wants it.
        self.peers = {s.spec.name: s.address for s in (alerts, stock, orders, stations)}
        self.channels = [
            grpc.aio.insecure_channel(stations.address),
            grpc.aio.insecure_channel(stock.address),
            grpc.aio.insecure_channel(orders.address),
            grpc.aio.insecure_channel(alerts.address),
        ]
        self.stations = stations_pb2_grpc.StationsServiceStub(self.channels[0])
        self.stock = stock_pb2_grpc.StockServiceStub(self.channels[1])
        self.orders = orders_pb2_grpc.OrdersServiceStub(self.channels[2])
        self.alerts = alerts_pb2_grpc.AlertsServiceStub(self.channels[3])

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        for service in (
            self.stations_service,
            self.orders_service,
            self.stock_service,
            self.alerts_service,
        ):
            await service.stop(0.5)


async def start_stack(database_url: str, **overrides: object) -> Stack:
    # The services send each other events, so every address is fixed first.
    ports = {name: free_port() for name in ("alerts", "stock", "orders", "stations")}
    peers = {name: f"localhost:{port}" for name, port in ports.items()}
    running = [
        await start_service(
            spec,
            fast_settings(database_url, grpc_port=ports[spec.name], peers=peers, **overrides),
        )
        for spec in (ALERTS, STOCK, ORDERS, STATIONS)
    ]
    return Stack(*running)


@pytest.fixture(scope="session")
async def stack(database_url: str) -> AsyncIterator[Stack]:
    running = await start_stack(database_url)
    yield running
    await running.close()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_schema(prefix: str) -> str:
    """A fresh schema name: an id that SQL takes unquoted."""
    return new_id(prefix).replace("-", "_")


class Line:
    """A fresh site with a line of three stations: stamping -> welding -> assembly.

    Loop P (part) runs stamping -> welding; loop W (welded part) welding -> assembly.
    Every test gets its own site, so tests never see each other's data.
    """

    def __init__(self, stub: stations_pb2_grpc.StationsServiceStub, site_id: str) -> None:
        self.stub = stub
        self.site_id = site_id

    async def create(self, *, cards: int = 3, container_quantity: int = 500) -> "Line":
        s = self.stub
        await s.CreateSite(
            pb.CreateSiteRequest(request_id=new_id("r"), site_id=self.site_id, name="Test plant")
        )
        for station in ("STAMP", "WELD", "ASSY"):
            await s.CreateStation(
                pb.CreateStationRequest(
                    request_id=new_id("r"), site_id=self.site_id, station_id=station, name=station
                )
            )
        for item in ("PART", "WELDED"):
            await s.CreateItem(
                pb.CreateItemRequest(
                    request_id=new_id("r"),
                    site_id=self.site_id,
                    item_id=item,
                    unit_of_measure="pcs",
                )
            )
        await self.create_loop("P", "PART", "STAMP", "WELD", cards, container_quantity)
        await self.create_loop("W", "WELDED", "WELD", "ASSY", cards, container_quantity)
        return self

    async def create_loop(
        self,
        loop_id: str,
        item: str,
        supplier: str,
        consumer: str,
        cards: int,
        container_quantity: int,
        state: int = pb.CARD_STATE_UNSPECIFIED,
    ) -> pb.CreateLoopResponse:
        return await self.stub.CreateLoop(
            pb.CreateLoopRequest(
                request_id=new_id("r"),
                site_id=self.site_id,
                loop_id=loop_id,
                item_id=item,
                supplier_station_id=supplier,
                consumer_station_id=consumer,
                supermarket_location_id=f"SM-{loop_id}",
                container_quantity=container_quantity,
                card_count=cards,
                initial_card_state=state,
            )
        )

    async def scan(self, station: str, card: str, request_id: str | None = None):
        return await self.stub.ScanCard(
            pb.ScanCardRequest(
                request_id=request_id or new_id("r"),
                site_id=self.site_id,
                station_id=station,
                card_code=card,
            )
        )

    async def start(self, station: str, card: str = "", request_id: str | None = None):
        return await self.stub.StartSignal(
            pb.StartSignalRequest(
                request_id=request_id or new_id("r"),
                site_id=self.site_id,
                station_id=station,
                card_code=card,
            )
        )

    async def complete(
        self, station: str, card: str, lot: str, quantity: int, request_id: str | None = None
    ):
        return await self.stub.CompleteCard(
            pb.CompleteCardRequest(
                request_id=request_id or new_id("r"),
                site_id=self.site_id,
                station_id=station,
                card_code=card,
                lot_id=lot,
                quantity=quantity,
            )
        )

    async def cards(self, loop_id: str) -> list[pb.Card]:
        found = await self.stub.GetLoop(pb.GetLoopRequest(site_id=self.site_id, loop_id=loop_id))
        return list(found.cards)


@pytest.fixture
async def line(stack: Stack) -> Line:
    return await Line(stack.stations, new_id("site")).create()


async def eventually(check, *, timeout: float = 30.0, interval: float = 0.05):
    """Polls an async check until it returns a truthy value; its last value on timeout.

    For effects that travel asynchronously (events between services). The timeout
    is generous: a slow machine makes a test slower, never red.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(interval)


async def stock_by_lot(
    stock: stock_pb2_grpc.StockServiceStub, site_id: str, location_id: str
) -> dict[str, int]:
    reply = await stock.GetStockLevels(
        stock_pb2.GetStockLevelsRequest(site_id=site_id, location_id=location_id, page_size=1000),
        timeout=30,
    )
    assert not reply.next_page_token, "more lots than one page: page through them"
    return {level.lot_id: level.on_hand for level in reply.levels}


def cards_by_lot(cards: list[pb.Card]) -> dict[str, int]:
    """What the cards say the supermarket holds, per lot."""
    held: dict[str, int] = {}
    for card in cards:
        if card.state == pb.CARD_STATE_FULL:
            held[card.lot_id] = held.get(card.lot_id, 0) + card.quantity
    return held


class Refusal:
    """What a client sees of a refused call: the code and the google.rpc details."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        self.code = error.code()
        self.message = error.details()
        self.fields: list[str] = []
        self.reason = ""
        self.metadata: dict[str, str] = {}
        raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
        status = status_pb2.Status.FromString(raw) if raw else status_pb2.Status()
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                self.fields += [v.field for v in bad.field_violations]
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                self.reason, self.metadata = info.reason, dict(info.metadata)


async def refused(call) -> Refusal:
    """Awaits a call that must fail; returns what the client learns from the failure."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return Refusal(caught.value)
