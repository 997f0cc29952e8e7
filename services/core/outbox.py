"""Writing events into the outbox, in the caller's transaction; deleting them once
delivered and kept for the retention period."""

import uuid
from datetime import datetime, timedelta

import asyncpg
import structlog

from services.core import codec, metrics
from services.core.db import Database
from services.core.events import Payload

log = structlog.get_logger()

# Rows deleted per transaction: each batch commits on its own, so pruning a backlog
# never holds locks or a snapshot for long.
PRUNE_BATCH = 5000

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


async def prune(db: Database, kept_for: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Deletes the events delivered more than `kept_for` ago; returns how many. Events
    not yet delivered stay, however old: the relay still owes them."""
    pruned = 0
    while True:
        deleted: int = await db.pool.fetchval(
            """WITH gone AS (
                   DELETE FROM outbox WHERE id IN (
                       SELECT id FROM outbox WHERE delivered_at < now() - $1::interval
                       ORDER BY delivered_at LIMIT $2)
                   RETURNING 1)
               SELECT count(*) FROM gone""",
            kept_for,
            batch,
        )
        pruned += deleted
        if deleted < batch:
            break
    if pruned:
        metrics.OUTBOX_PRUNED.inc(pruned)
        log.info("outbox_pruned", events=pruned, kept_days=round(kept_for / timedelta(days=1), 2))
    return pruned
