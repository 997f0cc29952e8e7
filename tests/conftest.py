"""Fixtures shared by every test: a real PostgreSQL and real gRPC services."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2_grpc

from services.core.config import Settings
from services.core.server import RunningService, start_service
from services.stations.app import SPEC as STATIONS
from services.stock.app import SPEC as STOCK


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


def fast_settings(database_url: str, **overrides: object) -> Settings:
    """Short heartbeats and polls so tests do not wait on timers meant for a plant."""
    values: dict[str, object] = dict(
        database_url=database_url,
        heartbeat_seconds=0.5,
        relay_poll_seconds=0.2,
        gauge_refresh_seconds=0.2,
        shutdown_grace_seconds=1.0,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class Stack:
    """Stock and stations running in this process, on free ports."""

    def __init__(self, stock: RunningService, stations: RunningService) -> None:
        self.stock_service = stock
        self.stations_service = stations
        self.channels = [
            grpc.aio.insecure_channel(stations.address),
            grpc.aio.insecure_channel(stock.address),
        ]
        self.stations = stations_pb2_grpc.StationsServiceStub(self.channels[0])
        self.stock = stock_pb2_grpc.StockServiceStub(self.channels[1])

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.stations_service.stop(0.5)
        await self.stock_service.stop(0.5)


async def start_stack(database_url: str) -> Stack:
    stock = await start_service(STOCK, fast_settings(database_url))
    stations = await start_service(
        STATIONS, fast_settings(database_url, peers={"stock": stock.address})
    )
    return Stack(stock, stations)


@pytest.fixture(scope="session")
async def stack(database_url: str) -> AsyncIterator[Stack]:
    running = await start_stack(database_url)
    yield running
    await running.close()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


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
        await s.CreateSite(pb.CreateSiteRequest(request_id=new_id("r"), site_id=self.site_id,
                                                name="Test plant"))
        for station in ("STAMP", "WELD", "ASSY"):
            await s.CreateStation(pb.CreateStationRequest(
                request_id=new_id("r"), site_id=self.site_id, station_id=station, name=station))
        for item in ("PART", "WELDED"):
            await s.CreateItem(pb.CreateItemRequest(
                request_id=new_id("r"), site_id=self.site_id, item_id=item, unit_of_measure="pcs"))
        await self.create_loop("P", "PART", "STAMP", "WELD", cards, container_quantity)
        await self.create_loop("W", "WELDED", "WELD", "ASSY", cards, container_quantity)
        return self

    async def create_loop(self, loop_id: str, item: str, supplier: str, consumer: str,
                          cards: int, container_quantity: int,
                          state: int = pb.CARD_STATE_UNSPECIFIED) -> pb.CreateLoopResponse:
        return await self.stub.CreateLoop(pb.CreateLoopRequest(
            request_id=new_id("r"), site_id=self.site_id, loop_id=loop_id, item_id=item,
            supplier_station_id=supplier, consumer_station_id=consumer,
            supermarket_location_id=f"SM-{loop_id}", container_quantity=container_quantity,
            card_count=cards, initial_card_state=state))

    async def scan(self, station: str, card: str, request_id: str | None = None):
        return await self.stub.ScanCard(pb.ScanCardRequest(
            request_id=request_id or new_id("r"), site_id=self.site_id, station_id=station,
            card_code=card))

    async def start(self, station: str, card: str = "", request_id: str | None = None):
        return await self.stub.StartSignal(pb.StartSignalRequest(
            request_id=request_id or new_id("r"), site_id=self.site_id, station_id=station,
            card_code=card))

    async def complete(self, station: str, card: str, lot: str, quantity: int,
                       request_id: str | None = None):
        return await self.stub.CompleteCard(pb.CompleteCardRequest(
            request_id=request_id or new_id("r"), site_id=self.site_id, station_id=station,
            card_code=card, lot_id=lot, quantity=quantity))

    async def cards(self, loop_id: str) -> list[pb.Card]:
        found = await self.stub.GetLoop(pb.GetLoopRequest(site_id=self.site_id, loop_id=loop_id))
        return list(found.cards)


@pytest.fixture
async def line(stack: Stack) -> Line:
    return await Line(stack.stations, new_id("site")).create()
