"""The soak's connections: a station's terminals, the ERP and ops screens following
their streams, and the line built through them."""

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from kanban.alerts.v1 import alerts_pb2, alerts_pb2_grpc
from kanban.orders.v1 import orders_pb2, orders_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc

from clients.kanbanctl.apply import apply_layout
from services.devstack.processes import FAST_RECONNECT, ServiceProcess
from tools.soak.line import RAW_ITEM, Card, Line, Options, layout, new_id, station_ids

CALL_TIMEOUT = 30.0
RETRY_PAUSE = 1.0
DRAIN_SECONDS = 60.0  # for operations in flight, and for events to reach stock and orders
# gRPC shares one connection among a process's channels to the same address; each
# terminal is a machine of its own, with a connection of its own to the server.
OWN_CONNECTION = [*FAST_RECONNECT, ("grpc.use_local_subchannel_pool", 1)]


class Channels:
    """Every connection of the soak: one per terminal (a station's operations go through
    its first terminal's), one per watcher, and one each for the rest."""

    def __init__(self, services: dict[str, ServiceProcess], options: Options) -> None:
        address = {name: service.address for name, service in services.items()}
        self.all: list[grpc.aio.Channel] = []
        self.stations = self._open(address["stations"])
        self.stock = self._open(address["stock"])
        self.orders = self._open(address["orders"])
        self.admin = stations_pb2_grpc.StationsServiceStub(self.stations)
        stations = station_ids(options)
        # Terminal n watches station n modulo the stations: every station has one.
        self.terminals = [
            (stations[n % len(stations)], self._open(address["stations"]))
            for n in range(options.terminals)
        ]
        self.station_stubs: dict[str, Any] = {}
        for station, channel in self.terminals:
            self.station_stubs.setdefault(station, stations_pb2_grpc.StationsServiceStub(channel))
        self.order_watchers = [self._open(address["orders"]) for _ in range(options.watchers)]
        self.alert_watchers = [self._open(address["alerts"]) for _ in range(options.watchers)]

    def _open(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address, options=OWN_CONNECTION)
        self.all.append(channel)
        return channel

    async def ready(self) -> None:
        await asyncio.gather(*(channel.channel_ready() for channel in self.all))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.all))


async def build_line(channels: Channels, site_id: str, options: Options) -> Line:
    """Applies the layout (as `kanbanctl apply` does), then reads the cards it made."""
    wanted = layout(site_id, options)
    report = await apply_layout(channels.stations, channels.stock, channels.orders, wanted)
    if not report.ok:
        raise SystemExit(f"the soak's line could not be built:\n{report.render()}")
    stock = stock_pb2_grpc.StockServiceStub(channels.stock)
    await stock.CreateItem(
        stock_pb2.CreateItemRequest(
            request_id=new_id(), site_id=site_id, item_id=RAW_ITEM, unit_of_measure="kg"
        )
    )
    cards = []
    for loop in wanted["loops"]:
        found = await channels.admin.GetLoop(
            pb.GetLoopRequest(site_id=site_id, loop_id=loop["loop_id"])
        )
        cards += [
            Card(
                c.card_code,
                c.loop_id,
                loop["supplier_station_id"],
                loop["consumer_station_id"],
                c.state,
            )
            for c in found.cards
        ]
    return Line(
        site_id,
        cards,
        wanted["stations"][-1]["station_id"],
        Counter(station for station, _ in channels.terminals),
        channels.station_stubs,
        stock,
        orders_pb2_grpc.OrdersServiceStub(channels.orders),
    )


# Streams


class Follower:
    """One client of a resumable stream (a terminal, an ERP following orders, an ops
    screen following alerts). Like a real one it drops the connection now and then
    and resumes from the last sequence it saw; it keeps every item it was sent."""

    def __init__(
        self,
        watching: str,
        open_stream: Callable[[int], Any],
        on_item: Callable[[str, Any], str],
        reconnect_seconds: float,
        rng: random.Random,
    ) -> None:
        self.watching = watching
        self.open_stream = open_stream
        self.on_item = on_item
        self.reconnect_seconds = reconnect_seconds
        self.rng = rng
        self.cursor = 0
        # (kind, sequence, what it was about), in the order received.
        self.received: list[tuple[str, int, str]] = []
        self.reconnects = 0
        self.errors: list[str] = []

    async def run(self) -> None:
        while True:
            call = self.open_stream(self.cursor)
            try:
                async with asyncio.timeout(self.rng.uniform(0.5, 1.5) * self.reconnect_seconds):
                    async for message in call:
                        self.receive(message)
                self.errors.append("the stream ended")
            except TimeoutError:
                self.reconnects += 1
            except grpc.aio.AioRpcError as error:
                self.errors.append(f"{error.code().name}: {error.details()}")
                await asyncio.sleep(RETRY_PAUSE)
            finally:
                call.cancel()

    def receive(self, message: Any) -> None:
        kind = message.WhichOneof("message")
        if kind == "heartbeat":
            return
        item = getattr(message, kind)
        self.received.append((kind, item.sequence, self.on_item(kind, item)))
        self.cursor = max(self.cursor, item.sequence)

    def sequences(self, kind: str | None = None) -> list[int]:
        return [s for k, s, _ in self.received if kind in (None, k)]

    def about(self, kind: str) -> list[str]:
        return [what for k, _, what in self.received if k == kind]


def terminals(
    channels: Channels, line: Line, options: Options, rng: random.Random
) -> list[Follower]:
    def follower(station: str, channel: grpc.aio.Channel) -> Follower:
        stub = stations_pb2_grpc.StationsServiceStub(channel)

        def on_item(kind: str, item: Any) -> str:
            line.shown(station, kind, item)
            return str(item.card_code if kind == "signal" else getattr(item, "instruction_id", ""))

        def open_stream(cursor: int) -> Any:
            request = pb.WatchSignalsRequest(
                site_id=line.site_id, station_id=station, after_sequence=cursor
            )
            return stub.WatchSignals(request)

        return Follower(station, open_stream, on_item, options.reconnect_seconds, rng)

    return [follower(station, channel) for station, channel in channels.terminals]


def watchers(
    channels: Channels, site_id: str, options: Options, rng: random.Random
) -> list[Follower]:
    """The ERP following orders and ops following alerts, `options.watchers` of each."""

    def orders(channel: grpc.aio.Channel) -> Follower:
        stub = orders_pb2_grpc.OrdersServiceStub(channel)
        return Follower(
            "orders",
            lambda cursor: stub.WatchOrders(
                orders_pb2.WatchOrdersRequest(site_id=site_id, after_sequence=cursor)
            ),
            lambda kind, update: (
                f"{update.order.erp_order_id} {orders_pb2.OrderState.Name(update.order.state)}"
            ),
            options.reconnect_seconds,
            rng,
        )

    def alerts(channel: grpc.aio.Channel) -> Follower:
        stub = alerts_pb2_grpc.AlertsServiceStub(channel)
        return Follower(
            "alerts",
            lambda cursor: stub.WatchAlerts(
                alerts_pb2.WatchAlertsRequest(site_id=site_id, after_sequence=cursor)
            ),
            lambda kind, alert: f"{alert.alert_id} {alerts_pb2.Rule.Name(alert.rule)}",
            options.reconnect_seconds,
            rng,
        )

    return [orders(c) for c in channels.order_watchers] + [
        alerts(c) for c in channels.alert_watchers
    ]
