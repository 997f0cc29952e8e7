"""Applying received events exactly once: the event id is recorded with the effect."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
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


async def apply_once(
    db: Database, events: Sequence[ReceivedEvent], handler: EventHandler
) -> list[bool]:
    """Applies, in order and in one transaction, each event not applied before; for
    each event, whether it was applied now (False for a duplicate, also of an earlier
    event in the same batch).

    One transaction per batch, not per event: a busy line delivers batches of hundreds,
    and a commit each cost more than applying them. The batch is applied whole or not
    at all, so a redelivery after a failure finds none of it applied."""
    async with db.transaction() as conn:
        # ON CONFLICT DO NOTHING also skips an id repeated within the statement.
        recorded = await conn.fetch(
            """INSERT INTO inbox (event_id, source, event_type)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
               ON CONFLICT DO NOTHING RETURNING event_id::text""",
            [e.event_id for e in events],
            [e.source for e in events],
            [type(e.payload).__name__ for e in events],
        )
        new = {row["event_id"] for row in recorded}
        applied = []
        for event in events:
            # As PostgreSQL spells it: an id may arrive in another of a UUID's spellings.
            event_id = str(uuid.UUID(event.event_id))
            first_time = event_id in new
            new.discard(event_id)
            if first_time:
                await handler(conn, event)
            applied.append(first_time)
        return applied
