"""The steady load and what is sampled while it runs."""

import asyncio
import itertools
import math
import os
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from tools.soak.clients import CALL_TIMEOUT, DRAIN_SECONDS, RETRY_PAUSE
from tools.soak.line import Check, Line, Operation

SERVICES = ("stations", "stock", "orders", "alerts")
T = TypeVar("T")


@dataclass(frozen=True)
class Done:
    """An operation answered: which RPC, and seconds from its due time to the answer."""

    rpc: str
    latency: float


class Driver:
    """Sends operations at a steady rate, open loop: each at its due time whether or not
    earlier ones answered, so a slow server shows as latency, not as a lower rate.
    Latency runs from the due time to the answer. A failed call is counted and sent
    again with the same request id (safe: the first answer comes back)."""

    def __init__(self, line: Line, rate: float, rng: random.Random) -> None:
        self.line = line
        self.rate = rate
        self.rng = rng
        self.done: list[Done] = []
        self.errors: list[str] = []
        # Due times when no operation was possible: every card busy, the server behind.
        self.idle = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, seconds: float) -> None:
        start = time.monotonic()
        for n in itertools.count():
            due = start + n / self.rate
            if due >= start + seconds:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.launch(due)

    def launch(self, due: float) -> None:
        operation = self.line.next_operation(self.rng)
        if operation is None:
            self.idle += 1
            return
        task = asyncio.create_task(self.perform(operation, due))
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()):
            self.errors.append(f"the soak itself failed: {error!r}")

    async def perform(self, operation: Operation, due: float) -> None:
        while True:
            try:
                reply = await operation.call(operation.request, timeout=CALL_TIMEOUT)
                break
            except grpc.aio.AioRpcError as error:
                self.errors.append(f"{operation.rpc}: {error.code().name}: {error.details()}")
                await asyncio.sleep(RETRY_PAUSE)
        self.done.append(Done(operation.rpc, time.monotonic() - due))
        operation.done(reply)

    async def finish(self) -> int:
        """Waits for the operations in flight; returns how many did not finish."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=DRAIN_SECONDS)
        unfinished = len(self.tasks)
        for task in list(self.tasks):
            task.cancel()
        return unfinished


@dataclass
class Sample:
    """One interval: what the load did and what each service held at its end."""

    t: float
    ops: int
    rate: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    signal_p50_ms: float
    signal_p99_ms: float
    rss_mib: dict[str, float]
    fds: dict[str, int]
    latencies: list[float] = field(repr=False)


def process_figures(pid: int) -> tuple[float, int]:
    """RSS in MiB (VmRSS in /proc/<pid>/status) and open file descriptors."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
    )
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank; NaN when there is nothing to rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Sampler:
    """Every interval: the services' RSS and fds, the interval's latency, rate and errors,
    and WIP against cap on the board (an invariant checked all along)."""

    def __init__(
        self, pids: dict[str, int], driver: Driver, line: Line, admin: Any, interval: float
    ) -> None:
        self.pids = pids
        self.driver = driver
        self.line = line
        self.admin = admin
        self.interval = interval
        self.samples: list[Sample] = []
        self.wip = Check("WIP never above cap, per loop and per station (board every interval)")
        # How much of each (append-only) record earlier samples took.
        self.taken: Counter[str] = Counter()

    async def run(self, seconds: float, on_sample: Callable[[Sample], None]) -> None:
        start = last = time.monotonic()
        while (now := last + self.interval) <= start + seconds + 1e-6:
            await asyncio.sleep(max(0.0, now - time.monotonic()))
            sample = self.sample(now - start, now - last)
            await check_board(self.admin, self.line.site_id, self.wip)
            self.samples.append(sample)
            on_sample(sample)
            last = now

    def sample(self, t: float, seconds: float) -> Sample:
        latencies = [d.latency for d in self.take("done", self.driver.done)]
        signals = [latency for _, latency in self.take("signals", self.line.signal_latencies)]
        figures = {name: process_figures(pid) for name, pid in self.pids.items()}
        return Sample(
            t=round(t, 1),
            ops=len(latencies),
            rate=len(latencies) / seconds,
            errors=len(self.take("errors", self.driver.errors)),
            p50_ms=percentile(latencies, 0.5) * 1000,
            p95_ms=percentile(latencies, 0.95) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            signal_p50_ms=percentile(signals, 0.5) * 1000,
            signal_p99_ms=percentile(signals, 0.99) * 1000,
            rss_mib={name: rss for name, (rss, _) in figures.items()},
            fds={name: fds for name, (_, fds) in figures.items()},
            latencies=latencies,
        )

    def take(self, record: str, items: list[T]) -> list[T]:
        """What was appended to `items` since the last sample."""
        new = items[self.taken[record] :]
        self.taken[record] = len(items)
        return new


async def check_board(admin: Any, site_id: str, check: Check) -> None:
    board = await admin.GetBoard(pb.GetBoardRequest(site_id=site_id), timeout=CALL_TIMEOUT)
    for loop in board.loops:
        check.expect(
            loop.wip_units <= loop.loop.cap_units,
            f"loop {loop.loop.loop_id}: WIP {loop.wip_units} above cap {loop.loop.cap_units}",
        )
    for station in board.stations:
        check.expect(
            station.wip_units <= station.cap_units,
            f"station {station.station_id}: WIP {station.wip_units} above cap {station.cap_units}",
        )


def retries(metrics_port: int) -> Counter[str]:
    """What a service retried or received twice, from its /metrics: failed outbox
    deliveries by destination (each batch is sent again), duplicate events dropped.
    Invisible to clients, but work a loaded service does twice."""
    url = f"http://localhost:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as reply:
        text = reply.read().decode()
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, int(sample.value)
            if name == "kanban_outbox_delivery_failures_total":
                found[f"deliveries to {labels['destination']} failed"] += value
            if name == "kanban_inbox_events_total" and labels["outcome"] == "duplicate":
                found["duplicate events dropped"] += value
    return found
