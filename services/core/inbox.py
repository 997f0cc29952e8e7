"""Applying received events exactly once: the event id is recorded with the effect."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.core.db import Database
from services.core.events import Payload


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: str
    site_id: str
    source: str
    occurred_at: datetime
    payload: Payload


EventHandler = Callable[[asyncpg.Connection, ReceivedEvent], Awaitable[None]]


async def apply_once(db: Database, event: ReceivedEvent, handler: EventHandler) -> bool:
    """Applies the event unless it was applied before; True if applied now."""
    async with db.transaction() as conn:
        first_time = await conn.fetchval(
            """INSERT INTO inbox (event_id, source, event_type) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            event.event_id,
            event.source,
            type(event.payload).__name__,
        )
        if first_time:
            await handler(conn, event)
        return bool(first_time)
