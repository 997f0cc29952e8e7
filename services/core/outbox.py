"""Writing events into the outbox, in the caller's transaction."""

import uuid
from datetime import datetime

import asyncpg

from services.core import codec
from services.core.events import Payload

# The relay LISTENs here; NOTIFY is delivered only when the transaction commits.
CHANNEL_PREFIX = "kanban_outbox_"


async def enqueue(
    conn: asyncpg.Connection,
    *,
    site_id: str,
    destinations: tuple[str, ...],
    payload: Payload,
    occurred_at: datetime,
) -> None:
    """Records one event for each destination; they commit with the change or not at all."""
    event_id = uuid.uuid4()
    await conn.executemany(
        """INSERT INTO outbox (event_id, destination, site_id, event_type, payload, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (event_id, d, site_id, type(payload).__name__, codec.dumps(payload), occurred_at)
            for d in destinations
        ],
    )
    await conn.execute("SELECT pg_notify($1 || current_schema(), '')", CHANNEL_PREFIX)
