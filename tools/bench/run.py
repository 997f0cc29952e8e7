"""One benchmark run: our stack under k6, then the ceilings with the stack stopped
(the bare prototype's scans would otherwise wake our relay and stock)."""

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg

from services.core import client
from services.devstack.processes import (
    ROOT,
    Launcher,
    free_port,
    wait_until_serving,
)
from tools.bench import k6
from tools.bench.line import (
    CARDS_PER_LOOP,
    Card,
    Line,
    Tokens,
    complete,
    issue_tokens,
    revoke_tokens,
    scan,
    start,
    take,
)
from tools.bench.report import (
    PHASE_HEADER,
    SATURATION,
    Phase,
    Result,
    add_signals,
    ceiling_row,
    compute_ratios,
    phase_row,
    scan_path_cpu,
    summarize,
)
from tools.bench.usage import Usage, local_postmaster, postgres_clients, spent
from tools.soak.load import SERVICES
from tools.soak.run import pid

LOADS = (0.25, 0.5, 0.9)  # of the saturation rate, open loop
STATIONS = 40
# Allots the cards of a series' first phase, a short closed-loop warm-up: its rate
# then sizes the saturation phase, whose rate sizes the open-loop ones.
WARM_UP_GUESS = 1000.0  # calls/s
# The ceilings run with the stack stopped, so their cards are made before, for at
# most this rate (well above what one Python process serves on a small machine).
CEILING_GUESS = 1000.0
# The saturation phase gets cards for this many times the warm-up's rate: a warm
# stack may be faster. Each phase gets a few per cent more than its rate needs.
SATURATION_HEADROOM = 1.5
CARD_MARGIN = 1.02
DRAIN_LIMIT_SECONDS = 120.0
WATCHER_READY_SECONDS = 30.0
STOP_SECONDS = 10.0

Take = Callable[[int], Awaitable[list[Card]]]


@dataclass(frozen=True)
class Options:
    seconds: float = 10.0  # per phase
    vus: int = k6.CLOSED_LOOP_VUS  # calls in flight at saturation

    @property
    def warm_up_seconds(self) -> float:
        return max(2.0, self.seconds / 5)

    def cards_for_series(self, rate: float) -> int:
        """At most what `Bench.series` takes when everything runs at `rate`."""
        seconds = self.warm_up_seconds + self.seconds * (SATURATION_HEADROOM + sum(LOADS))
        return math.ceil(rate * seconds * CARD_MARGIN) + 2 * (1 + len(LOADS))


@dataclass(frozen=True)
class Target:
    """What a series calls, where, and how a card becomes its call."""

    series: str
    method: str
    address: str
    request: Callable[[Card], dict[str, Any]]
    token: Callable[[Card], str]


class Bench:
    def __init__(
        self,
        options: Options,
        database_url: str,
        scratch: Path,
        usage: Usage,
        say: Callable[[str], None],
        relaying: bool = False,
    ) -> None:
        self.options = options
        self.database_url = database_url
        self.scratch = scratch
        self.usage = usage
        self.say = say
        # Whether our services run to deliver the events a phase causes.
        self.relaying = relaying

    def watching(self, usage: Usage, *, relaying: bool) -> "Bench":
        return Bench(self.options, self.database_url, self.scratch, usage, self.say, relaying)

    async def series(
        self, target: Target, cards: Take, warm_up_guess: float
    ) -> tuple[list[Phase], list[k6.Run], list[Card]]:
        """A warm-up, then saturation (closed loop), then each open-loop load. Returns
        the phases, their k6 runs and the cards whose call succeeded."""
        seconds = self.options.seconds
        warm_up_seconds = self.options.warm_up_seconds
        warm_up_cards = await cards(math.ceil(warm_up_guess * warm_up_seconds))
        warm_up = await self.call(target, warm_up_cards, seconds=warm_up_seconds)
        await self.drain()
        done = [c for c in warm_up_cards if c.code in warm_up.succeeded]
        estimate = len(done) / warm_up.window if warm_up.window else warm_up_guess
        phases: list[Phase] = []
        runs: list[k6.Run] = []
        for fraction in (None, *LOADS):
            rate = None if fraction is None else fraction * phases[0].sustained
            expected = (rate or SATURATION_HEADROOM * estimate) * seconds
            taken = await cards(math.ceil(expected * CARD_MARGIN) + 2)
            await self.drain()  # of the events of any loops made for it
            if self.usage.postmaster is not None:
                self.usage.clients = await postgres_clients(self.database_url)
            before, clients_before = self.usage.cpu(), self.usage.client_cpu()
            run = await self.call(target, taken, seconds=seconds, rate=rate)
            drain_seconds = await self.drain()
            cpu = spent(before, self.usage.cpu())
            cpu |= self.usage.by_client(
                clients_before, self.usage.client_cpu(), cpu.get("postgres")
            )
            cpu["k6"] = run.cpu_seconds
            load = SATURATION if fraction is None else f"{fraction:.0%}"
            phase = summarize(target.series, load, rate, run, cpu, drain_seconds)
            self.say(phase_row(phase))
            phases.append(phase)
            runs.append(run)
            done += [c for c in taken if c.code in run.succeeded]
        return phases, runs, done

    async def call(
        self, target: Target, cards: list[Card], *, seconds: float, rate: float | None = None
    ) -> k6.Run:
        calls = [{"request": target.request(c), "token": target.token(c)} for c in cards]
        return await k6.run(
            target.method,
            target.address,
            calls,
            self.scratch,
            seconds=seconds,
            rate=rate,
            vus=self.options.vus,
        )

    async def prepare(self, target: Target, cards: list[Card]) -> list[Card]:
        """Unmeasured: every card's call; returns the cards it succeeded for."""
        run = await self.call(target, cards, seconds=k6.UNTIL_DONE_SECONDS)
        await self.drain()
        return [c for c in cards if c.code in run.succeeded]

    async def drain(self) -> float:
        """Waits until every service has delivered the events so far (no outbox row
        pending), so that a phase pays for its own work only; returns how long."""
        if not self.relaying:
            return 0.0
        loop = asyncio.get_running_loop()
        began = loop.time()
        pending = " + ".join(
            f"(SELECT count(*) FROM {s}.outbox WHERE delivered_at IS NULL)" for s in SERVICES
        )
        conn = await asyncpg.connect(self.database_url)
        try:
            while await conn.fetchval(f"SELECT {pending}"):
                if loop.time() - began > DRAIN_LIMIT_SECONDS:
                    self.say(f"events still pending after {DRAIN_LIMIT_SECONDS:.0f} s; going on")
                    break
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        return loop.time() - began


class Stack:
    """Our line on the running services: its targets, with tokens of the station
    each call names, and cards made ready (a complete needs one scanned and started)."""

    def __init__(self, line: Line, tokens: Tokens, address: str, bench: Bench) -> None:
        self.line = line
        self.tokens = tokens
        self.address = address
        self.bench = bench

    def target(self, series: str, method: str) -> Target:
        site_id = self.line.site_id
        request = {"ScanCard": scan, "StartSignal": start, "CompleteCard": complete}[method]
        at_consumer = method == "ScanCard"
        return Target(
            series,
            method,
            self.address,
            lambda card: request(site_id, card),
            lambda card: self.tokens.stations[card.consumer if at_consumer else card.supplier],
        )

    async def take_in_process(self, count: int) -> list[Card]:
        line = self.line
        missing = count - len(line.in_process)
        if missing > 0:
            if len(line.empty) < missing:
                scanning = await line.take_full(missing - len(line.empty))
                line.empty += await self.bench.prepare(self.target("", "ScanCard"), scanning)
            starting = take(line.empty, missing)
            line.in_process += await self.bench.prepare(self.target("", "StartSignal"), starting)
        return take(line.in_process, count)


@dataclass
class StackFigures:
    phases: list[Phase]
    peak_rss_mib: dict[str, float]
    # FULL cards kept for the ceilings, which run after the stack stopped.
    bare_cards: list[Card]
    sql_cards: list[Card]
    loops: int


async def bench(
    options: Options, database_url: str, out_dir: Path, say: Callable[[str], None] = print
) -> Result:
    site_id = f"BENCH-{uuid.uuid4().hex[:8]}"
    stations = [f"S{n:02d}" for n in range(1, STATIONS + 1)]
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    tokens = await issue_tokens(database_url, stations, site_id)
    postmaster = await local_postmaster(database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="kanban-bench-") as name:
            scratch = Path(name)
            bench = Bench(options, database_url, scratch, Usage({}, postmaster), say)
            stack = await on_the_stack(bench, log_dir, tokens, site_id, stations)
            say("the stack stopped; the ceilings")
            say(PHASE_HEADER)
            phases, bare_peak = await bare_series(bench, site_id, stack.bare_cards, log_dir)
            ceilings = {
                "empty call": ceiling(
                    "empty",
                    f"--seconds={options.seconds}",
                    f"--connections={options.vus}",
                    "--streams=1",
                ),
                "scan SQL": ceiling(
                    "sql",
                    f"--database-url={database_url}",
                    f"--site-id={site_id}",
                    f"--cards={write_sql_cards(scratch, stack.sql_cards)}",
                    f"--seconds={options.seconds}",
                    f"--concurrency={options.vus}",
                ),
            }
    finally:
        await revoke_tokens(database_url, stations)
    setup = {
        "seconds_per_phase": options.seconds,
        "warm_up_seconds": options.warm_up_seconds,
        "in_flight_at_saturation": options.vus,
        "stations": STATIONS,
        "loops": stack.loops,
        "cards_per_loop": CARDS_PER_LOOP,
        "loads": list(LOADS),
        "cpu_count": os.cpu_count(),
    }
    for name, figures in ceilings.items():
        say(ceiling_row(name, figures))
    result = Result(setup, stack.phases + phases, ceilings, {**stack.peak_rss_mib, **bare_peak})
    result.ratios = compute_ratios(result)
    result.scan_path = scan_path_cpu(result)
    return result


async def on_the_stack(
    bench: Bench, log_dir: Path, tokens: Tokens, site_id: str, stations: list[str]
) -> StackFigures:
    """The four services with authentication on, the line, the watcher; the scan and
    complete series; each process's peak memory. Stops the services at the end."""
    settings = {
        "KANBAN_LOG_LEVEL": "INFO",
        "KANBAN_SERVICE_TOKEN": tokens.service,
        "KANBAN_SHUTDOWN_GRACE_SECONDS": "2",
    }
    launcher = Launcher(bench.database_url, log_dir, settings)
    try:
        services = await launcher.start_line()
        address = services["stations"].address
        async with client.channel(address, tokens.admin) as channel:
            line = await Line.build(channel, site_id, stations)
            options = bench.options
            bare_cards = await line.take_full(options.cards_for_series(CEILING_GUESS))
            sql_cards = await line.take_full(math.ceil(CEILING_GUESS * options.seconds))
            bench.say(
                f"site {site_id}: {STATIONS} stations, {line.loops} loops of {CARDS_PER_LOOP} "
                f"cards (more as the phases need them); logs in {log_dir}"
            )
            arrivals_file = bench.scratch / "arrivals.json"
            watcher = await start_watcher(address, tokens.admin, site_id, stations, arrivals_file)
            try:
                processes = {name: pid(services[name]) for name in SERVICES}
                processes["watcher"] = watcher.pid
                usage = Usage(processes, bench.usage.postmaster)
                bench = bench.watching(usage, relaying=True)
                stack = Stack(line, tokens, address, bench)
                await bench.drain()  # the loops' events: stock defines their supermarkets
                bench.say(PHASE_HEADER)
                scans, scan_runs, scanned = await bench.series(
                    stack.target("scan", "ScanCard"), line.take_full, WARM_UP_GUESS
                )
                line.empty += scanned
                completes, _, _ = await bench.series(
                    stack.target("complete", "CompleteCard"),
                    stack.take_in_process,
                    scans[0].rate,
                )
                peak_rss = usage.peak_rss_mib()
            finally:
                arrivals = await stop_watcher(watcher, arrivals_file)
        for phase, run in zip(scans, scan_runs, strict=True):
            add_signals(phase, run.calls, arrivals)
        return StackFigures(scans + completes, peak_rss, bare_cards, sql_cards, line.loops)
    finally:
        await launcher.close()


async def start_watcher(
    address: str, token: str, site_id: str, stations: list[str], out: Path
) -> asyncio.subprocess.Process:
    watcher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.bench.watcher",
        f"--address={address}",
        f"--token={token}",
        f"--site={site_id}",
        f"--stations={','.join(stations)}",
        f"--out={out}",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert watcher.stdout is not None
    try:
        async with asyncio.timeout(WATCHER_READY_SECONDS):
            ready = await watcher.stdout.readline()
    except TimeoutError:
        ready = b""
    if ready.strip() != b"ready":
        watcher.kill()
        await watcher.wait()
        raise RuntimeError("the watcher did not open its streams")
    return watcher


async def stop_watcher(watcher: asyncio.subprocess.Process, out: Path) -> dict[str, float]:
    """{card code: when its signal arrived}, from the watcher told to stop."""
    if watcher.returncode is None:
        watcher.terminate()
    if await watcher.wait() != 0:
        raise RuntimeError(f"the watcher failed (exit status {watcher.returncode})")
    arrivals: dict[str, float] = json.loads(await asyncio.to_thread(out.read_text))
    return arrivals


async def bare_series(
    bench: Bench, site_id: str, cards: list[Card], log_dir: Path
) -> tuple[list[Phase], dict[str, float]]:
    """The bare prototype, driven as our scan was, on cards of its own; its phases and
    its peak memory."""
    port = free_port()
    address = f"localhost:{port}"
    with new_log(log_dir / "bare.log") as log:
        bare = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.bench.bare",
            f"--database-url={bench.database_url}",
            f"--port={port}",
            cwd=ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await wait_until_serving(address, STOP_SECONDS, lambda: bare.returncode is None)
        bench = bench.watching(Usage({"bare": bare.pid}, bench.usage.postmaster), relaying=False)
        target = Target(
            "bare scan", "ScanCard", address, lambda card: scan(site_id, card), lambda card: ""
        )

        async def take_bare(count: int) -> list[Card]:
            if count > len(cards):
                bench.say(f"the bare scan's cards ran out ({CEILING_GUESS:.0f}/s allotted)")
            return take(cards, count)

        phases, _, _ = await bench.series(target, take_bare, CEILING_GUESS)
        return phases, bench.usage.peak_rss_mib()
    finally:
        bare.terminate()
        await bare.wait()


def new_log(path: Path) -> BinaryIO:
    return open(path, "wb")


def ceiling(*args: str) -> dict[str, Any]:
    """One figure of tools.bench.ceilings, which prints it as a JSON object."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.ceilings", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tools.bench.ceilings {args[0]} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def write_sql_cards(scratch: Path, cards: list[Card]) -> Path:
    path = scratch / "sql-cards.json"
    path.write_text(json.dumps([{"card_code": c.code, "station_id": c.consumer} for c in cards]))
    return path
