"""SQL for locations, on-hand and the movement ledger."""

from datetime import datetime

import asyncpg

from services.stock.domain import Movement, Refusal, StockLevel


async def define_supermarket(
    conn: asyncpg.Connection, site_id: str, location_id: str, item_id: str, cap_units: int
) -> None:
    await conn.execute(
        """INSERT INTO locations (site_id, location_id, kind) VALUES ($1, $2, 'SUPERMARKET')
           ON CONFLICT DO NOTHING""",
        site_id,
        location_id,
    )
    await conn.execute(
        """INSERT INTO location_caps (site_id, location_id, item_id, cap_units)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (site_id, location_id, item_id) DO UPDATE SET cap_units = $4""",
        site_id,
        location_id,
        item_id,
        cap_units,
    )


async def lock_item_at_location(
    conn: asyncpg.Connection, site_id: str, location_id: str, item_id: str
) -> int | None:
    """Locks the item's cap row (serialising receipts into it); returns the cap, if any."""
    value = await conn.fetchval(
        """SELECT cap_units FROM location_caps
           WHERE site_id = $1 AND location_id = $2 AND item_id = $3 FOR UPDATE""",
        site_id,
        location_id,
        item_id,
    )
    return None if value is None else int(value)


async def on_hand_of_item(
    conn: asyncpg.Connection, site_id: str, location_id: str, item_id: str
) -> int:
    value = await conn.fetchval(
        """SELECT coalesce(sum(quantity), 0) FROM on_hand
           WHERE site_id = $1 AND location_id = $2 AND item_id = $3""",
        site_id,
        location_id,
        item_id,
    )
    return int(value)


async def lock_on_hand_of_lot(
    conn: asyncpg.Connection, site_id: str, location_id: str, item_id: str, lot_id: str
) -> int:
    value = await conn.fetchval(
        """SELECT quantity FROM on_hand
           WHERE site_id = $1 AND location_id = $2 AND item_id = $3 AND lot_id = $4
           FOR UPDATE""",
        site_id,
        location_id,
        item_id,
        lot_id,
    )
    return 0 if value is None else int(value)


async def record_movement(
    conn: asyncpg.Connection, movement: Movement, event_id: str, occurred_at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO movements (site_id, event_id, kind, location_id, item_id, lot_id,
                                  quantity, reference, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        movement.site_id,
        event_id,
        movement.kind.value,
        movement.location_id,
        movement.item_id,
        movement.lot_id,
        movement.signed_quantity,
        movement.reference,
        occurred_at,
    )
    await conn.execute(
        # The row as first inserted must pass the CHECK too, hence greatest(); an
        # issue always finds its row, since check_issue saw the quantity there.
        """INSERT INTO on_hand (site_id, location_id, item_id, lot_id, quantity)
           VALUES ($1, $2, $3, $4, greatest($5, 0))
           ON CONFLICT (site_id, location_id, item_id, lot_id)
           DO UPDATE SET quantity = on_hand.quantity + $5""",
        movement.site_id,
        movement.location_id,
        movement.item_id,
        movement.lot_id,
        movement.signed_quantity,
    )


async def record_refusal(
    conn: asyncpg.Connection,
    movement: Movement,
    refusal: Refusal,
    event_id: str,
    occurred_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO refused_movements (site_id, event_id, kind, location_id, item_id,
                                          lot_id, quantity, reason, detail, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        movement.site_id,
        event_id,
        movement.kind.value,
        movement.location_id,
        movement.item_id,
        movement.lot_id,
        movement.quantity,
        refusal.reason,
        refusal.detail,
        occurred_at,
    )


async def stock_levels(
    conn: asyncpg.Connection,
    site_id: str,
    location_id: str,
    item_id: str,
    lot_id: str,
    include_empty: bool,
    after: list[str] | None,
    limit: int,
) -> list[StockLevel]:
    rows = await conn.fetch(
        """SELECT site_id, location_id, item_id, lot_id, quantity AS on_hand FROM on_hand
           WHERE site_id = $1
             AND ($2 = '' OR location_id = $2)
             AND ($3 = '' OR item_id = $3)
             AND ($4 = '' OR lot_id = $4)
             AND ($5 OR quantity > 0)
             AND ($6::text[] IS NULL OR (location_id, item_id, lot_id) > ($6[1], $6[2], $6[3]))
           ORDER BY location_id, item_id, lot_id
           LIMIT $7""",
        site_id,
        location_id,
        item_id,
        lot_id,
        include_empty,
        after,
        limit,
    )
    return [StockLevel(**dict(r)) for r in rows]


async def on_hand_totals(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT site_id, location_id, item_id, sum(quantity)::bigint AS on_hand FROM on_hand
           GROUP BY site_id, location_id, item_id"""
    )
    return rows
