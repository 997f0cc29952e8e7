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
    # One statement, one round trip: the rows and the relay's wake-up call.
    await conn.execute(
        """WITH queued AS (
               INSERT INTO outbox (event_id, destination, site_id, event_type, payload, occurred_at)
               SELECT $1::uuid, destination, $3::text, $4::text, $5::jsonb, $6::timestamptz
               FROM unnest($2::text[]) AS destination
               RETURNING 1)
           SELECT pg_notify($7 || current_schema(), '') WHERE EXISTS (SELECT 1 FROM queued)""",
        uuid.uuid4(),
        list(destinations),
        site_id,
        type(payload).__name__,
        codec.dumps(payload),
        occurred_at,
        CHANNEL_PREFIX,
    )
