"""One soak: the services as processes, the line, the load, the checks."""

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from services.devstack.processes import Launcher, ServiceProcess
from tools.soak.checks import check_at_end
from tools.soak.clients import Channels, build_line, terminals, watchers
from tools.soak.line import Check, Options
from tools.soak.load import SERVICES, Driver, Sampler, retries
from tools.soak.verdict import TABLE_HEADER, Result, table_row

# Tokens are not what a soak is about (tests/integration/test_access.py is); the
# services' own defaults otherwise: heartbeats every 5 s, as in a plant.
SETTINGS = {"KANBAN_AUTH": "off", "KANBAN_LOG_LEVEL": "INFO", "KANBAN_SHUTDOWN_GRACE_SECONDS": "2"}


async def soak(
    options: Options, database_url: str, log_dir: Path, out: Callable[[str], None] = print
) -> Result:
    """Starts the services, builds the line, runs the load, checks the invariants; prints
    a row per interval to `out` as it goes, and returns what it measured and found."""
    launcher = Launcher(database_url, log_dir, SETTINGS)
    try:
        services = await launcher.start_line()
        channels = Channels(services, options)
        try:
            return await drive(options, services, channels, log_dir, out)
        finally:
            await channels.close()
    finally:
        await launcher.close()


async def drive(
    options: Options,
    services: dict[str, ServiceProcess],
    channels: Channels,
    log_dir: Path,
    out: Callable[[str], None],
) -> Result:
    rng = random.Random(options.seed)
    await channels.ready()
    site_id = f"SOAK-{uuid.uuid4().hex[:8]}"
    line = await build_line(channels, site_id, options)
    out(f"site {site_id}: {len(line.cards)} cards in {options.loops} loops; logs in {log_dir}")
    followers = terminals(channels, line, options, rng)
    watching = watchers(channels, site_id, options, rng)
    driver = Driver(line, options.rate, rng)
    sampler = Sampler(
        {name: pid(services[name]) for name in SERVICES},
        driver,
        line,
        channels.admin,
        options.interval,
    )
    async with running([f.run() for f in followers + watching]):
        out(TABLE_HEADER)
        await asyncio.gather(
            driver.run(options.seconds),
            sampler.run(options.seconds, lambda sample: out(table_row(sample))),
        )
        answered = Check("every operation answered (in flight ones within the drain)")
        answered.expect(await driver.finish() == 0, "operations still unanswered")
        checks = [answered, line.answers, sampler.wip]
        checks += await check_at_end(line, followers, watching, channels.admin, sampler.wip)
    stream_errors = [f"{f.watching} stream: {e}" for f in followers + watching for e in f.errors]
    return Result(
        options=options,
        samples=sampler.samples,
        done=driver.done,
        errors=driver.errors + stream_errors,
        idle=driver.idle,
        signal_latencies=[latency for _, latency in line.signal_latencies],
        checks=checks,
        terminals=followers,
        retries={s: await asyncio.to_thread(retries, services[s].metrics_port) for s in SERVICES},
        log_dir=log_dir,
    )


@contextlib.asynccontextmanager
async def running(coroutines: list[Awaitable[None]]) -> AsyncIterator[None]:
    """Runs the coroutines while the block runs; a crash of one is raised at the end."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome


def pid(service: ServiceProcess) -> int:
    assert service.process is not None, f"{service.name} is not running"
    return service.process.pid
