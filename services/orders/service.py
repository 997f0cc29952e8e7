"""The orders service layer: open a transaction, load, ask the domain, write, commit."""

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog

from services.core import audit, outbox
from services.core.db import Database
from services.core.errors import AlreadyExists, InvalidArgument
from services.core.events import InstructionCompleted, OrderReleased
from services.core.feeds import Heartbeat, follow
from services.core.idempotency import run_once
from services.core.inbox import ReceivedEvent
from services.core.notify import Notifications
from services.core.paging import decode_token, encode_token
from services.core.validation import require_id
from services.orders import commands, storage
from services.orders import metrics as m
from services.orders.domain import Order, OrderEvent, OrderState, Product
from services.orders.storage import OrderUpdate

log = structlog.get_logger()

# Where orders' events go.
DESTINATIONS = ("stations",)


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next_page_token: str


def _now() -> datetime:
    return datetime.now(UTC)


# Products


async def define_product(db: Database, cmd: commands.DefineProduct) -> Product:
    async def action(conn: asyncpg.Connection) -> Product:
        product = Product(
            site_id=cmd.site_id,
            item_id=cmd.item_id,
            pacemaker_station_id=cmd.pacemaker_station_id,
            container_quantity=cmd.container_quantity,
            finished_goods_location_id=cmd.finished_goods_location_id,
        )
        stored = await storage.insert_product(conn, product)
        if stored != product:
            raise AlreadyExists("product", cmd.item_id)
        return stored

    return await run_once(db, cmd, Product, action)


# Orders


async def _save(
    conn: asyncpg.Connection, before: Order, order: Order, events: list[OrderEvent]
) -> None:
    """Writes what changed: the order, its update for watchers, its events for stations."""
    if order == before:
        return
    await storage.save_order(conn, order)
    await storage.append_update(conn, order)
    for event in events:
        await outbox.enqueue(
            conn,
            site_id=order.site_id,
            destinations=DESTINATIONS,
            payload=event,
            occurred_at=order.updated_at,
        )
        if isinstance(event, OrderReleased):
            m.INSTRUCTIONS_RELEASED.labels(order.site_id, order.item_id).inc(
                len(event.instructions)
            )
    if before.state is not OrderState.COMPLETED and order.state is OrderState.COMPLETED:
        m.LEAD_TIME.labels(order.site_id, order.item_id).observe(
            (order.updated_at - order.created_at).total_seconds()
        )


async def create_order(db: Database, cmd: commands.CreateOrder) -> Order:
    """An ERP order, OPEN; the same order sent again (an ERP re-send) returns the first."""

    async def action(conn: asyncpg.Connection) -> Order:
        product = await storage.get_product(conn, cmd.site_id, cmd.item_id)
        order = Order.create(product, cmd.erp_order_id, cmd.quantity, cmd.due, cmd.priority, _now())
        if not await storage.insert_order(conn, order):
            stored = await storage.get_order(conn, cmd.site_id, cmd.erp_order_id)
            if not stored.same_content(order):
                raise AlreadyExists("order", cmd.erp_order_id)
            return stored
        await storage.append_update(conn, order)
        return order

    return await run_once(db, cmd, Order, action)


async def release_order(db: Database, cmd: commands.ReleaseOrder) -> Order:
    """OPEN -> RELEASED: the pacemaker station gets one instruction per container."""

    async def action(conn: asyncpg.Connection) -> Order:
        order = await storage.lock_order(conn, cmd.site_id, cmd.erp_order_id)
        audit.note_before(order)
        product = await storage.get_product(conn, cmd.site_id, order.item_id)
        before = dataclasses.replace(order)
        events = order.release(product, _now())
        await _save(conn, before, order, events)
        return order

    return await run_once(db, cmd, Order, action)


async def change_order_quantity(db: Database, cmd: commands.ChangeOrderQuantity) -> Order:
    """The customer cut or raised the order: stations withdraws or gets new instructions."""

    async def action(conn: asyncpg.Connection) -> Order:
        order = await storage.lock_order(conn, cmd.site_id, cmd.erp_order_id)
        audit.note_before(order)
        product = await storage.get_product(conn, cmd.site_id, order.item_id)
        before = dataclasses.replace(order)
        events = order.change_quantity(cmd.quantity, product, _now())
        await _save(conn, before, order, events)
        return order

    return await run_once(db, cmd, Order, action)


async def cancel_order(db: Database, cmd: commands.CancelOrder) -> Order:
    async def action(conn: asyncpg.Connection) -> Order:
        order = await storage.lock_order(conn, cmd.site_id, cmd.erp_order_id)
        audit.note_before(order)
        before = dataclasses.replace(order)
        events = order.cancel(cmd.reason, _now())
        await _save(conn, before, order, events)
        return order

    return await run_once(db, cmd, Order, action)


# Queries


async def get_order(db: Database, site_id: str, erp_order_id: str) -> Order:
    require_id("site_id", site_id)
    commands.require_erp_order_id(erp_order_id)
    async with db.pool.acquire() as conn:
        return await storage.get_order(conn, site_id, erp_order_id)


def _page_key(token: str) -> tuple[datetime, str] | None:
    key = decode_token(token, 2)
    if key is None:
        return None
    try:
        due_time = datetime.fromisoformat(key[0])
    except ValueError:
        due_time = None
    if due_time is None or due_time.tzinfo is None:
        raise InvalidArgument("page_token", "is not a token this service returned")
    return due_time, key[1]


async def list_orders(db: Database, query: commands.ListOrders) -> OrderPage:
    after = _page_key(query.page_token)
    limit = query.limit
    async with db.pool.acquire() as conn:
        orders = await storage.list_orders(
            conn,
            query.site_id,
            query.state,
            query.item_id,
            query.due_after,
            query.due_before,
            after,
            limit + 1,
        )
    more = len(orders) > limit
    orders = orders[:limit]
    token = encode_token([orders[-1].due_time.isoformat(), orders[-1].erp_order_id]) if more else ""
    return OrderPage(orders, token)


def watch_orders(
    db: Database,
    notifications: Notifications,
    site_id: str,
    after_sequence: int,
    heartbeat_seconds: float,
) -> AsyncIterator[OrderUpdate | Heartbeat]:
    """The site's order updates after the cursor, then new ones as they commit."""
    require_id("site_id", site_id)
    return follow(
        db,
        notifications,
        site_id,
        after_sequence,
        heartbeat_seconds,
        read_after=lambda conn, cursor: storage.updates_after(conn, site_id, cursor),
        read_last=lambda conn: storage.last_update_sequence(conn, site_id),
        page_size=storage.FEED_PAGE,
    )


# Events received


async def apply_event(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    """Runs inside the inbox transaction that records the event as applied."""
    payload = event.payload
    if isinstance(payload, InstructionCompleted):
        await _instruction_completed(conn, event.site_id, payload)


async def _instruction_completed(
    conn: asyncpg.Connection, site_id: str, completed: InstructionCompleted
) -> None:
    """Finished goods of an order: they count, whatever state the order is in now."""
    facts = {
        "site_id": site_id,
        "erp_order_id": completed.erp_order_id,
        "instruction_id": completed.instruction_id,
        "quantity": completed.quantity,
    }
    if completed.quantity <= 0:
        log.warning("completion_ignored", reason="NO_QUANTITY", **facts)
        m.COMPLETIONS_IGNORED.labels(site_id, "NO_QUANTITY").inc()
        return
    order = await storage.find_order(conn, site_id, completed.erp_order_id, lock=True)
    if order is None:
        # Acknowledged all the same: refusing would block the relay behind it forever.
        log.warning("completion_ignored", reason="UNKNOWN_ORDER", **facts)
        m.COMPLETIONS_IGNORED.labels(site_id, "UNKNOWN_ORDER").inc()
        return
    now = _now()
    if not await storage.insert_completion(conn, site_id, completed, now):
        log.warning("completion_ignored", reason="INSTRUCTION_ALREADY_COMPLETED", **facts)
        m.COMPLETIONS_IGNORED.labels(site_id, "INSTRUCTION_ALREADY_COMPLETED").inc()
        return
    before = dataclasses.replace(order)
    order.record_made(completed.quantity, now)
    await _save(conn, before, order, [])
