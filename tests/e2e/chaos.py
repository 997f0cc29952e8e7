"""Pieces of fault-injection runs (tests/e2e/test_faults.py).

A PostgreSQL of the run's own to restart abruptly; clients that send a change
again with the same request id until it is answered; station streams that
resume from the last sequence seen and can be dropped at random; faults spread
over the load at seeded random moments; and a tally of invariant checks.
"""

import asyncio
import json
import random
import sys
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from tests.conftest import Refusal
from tests.e2e.conftest import ServiceProcess

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CALL_TIMEOUT = 5.0
RETRY_PAUSE = 0.1
# Far beyond any restart in these runs: a client giving up means a service never
# came back.
GIVE_UP_SECONDS = 120.0
# Streams send a heartbeat every half second (tests/e2e/conftest.py); this long
# without anything means the connection died without either side noticing.
SILENCE_SECONDS = 10.0
PG_CTL_SECONDS = 60.0


# pgserver and pg_ctl run in a child Python process: under root they fork a process that
# switches user, which in this process, with gRPC's threads about, can crash or hang
# between fork and exec.
_START = """
import json, sys
from pathlib import Path
import pgserver
server = pgserver.get_server(Path(sys.argv[1]), cleanup_mode=None)
print(json.dumps({"url": server.get_uri(), "user": server.system_user,
                  "socket_dir": str(server.get_postmaster_info().socket_dir)}))
"""
_PG_CTL = """
import sys
from pathlib import Path
from pgserver import pg_ctl
pg_ctl(sys.argv[4:], pgdata=Path(sys.argv[1]), user=sys.argv[2] or None, timeout=float(sys.argv[3]))
"""


async def _python(script: str, *args: str) -> str:
    """Runs the script in a child Python; its output, or an error with what it said."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, stdout=PIPE, stderr=PIPE
    )
    output, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{args}: {errors.decode(errors='replace')[-3000:]}")
    return output.decode()


class RestartablePostgres:
    """A PostgreSQL of the run's own (pgserver's, with its data in a folder of the test):
    restarting it leaves the session's server, which other tests use, alone."""

    def __init__(self, data_dir: Path, url: str, user: str | None, socket_dir: str) -> None:
        self.url = url
        self.restarts = 0
        self._data_dir = data_dir
        # Under root, pgserver runs PostgreSQL as a user of its own; pg_ctl must too.
        self._user = user or ""
        # As pgserver starts it: on a Unix socket only, at the same path every time.
        self._start_args = ["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(data_dir / "log")]

    @classmethod
    async def start(cls, data_dir: Path) -> "RestartablePostgres":
        # Not cleanup_mode "stop": pgserver would stop the postmaster it started when
        # the child exits; stop() stops the one running then.
        started = json.loads(await _python(_START, str(data_dir)))
        return cls(data_dir, started["url"], started["user"], started["socket_dir"])

    async def restart(self, down_seconds: float) -> None:
        """Stops it the hard way (every connection cut, no checkpoint), waits, and starts
        it again on the same socket: it recovers from its WAL as after a crash."""
        await self._pg_ctl("-w", "-m", "immediate", "stop")
        await asyncio.sleep(down_seconds)
        await self._pg_ctl("-w", *self._start_args, "start")
        self.restarts += 1

    async def stop(self) -> None:
        await self._pg_ctl("-w", "-m", "fast", "stop")

    async def _pg_ctl(self, *args: str) -> None:
        await _python(_PG_CTL, str(self._data_dir), self._user, str(PG_CTL_SECONDS), *args)


class Refused(Exception):
    """The service answered a change with a refusal (not a failure to reach it)."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(f"{error.code().name}: {error.details()}")
        self.refusal = Refusal(error)


@dataclass(frozen=True)
class Answered:
    service: str
    rpc: str
    request: Any
    response: Any


class Clients:
    """Changes sent as terminals, the ERP and the warehouse send them: while a service
    is unreachable or slow, the same request (the same request id) is sent again
    until it is answered. Remembers every answered change for the replay."""

    def __init__(self, stubs: dict[str, Any]) -> None:
        self.stubs = stubs
        self.answered: list[Answered] = []
        self.refused: Counter[str] = Counter()
        self.retried: set[str] = set()
        self.attempts = 0

    async def send(self, service: str, rpc: str, request: Any) -> Any:
        """The answer; raises Refused if the service said no."""
        clock = asyncio.get_running_loop()
        give_up_at = clock.time() + GIVE_UP_SECONDS
        method = getattr(self.stubs[service], rpc)
        while True:
            try:
                response = await method(request, timeout=CALL_TIMEOUT)
                break
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE or clock.time() > give_up_at:
                    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
                    refused = Refused(error)
                    self.refused[f"{rpc} {refused.refusal.reason}"] += 1
                    raise refused from error
            self.retried.add(request.request_id)
            self.attempts += 1
            await asyncio.sleep(RETRY_PAUSE)
        self.answered.append(Answered(service, rpc, request, response))
        return response

    async def replay(self, answered: list[Answered]) -> list[str]:
        """Sends each answered change again with its request id; what did not get its
        first answer back."""
        gate = asyncio.Semaphore(8)

        async def again(done: Answered) -> str:
            async with gate:
                method = getattr(self.stubs[done.service], done.rpc)
                response = await method(done.request, timeout=CALL_TIMEOUT * 4)
            if response == done.response:
                return ""
            return f"{done.rpc} {done.request.request_id}: {response} != {done.response}"

        return [m for m in await asyncio.gather(*(again(d) for d in answered)) if m]


class StationFeed:
    """A station terminal's WatchSignals stream. When it breaks, or drop() cuts it, it
    is opened again after the last sequence seen. Everything it yields must come
    after that cursor: anything else is a repeat, kept in `repeats`."""

    def __init__(
        self,
        stub: stations_pb2_grpc.StationsServiceStub,
        site_id: str,
        station_id: str,
        on_item: Callable[[pb.WatchSignalsResponse], None],
    ) -> None:
        self.station_id = station_id
        self.cursor = 0
        self.seen: list[pb.WatchSignalsResponse] = []
        self.repeats: list[str] = []
        self.opened = 0
        self.drops = 0
        self.breaks: Counter[str] = Counter()
        self._stub = stub
        self._site_id = site_id
        self._on_item = on_item
        self._stream: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Follows the station until cancelled."""
        while True:
            self._stream = asyncio.create_task(self._follow(self.cursor))
            try:
                await asyncio.wait([self._stream])
            except asyncio.CancelledError:
                self._stream.cancel()
                raise
            if not self._stream.cancelled() and (error := self._stream.exception()):
                if not isinstance(error, grpc.aio.AioRpcError) or error.code() not in RETRYABLE:
                    raise error
                self.breaks[error.code().name] += 1
            await asyncio.sleep(RETRY_PAUSE)

    def drop(self) -> None:
        """Cuts the stream as a terminal losing its network would."""
        if self._stream is not None and not self._stream.done():
            self._stream.cancel()
            self.drops += 1

    async def _follow(self, after: int) -> None:
        self.opened += 1
        call = self._stub.WatchSignals(
            pb.WatchSignalsRequest(
                site_id=self._site_id, station_id=self.station_id, after_sequence=after
            )
        )
        try:
            while True:
                try:
                    message = await asyncio.wait_for(call.read(), SILENCE_SECONDS)
                except TimeoutError:
                    self.breaks["SILENT"] += 1
                    return
                if message is grpc.aio.EOF:
                    self.breaks["ENDED"] += 1
                    return
                kind = message.WhichOneof("message")
                if kind == "heartbeat":
                    continue
                sequence = getattr(message, kind).sequence
                if sequence <= self.cursor:
                    self.repeats.append(f"{kind} {sequence} after cursor {self.cursor}")
                    continue
                self.cursor = sequence
                self.seen.append(message)
                self._on_item(message)
        finally:
            call.cancel()


@dataclass(frozen=True)
class Fault:
    at: float  # seconds into the load
    target: str  # a service's name, or POSTGRES
    down: float  # seconds before it is started again


POSTGRES = "postgres"


def plan_faults(
    rng: random.Random, seconds: float, services: list[str], kills: int, pg_restarts: int
) -> list[Fault]:
    """Each service killed `kills` times and PostgreSQL restarted `pg_restarts` times, at
    random moments of the load (not its very start or end), in time order."""
    targets = [s for s in services for _ in range(kills)] + [POSTGRES] * pg_restarts
    planned = [Fault(rng.uniform(0.1, 0.85) * seconds, t, rng.uniform(0.1, 1.0)) for t in targets]
    return sorted(planned, key=lambda f: f.at)


async def inject(
    faults: list[Fault],
    services: dict[str, ServiceProcess],
    postgres: RestartablePostgres,
    log: list[str],
) -> None:
    """Runs the faults one after the other, each at its moment (or at once if the one
    before took past it): SIGKILL and restart a service, or restart PostgreSQL."""
    clock = asyncio.get_running_loop()
    began = clock.time()
    for fault in faults:
        await asyncio.sleep(max(0.0, began + fault.at - clock.time()))
        at = clock.time() - began
        if fault.target == POSTGRES:
            await postgres.restart(fault.down)
        else:
            service = services[fault.target]
            await service.kill()
            await asyncio.sleep(fault.down)
            await service.start()
        log.append(f"{at:.1f}s {fault.target} down {fault.down:.1f}s")
        exited = [n for n, s in services.items() if not s.running]
        assert not exited, f"after the {fault.target} fault, {exited} exited on their own:\n" + (
            "\n".join(services[n].log_tail() for n in exited)
        )


class Checks:
    """Invariant checks, each counted; violations are collected and reported together."""

    def __init__(self) -> None:
        self.count = 0
        self.violations: list[str] = []

    def expect(self, holds: bool, violation: str) -> None:
        self.count += 1
        if not holds:
            self.violations.append(violation)

    def equal(self, actual: object, expected: object, what: str) -> None:
        self.expect(actual == expected, f"{what}: {actual!r}, expected {expected!r}")
