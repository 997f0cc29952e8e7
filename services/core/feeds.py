"""Resumable server streams: what a client has not seen after its cursor, then
what comes as it commits, with heartbeats while nothing does."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import asyncpg

from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.notify import Notifications


class Sequenced(Protocol):
    @property
    def sequence(self) -> int: ...


T = TypeVar("T", bound=Sequenced)


@dataclass(frozen=True)
class Heartbeat:
    """Sent when nothing else was for a while: the stream is alive."""

    sent_at: datetime
    # The highest sequence used so far, seen or not.
    last_sequence: int


async def follow(
    db: Database,
    notifications: Notifications,
    key: str,
    after_sequence: int,
    heartbeat_seconds: float,
    read_after: Callable[[asyncpg.Connection, int], Awaitable[Sequence[T]]],
    read_last: Callable[[asyncpg.Connection], Awaitable[int]],
    page_size: int,
) -> AsyncIterator[T | Heartbeat]:
    """Items after the cursor in sequence order, then new ones as `key` is notified.

    `read_after` returns at most `page_size` items, or at least that many when there
    may be more; fewer means it read everything committed before it.

    Ends at shutdown (notifications closed): the client reconnects, perhaps to
    another replica, from the last sequence it saw, and misses nothing.
    """
    if after_sequence < 0:
        raise InvalidArgument("after_sequence", "must be zero or more")
    cursor = after_sequence
    with notifications.subscribe(key) as woken:
        while not notifications.closed:
            # Cleared before reading, so what commits meanwhile wakes the next round.
            woken.clear()
            async with db.pool.acquire() as conn:
                items = await read_after(conn, cursor)
            for item in items:
                cursor = item.sequence
                yield item
            # A short read saw all that was committed before it, and anything
            # committed since has set `woken`: no need to read again to find nothing.
            if len(items) >= page_size:
                continue
            try:
                await asyncio.wait_for(woken.wait(), heartbeat_seconds)
            except TimeoutError:
                async with db.pool.acquire() as conn:
                    last = await read_last(conn)
                yield Heartbeat(datetime.now(UTC), last)
