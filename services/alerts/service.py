"""The alerts service layer.

Stock (and, later, the other services) send it the facts alerts are made of:
lots quarantined, count variances, thresholds crossed. Until rules evaluate
them (the alerts issue), each is logged; the inbox has recorded it, so nothing
sent here is lost or sent again.
"""

import asyncpg
import structlog

from services.core import codec
from services.core.inbox import ReceivedEvent

log = structlog.get_logger()


async def apply_event(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    log.info(
        "event_received",
        event_type=type(event.payload).__name__,
        site_id=event.site_id,
        source=event.source,
        payload=codec.to_plain(event.payload),
    )
