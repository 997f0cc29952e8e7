"""Background work repeated on a timer, that outlives a database outage."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

log = structlog.get_logger()


async def every(seconds: float, work: Callable[[], Awaitable[object]]) -> None:
    """Runs `work` every `seconds` until cancelled; a failed round is logged, not fatal."""
    while True:
        try:
            await work()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning(
                "periodic_work_failed", work=getattr(work, "__name__", ""), error=str(error)
            )
        await asyncio.sleep(seconds)
