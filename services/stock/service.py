"""The stock service layer: events from stations move stock; queries read it."""

from dataclasses import dataclass

import asyncpg
import structlog

from services.core.db import Database
from services.core.events import LoopDefined
from services.core.inbox import ReceivedEvent
from services.core.paging import decode_token, encode_token
from services.core.validation import optional_id, page_size, require_id
from services.stock import metrics as m
from services.stock import storage
from services.stock.domain import (
    Movement,
    MovementKind,
    StockLevel,
    check_issue,
    check_receipt,
    movements_caused_by,
)

log = structlog.get_logger()


@dataclass(frozen=True)
class StockPage:
    levels: list[StockLevel]
    next_page_token: str


async def apply_event(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    """Runs inside the inbox transaction that records the event as applied."""
    if isinstance(event.payload, LoopDefined):
        loop = event.payload
        await storage.define_supermarket(
            conn, event.site_id, loop.location_id, loop.item_id, loop.cap_units
        )
    for movement in movements_caused_by(event.site_id, event.payload):
        await _move(conn, event, movement)


async def _move(conn: asyncpg.Connection, event: ReceivedEvent, movement: Movement) -> None:
    site_id, location_id, item_id = movement.site_id, movement.location_id, movement.item_id
    # Locking the item's cap row serialises every movement of the item at the location.
    cap = await storage.lock_item_at_location(conn, site_id, location_id, item_id)
    if movement.kind is MovementKind.RECEIPT:
        held = await storage.on_hand_of_item(conn, site_id, location_id, item_id)
        refusal = check_receipt(held, cap, movement.quantity)
    else:
        held = await storage.lock_on_hand_of_lot(
            conn, site_id, location_id, item_id, movement.lot_id
        )
        refusal = check_issue(held, movement.quantity)
    if refusal is None:
        await storage.record_movement(conn, movement, event.event_id, event.occurred_at)
        m.MOVEMENTS.labels(site_id, movement.kind.value).inc()
        return
    # Acknowledged, not retried: the refusal itself is the record.
    await storage.record_refusal(conn, movement, refusal, event.event_id, event.occurred_at)
    m.MOVEMENTS_REFUSED.labels(site_id, location_id, item_id, refusal.reason).inc()
    log.warning(
        "movement_refused",
        reason=refusal.reason,
        detail=refusal.detail,
        location_id=location_id,
        item_id=item_id,
        lot_id=movement.lot_id,
        event_id=event.event_id,
    )


async def get_stock_levels(
    db: Database,
    site_id: str,
    location_id: str,
    item_id: str,
    lot_id: str,
    include_empty: bool,
    size: int,
    token: str,
) -> StockPage:
    require_id("site_id", site_id)
    optional_id("location_id", location_id)
    optional_id("item_id", item_id)
    optional_id("lot_id", lot_id)
    limit = page_size(size)
    after = decode_token(token, 3)
    async with db.pool.acquire() as conn:
        levels = await storage.stock_levels(
            conn, site_id, location_id, item_id, lot_id, include_empty, after, limit + 1
        )
    more = len(levels) > limit
    levels = levels[:limit]
    last = levels[-1] if levels else None
    return StockPage(
        levels,
        encode_token([last.location_id, last.item_id, last.lot_id]) if more and last else "",
    )
