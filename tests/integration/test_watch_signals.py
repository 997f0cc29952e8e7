"""WatchSignals: open signals after a cursor, then live ones; resumable; any replica."""

import asyncio

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core.server import start_service
from services.stations import storage
from services.stations.app import SPEC as STATIONS
from tests.conftest import Line, fast_settings, new_id


class Terminal:
    """A supplier terminal: reads its station's stream into a queue."""

    def __init__(self, stub, site_id: str, station_id: str, after: int = 0) -> None:
        self.messages: asyncio.Queue[pb.WatchSignalsResponse] = asyncio.Queue()
        self._call = stub.WatchSignals(
            pb.WatchSignalsRequest(site_id=site_id, station_id=station_id, after_sequence=after)
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._call:
            await self.messages.put(message)

    async def next_signal(self, timeout: float = 30) -> pb.Signal:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout)
            if message.HasField("signal"):
                return message.signal

    async def next_withdrawal(self, timeout: float = 30) -> pb.SignalWithdrawal:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout)
            if message.HasField("signal_withdrawal"):
                return message.signal_withdrawal

    async def next_heartbeat(self, timeout: float = 30) -> pb.Heartbeat:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout)
            if message.HasField("heartbeat"):
                return message.heartbeat

    def signals_so_far(self) -> list[pb.Signal]:
        found = []
        while not self.messages.empty():
            message = self.messages.get_nowait()
            if message.HasField("signal"):
                found.append(message.signal)
        return found

    def disconnect(self) -> None:
        self._call.cancel()
        self._task.cancel()


async def test_a_terminal_gets_open_signals_first_then_new_ones(stack, line):
    await line.scan("WELD", "P-001")
    await line.scan("WELD", "P-002")
    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    try:
        assert [(await terminal.next_signal()).card_code for _ in range(2)] == ["P-001", "P-002"]
        await line.scan("WELD", "P-003")
        live = await terminal.next_signal()
        assert (live.card_code, live.sequence) == ("P-003", 3)
    finally:
        terminal.disconnect()


async def test_a_reconnecting_terminal_misses_nothing_and_gets_nothing_twice(stack, line):
    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    await line.scan("WELD", "P-001")
    last_seen = (await terminal.next_signal()).sequence
    terminal.disconnect()

    # While it is away, more containers are consumed.
    await line.scan("WELD", "P-002")
    await line.scan("WELD", "P-003")

    back = Terminal(stack.stations, line.site_id, "STAMP", after=last_seen)
    try:
        got = [(await back.next_signal()).card_code for _ in range(2)]
        await back.next_heartbeat()  # nothing more is coming
        assert got == ["P-002", "P-003"]
        assert back.signals_so_far() == []
    finally:
        back.disconnect()


async def test_signals_already_started_are_not_sent_again(stack, line):
    await line.scan("WELD", "P-001")
    await line.scan("WELD", "P-002")
    await line.start("STAMP")  # takes P-001

    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    try:
        assert (await terminal.next_signal()).card_code == "P-002"
        heartbeat = await terminal.next_heartbeat()
        assert heartbeat.last_sequence == 2
        assert terminal.signals_so_far() == []
    finally:
        terminal.disconnect()


async def test_a_terminal_sees_only_its_own_station(stack, line):
    terminal = Terminal(stack.stations, line.site_id, "WELD")
    try:
        await line.scan("WELD", "P-001")  # a signal for STAMP
        await line.scan("ASSY", "W-001")  # a signal for WELD
        assert (await terminal.next_signal()).card_code == "W-001"
    finally:
        terminal.disconnect()


async def test_a_scan_on_one_replica_reaches_a_terminal_on_another(stack, line, database_url):
    replica = await start_service(STATIONS, fast_settings(database_url, peers=stack.peers))
    channel = grpc.aio.insecure_channel(replica.address)
    try:
        terminal = Terminal(stations_pb2_grpc.StationsServiceStub(channel), line.site_id, "STAMP")
        await terminal.next_heartbeat()  # subscribed on the replica
        await line.scan("WELD", "P-001")  # through the first replica
        assert (await terminal.next_signal()).card_code == "P-001"
        terminal.disconnect()
    finally:
        await channel.close()
        await replica.stop(0.5)


async def test_shutdown_ends_signal_streams_so_terminals_reconnect(stack, line, database_url):
    replica = await start_service(STATIONS, fast_settings(database_url, peers=stack.peers))
    channel = grpc.aio.insecure_channel(replica.address)
    try:
        stub = stations_pb2_grpc.StationsServiceStub(channel)
        call = stub.WatchSignals(pb.WatchSignalsRequest(site_id=line.site_id, station_id="STAMP"))
        assert (await call.read()).HasField("heartbeat")

        await asyncio.wait_for(replica.stop(grace=30), 10)

        assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


async def test_a_feed_longer_than_a_page_comes_whole_and_in_order(stack, monkeypatch):
    monkeypatch.setattr(storage, "FEED_PAGE", 2)
    line = await Line(stack.stations, new_id("site")).create(cards=6)
    codes = [f"P-00{n}" for n in range(1, 6)]
    for code in codes:
        await line.scan("WELD", code)
    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    try:
        # Five open signals, read two at a time.
        seen = [await terminal.next_signal() for _ in codes]
        assert [(s.card_code, s.sequence) for s in seen] == list(
            zip(codes, range(1, 6), strict=True)
        )

        # Down to one card: the five waiting ones retire and their signals are withdrawn.
        await line.stub.ResizeLoop(
            pb.ResizeLoopRequest(
                request_id=new_id("r"),
                site_id=line.site_id,
                loop_id="P",
                card_count=1,
                reason="demand fell",
            )
        )
        resumed = Terminal(stack.stations, line.site_id, "STAMP", after=seen[-1].sequence)
        try:
            withdrawals = [await resumed.next_withdrawal() for _ in codes]
            assert sorted(w.card_code for w in withdrawals) == codes
            sequences = [w.sequence for w in withdrawals]
            assert sequences == sorted(set(sequences)) and sequences[0] > seen[-1].sequence
        finally:
            resumed.disconnect()
    finally:
        terminal.disconnect()
