"""SQL for products, orders and their updates. Functions take the caller's connection."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.core.errors import NotFound
from services.core.events import InstructionCompleted
from services.orders.domain import Order, OrderState, Product

UPDATES_CHANNEL = "kanban_order_updates"
# How many order updates one read of WatchOrders's feed returns at most.
FEED_PAGE = 1000

_PRODUCT_COLUMNS = """site_id, item_id, pacemaker_station_id, container_quantity,
                      finished_goods_location_id"""
_ORDER_COLUMNS = """site_id, erp_order_id, item_id, quantity, made_quantity, due_time, priority,
                    state, created_at, updated_at, cancel_reason, released_quantity,
                    last_instruction_number"""


@dataclass(frozen=True)
class OrderUpdate:
    """One change of an order: the order right after it, and the site's sequence."""

    sequence: int
    order: Order


@dataclass(frozen=True)
class Totals:
    """One site's and item's orders, added up for the gauges."""

    site_id: str
    item_id: str
    orders_by_state: dict[OrderState, int]
    open_units: int
    made_units: int


def _product(row: asyncpg.Record) -> Product:
    return Product(**dict(row))


def _order(row: asyncpg.Record) -> Order:
    fields = {k: v for k, v in dict(row).items() if k != "sequence"}
    return Order(**{**fields, "state": OrderState(row["state"])})


# Products


async def insert_product(conn: asyncpg.Connection, product: Product) -> Product:
    """Inserts the product unless its item has one; returns the one stored."""
    await conn.execute(
        f"""INSERT INTO products ({_PRODUCT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT DO NOTHING""",
        product.site_id,
        product.item_id,
        product.pacemaker_station_id,
        product.container_quantity,
        product.finished_goods_location_id,
    )
    return await get_product(conn, product.site_id, product.item_id)


async def get_product(conn: asyncpg.Connection, site_id: str, item_id: str) -> Product:
    row = await conn.fetchrow(
        f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE site_id = $1 AND item_id = $2",
        site_id,
        item_id,
    )
    if row is None:
        raise NotFound("product", item_id)
    return _product(row)


# Orders


async def insert_order(conn: asyncpg.Connection, order: Order) -> bool:
    """Inserts the order; False if one with its ERP id already exists."""
    inserted = await conn.fetchval(
        f"""INSERT INTO orders ({_ORDER_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT DO NOTHING RETURNING true""",
        *_order_values(order),
    )
    return bool(inserted)


def _order_values(order: Order) -> tuple[object, ...]:
    return (
        order.site_id,
        order.erp_order_id,
        order.item_id,
        order.quantity,
        order.made_quantity,
        order.due_time,
        order.priority,
        order.state.value,
        order.created_at,
        order.updated_at,
        order.cancel_reason,
        order.released_quantity,
        order.last_instruction_number,
    )


async def get_order(conn: asyncpg.Connection, site_id: str, erp_order_id: str) -> Order:
    order = await find_order(conn, site_id, erp_order_id)
    if order is None:
        raise NotFound("order", erp_order_id)
    return order


async def find_order(
    conn: asyncpg.Connection, site_id: str, erp_order_id: str, *, lock: bool = False
) -> Order | None:
    """The order, or None; with lock, locked until the transaction ends."""
    row = await conn.fetchrow(
        f"""SELECT {_ORDER_COLUMNS} FROM orders WHERE site_id = $1 AND erp_order_id = $2
            {"FOR UPDATE" if lock else ""}""",
        site_id,
        erp_order_id,
    )
    return _order(row) if row else None


async def lock_order(conn: asyncpg.Connection, site_id: str, erp_order_id: str) -> Order:
    """The order, locked until the transaction ends: its transitions serialise on this."""
    order = await find_order(conn, site_id, erp_order_id, lock=True)
    if order is None:
        raise NotFound("order", erp_order_id)
    return order


async def save_order(conn: asyncpg.Connection, order: Order) -> None:
    await conn.execute(
        """UPDATE orders SET quantity = $3, made_quantity = $4, state = $5, updated_at = $6,
                             cancel_reason = $7, released_quantity = $8,
                             last_instruction_number = $9
           WHERE site_id = $1 AND erp_order_id = $2""",
        order.site_id,
        order.erp_order_id,
        order.quantity,
        order.made_quantity,
        order.state.value,
        order.updated_at,
        order.cancel_reason,
        order.released_quantity,
        order.last_instruction_number,
    )


async def list_orders(
    conn: asyncpg.Connection,
    site_id: str,
    state: OrderState | None,
    item_id: str,
    due_after: datetime | None,
    due_before: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Order]:
    """Orders by (due_time, erp_order_id), starting after the key `after`."""
    rows = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS} FROM orders
            WHERE site_id = $1
              AND ($2::text IS NULL OR state = $2)
              AND ($3::text = '' OR item_id = $3)
              AND ($4::timestamptz IS NULL OR due_time >= $4)
              AND ($5::timestamptz IS NULL OR due_time < $5)
              AND ($6::timestamptz IS NULL OR (due_time, erp_order_id) > ($6, $7::text))
            ORDER BY due_time, erp_order_id LIMIT $8""",
        site_id,
        state.value if state else None,
        item_id,
        due_after,
        due_before,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_order(r) for r in rows]


# Updates


async def append_update(conn: asyncpg.Connection, order: Order) -> int:
    """Records the order as it is now under the site's next sequence; NOTIFY at commit.

    The site's counter row stays locked until commit, so a higher sequence never
    becomes visible before a lower one.
    """
    sequence = await conn.fetchval(
        """INSERT INTO order_sites AS s (site_id, last_update_sequence) VALUES ($1, 1)
           ON CONFLICT (site_id) DO UPDATE SET last_update_sequence = s.last_update_sequence + 1
           RETURNING last_update_sequence""",
        order.site_id,
    )
    await conn.execute(
        f"""INSERT INTO order_updates (sequence, {_ORDER_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        sequence,
        *_order_values(order),
    )
    # Delivered at commit, to every replica listening.
    await conn.execute("SELECT pg_notify($1, $2)", UPDATES_CHANNEL, order.site_id)
    return int(sequence)


async def updates_after(
    conn: asyncpg.Connection, site_id: str, after_sequence: int, limit: int = FEED_PAGE
) -> list[OrderUpdate]:
    rows = await conn.fetch(
        f"""SELECT sequence, {_ORDER_COLUMNS} FROM order_updates
            WHERE site_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3""",
        site_id,
        after_sequence,
        limit,
    )
    return [OrderUpdate(r["sequence"], _order(r)) for r in rows]


async def last_update_sequence(conn: asyncpg.Connection, site_id: str) -> int:
    value = await conn.fetchval(
        "SELECT last_update_sequence FROM order_sites WHERE site_id = $1", site_id
    )
    return int(value or 0)


# Completions


async def insert_completion(
    conn: asyncpg.Connection, site_id: str, completed: InstructionCompleted, now: datetime
) -> bool:
    """Records the instruction as completed; False if it was already."""
    inserted = await conn.fetchval(
        """INSERT INTO instruction_completions (site_id, instruction_id, erp_order_id, item_id,
                                                location_id, lot_id, quantity, station_id,
                                                completed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING true""",
        site_id,
        completed.instruction_id,
        completed.erp_order_id,
        completed.item_id,
        completed.location_id,
        completed.lot_id,
        completed.quantity,
        completed.station_id,
        now,
    )
    return bool(inserted)


# Gauges


async def totals(conn: asyncpg.Connection) -> list[Totals]:
    """Every site's and item's orders by state, open units and made units."""
    rows = await conn.fetch(
        """SELECT site_id, item_id,
                  count(*) FILTER (WHERE state = 'OPEN') AS open_orders,
                  count(*) FILTER (WHERE state = 'RELEASED') AS released_orders,
                  count(*) FILTER (WHERE state = 'COMPLETED') AS completed_orders,
                  count(*) FILTER (WHERE state = 'CANCELLED') AS cancelled_orders,
                  coalesce(sum(greatest(quantity - made_quantity, 0))
                           FILTER (WHERE state IN ('OPEN', 'RELEASED')), 0)::bigint
                      AS open_units,
                  coalesce(sum(made_quantity), 0)::bigint AS made_units
           FROM orders GROUP BY site_id, item_id ORDER BY site_id, item_id"""
    )
    return [
        Totals(
            site_id=r["site_id"],
            item_id=r["item_id"],
            orders_by_state={state: r[f"{state.value.lower()}_orders"] for state in OrderState},
            open_units=r["open_units"],
            made_units=r["made_units"],
        )
        for r in rows
    ]
