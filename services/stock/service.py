"""The stock service layer: each function opens a transaction, loads, asks the
domain, writes the ledger and the events it causes, and commits.

Every movement of a lot first locks the lot's row, so movements of one lot and
changes of its quality status happen one after another; on-hand rows, caps and
thresholds are locked after it, always in that order.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.core import audit, outbox
from services.core.db import Database
from services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, require_same
from services.core.events import (
    CardRetired,
    CountClosed,
    CountVarianceFlagged,
    ItemDefined,
    LoopDefined,
    LoopResized,
    LotQuarantined,
    LotReleased,
    LotWrittenOff,
    StockThresholdCrossed,
)
from services.core.idempotency import run_once
from services.core.inbox import ReceivedEvent
from services.core.paging import Page, decode_position, decode_token, encode_token, page_of
from services.core.validation import optional_id, page_size, require_id
from services.stock import commands, storage
from services.stock import metrics as m
from services.stock.domain import (
    INSUFFICIENT_STOCK,
    Count,
    CountLine,
    CountState,
    Disposition,
    Entry,
    Item,
    KanbanMove,
    Location,
    LocationKind,
    Lot,
    LotStatus,
    MovementKind,
    Outcome,
    ReceiptSource,
    Threshold,
    ThresholdState,
    Turnover,
    Warehouse,
    check_cap,
    check_take,
    kanban_moves,
    require_lot_quarantined,
    require_manual_movement,
    threshold_state,
    turnover,
)

log = structlog.get_logger()

STATIONS_AND_ALERTS = ("stations", "alerts")
ALERTS = ("alerts",)
COUNT_ALREADY_OPEN = "COUNT_ALREADY_OPEN"
DEFAULT_UNIT = "pcs"
DEFAULT_TURNOVER_DAYS = 30
MAX_TURNOVER_DAYS = 3650


@dataclass(frozen=True)
class Posted:
    entries: list[Entry]


@dataclass(frozen=True)
class LotAndDisposition:
    lot: Lot
    disposition: Disposition
    entries: list[Entry]
    # The lot's on-hand right after the change: part of the first answer, which a
    # retry gets back, whatever moved since.
    on_hand: int


@dataclass(frozen=True)
class CountAndEntries:
    count: Count
    entries: list[Entry]


@dataclass(frozen=True)
class StockLevel:
    site_id: str
    location_id: str
    item_id: str
    lot_id: str
    on_hand: int
    lot_status: LotStatus


@dataclass(frozen=True)
class LotOnHand:
    lot: Lot
    on_hand: int


@dataclass(frozen=True)
class TraceLink:
    lot_id: str
    item_id: str
    made_lot_id: str
    made_item_id: str
    station_id: str
    depth: int


@dataclass(frozen=True)
class TurnoverPage:
    items: list[Turnover]
    window_start: datetime
    window_end: datetime
    next_page_token: str


def _now() -> datetime:
    return datetime.now(UTC)


# Master data


async def create_warehouse(db: Database, cmd: commands.CreateWarehouse) -> Warehouse:
    async def action(conn: asyncpg.Connection) -> Warehouse:
        wanted = Warehouse(cmd.site_id, cmd.warehouse_id, cmd.name)
        stored = await storage.insert_warehouse(conn, wanted)
        require_same("warehouse", cmd.warehouse_id, wanted, stored)
        return stored

    return await run_once(db, cmd, Warehouse, action)


async def create_location(db: Database, cmd: commands.CreateLocation) -> Location:
    async def action(conn: asyncpg.Connection) -> Location:
        if cmd.warehouse_id:
            await storage.require_warehouse(conn, cmd.site_id, cmd.warehouse_id)
        wanted = Location(cmd.site_id, cmd.location_id, cmd.warehouse_id, cmd.kind)
        stored = await storage.insert_location(conn, wanted)
        require_same("location", cmd.location_id, wanted, stored)
        return stored

    return await run_once(db, cmd, Location, action)


async def create_item(db: Database, cmd: commands.CreateItem) -> Item:
    async def action(conn: asyncpg.Connection) -> Item:
        wanted = Item(cmd.site_id, cmd.item_id, cmd.unit_of_measure)
        stored = await storage.insert_item(conn, wanted)
        require_same("item", cmd.item_id, wanted, stored)
        return stored

    return await run_once(db, cmd, Item, action)


# Movements


async def _post(conn: asyncpg.Connection, entry: Entry, event_id: str | None = None) -> Entry:
    posted = await storage.insert_entry(conn, entry, event_id)
    m.MOVEMENTS.labels(entry.site_id, entry.kind.value).inc()
    return posted


async def _settle(
    conn: asyncpg.Connection, lot: Lot, location_ids: list[str], now: datetime
) -> Lot:
    """After the lot moved: its status follows what is left, and thresholds are checked."""
    settled = lot.after_movement(await storage.lot_on_hand(conn, lot.site_id, lot.lot_id))
    if settled != lot:
        await storage.save_lot(conn, settled)
    await _check_thresholds(conn, lot.site_id, lot.item_id, location_ids, now)
    return settled


async def _check_thresholds(
    conn: asyncpg.Connection, site_id: str, item_id: str, location_ids: list[str], now: datetime
) -> None:
    """An event for each threshold whose state changed: once per crossing, not per movement."""
    for threshold in await storage.lock_thresholds(conn, site_id, item_id, location_ids):
        on_hand = await storage.usable_on_hand(conn, site_id, item_id, threshold.location_id)
        state = threshold_state(on_hand, threshold.safety_stock, threshold.overstock)
        if state is not threshold.state:
            await storage.upsert_threshold(conn, replace(threshold, state=state))
            await _announce_threshold(conn, replace(threshold, state=state), on_hand, now)


async def _announce_threshold(
    conn: asyncpg.Connection, threshold: Threshold, on_hand: int, now: datetime
) -> None:
    m.THRESHOLD_CROSSINGS.labels(threshold.site_id, threshold.state.value).inc()
    await outbox.enqueue(
        conn,
        site_id=threshold.site_id,
        destinations=ALERTS,
        payload=StockThresholdCrossed(
            item_id=threshold.item_id,
            location_id=threshold.location_id,
            state=threshold.state.value,
            on_hand=on_hand,
            safety_stock=threshold.safety_stock,
            overstock=threshold.overstock,
        ),
        occurred_at=now,
    )


async def _lot_for_receipt(
    conn: asyncpg.Connection,
    site_id: str,
    lot_id: str,
    item_id: str,
    source: ReceiptSource,
    origin_id: str,
    now: datetime,
) -> Lot:
    """The lot to receive into, created on its first receipt."""
    lot = await storage.find_lot(conn, site_id, lot_id)
    if lot is None:
        new = Lot(site_id, lot_id, item_id, LotStatus.AVAILABLE, source, origin_id, "", "", now)
        created = await storage.insert_lot(conn, new)
        lot = await storage.lock_lot(conn, site_id, lot_id)
        if created:
            return lot
        # Another receipt of the same new lot (a delivery split over two docks)
        # created it first: receive into that one, as into any existing lot.
    lot.require_item(item_id)
    lot.require_can_receive()
    return lot


async def _take_out(conn: asyncpg.Connection, lot: Lot, location_id: str, quantity: int) -> None:
    held = await storage.lock_on_hand(conn, lot.site_id, location_id, lot.item_id, lot.lot_id)
    check_take(lot.lot_id, location_id, held, quantity)


async def _require_room(
    conn: asyncpg.Connection, site_id: str, location_id: str, item_id: str, quantity: int
) -> None:
    cap = await storage.lock_cap(conn, site_id, location_id, item_id)
    if cap is not None:
        held = await storage.on_hand_of_item(conn, site_id, location_id, item_id)
        check_cap(location_id, held, cap, quantity)


def _entry(
    cmd: commands.ReceiveStock
    | commands.IssueStock
    | commands.ReturnToSupplier
    | commands.ScrapStock
    | commands.AdjustStock,
    kind: MovementKind,
    quantity: int,
    reference: str,
    now: datetime,
) -> Entry:
    return Entry(
        site_id=cmd.site_id,
        kind=kind,
        location_id=cmd.location_id,
        item_id=cmd.item_id,
        lot_id=cmd.lot_id,
        quantity=quantity,
        actor=cmd.actor,
        reason=cmd.reason,
        reference=reference,
        request_id=cmd.request_id,
        occurred_at=now,
    )


async def receive_stock(db: Database, cmd: commands.ReceiveStock) -> Posted:
    async def action(conn: asyncpg.Connection) -> Posted:
        now = _now()
        require_manual_movement(await storage.get_location(conn, cmd.site_id, cmd.location_id))
        await storage.get_item(conn, cmd.site_id, cmd.item_id)
        lot = await _lot_for_receipt(
            conn, cmd.site_id, cmd.lot_id, cmd.item_id, cmd.source, cmd.origin_id, now
        )
        await _require_room(conn, cmd.site_id, cmd.location_id, cmd.item_id, cmd.quantity)
        entry = await _post(
            conn, _entry(cmd, MovementKind.RECEIPT, cmd.quantity, cmd.origin_id, now)
        )
        if cmd.source is ReceiptSource.PRODUCTION:
            await storage.record_production(
                conn, cmd.site_id, cmd.lot_id, cmd.item_id, cmd.origin_id, now, now
            )
        await _settle(conn, lot, [cmd.location_id], now)
        return Posted([entry])

    return await run_once(db, cmd, Posted, action)


async def _take(
    cmd: commands.IssueStock | commands.ReturnToSupplier | commands.ScrapStock,
    conn: asyncpg.Connection,
    kind: MovementKind,
    reference: str,
    now: datetime,
) -> tuple[Lot, Entry]:
    """Takes the command's quantity of its lot out of its location."""
    require_manual_movement(await storage.get_location(conn, cmd.site_id, cmd.location_id))
    lot = await storage.lock_lot(conn, cmd.site_id, cmd.lot_id)
    audit.note_before(lot)
    lot.require_item(cmd.item_id)
    lot.require_can_leave(kind)
    await _take_out(conn, lot, cmd.location_id, cmd.quantity)
    entry = await _post(conn, _entry(cmd, kind, -cmd.quantity, reference, now))
    return lot, entry


async def issue_stock(db: Database, cmd: commands.IssueStock) -> Posted:
    async def action(conn: asyncpg.Connection) -> Posted:
        now = _now()
        where = "station" if cmd.to_station else "order"
        lot, entry = await _take(
            cmd, conn, MovementKind.ISSUE, f"{where} {cmd.destination_id}", now
        )
        if cmd.to_station:
            await storage.record_consumption(
                conn, cmd.site_id, cmd.destination_id, cmd.item_id, cmd.lot_id, cmd.quantity, now
            )
        await _settle(conn, lot, [cmd.location_id], now)
        return Posted([entry])

    return await run_once(db, cmd, Posted, action)


async def return_to_supplier(db: Database, cmd: commands.ReturnToSupplier) -> Posted:
    async def action(conn: asyncpg.Connection) -> Posted:
        now = _now()
        lot, entry = await _take(
            cmd, conn, MovementKind.RETURN_TO_SUPPLIER, f"supplier {cmd.supplier_id}", now
        )
        await _settle(conn, lot, [cmd.location_id], now)
        return Posted([entry])

    return await run_once(db, cmd, Posted, action)


async def scrap_stock(db: Database, cmd: commands.ScrapStock) -> Posted:
    async def action(conn: asyncpg.Connection) -> Posted:
        now = _now()
        lot, entry = await _take(cmd, conn, MovementKind.SCRAP, "scrap", now)
        await _settle(conn, lot, [cmd.location_id], now)
        return Posted([entry])

    return await run_once(db, cmd, Posted, action)


async def transfer_stock(db: Database, cmd: commands.TransferStock) -> Posted:
    async def action(conn: asyncpg.Connection) -> Posted:
        now = _now()
        require_manual_movement(await storage.get_location(conn, cmd.site_id, cmd.from_location_id))
        to = await storage.get_location(conn, cmd.site_id, cmd.to_location_id)
        require_manual_movement(to)
        lot = await storage.lock_lot(conn, cmd.site_id, cmd.lot_id)
        audit.note_before(lot)
        lot.require_item(cmd.item_id)
        lot.require_can_leave(MovementKind.TRANSFER, to)
        await _require_room(conn, cmd.site_id, cmd.to_location_id, cmd.item_id, cmd.quantity)
        await _take_out(conn, lot, cmd.from_location_id, cmd.quantity)

        def leg(location_id: str, quantity: int, reference: str) -> Entry:
            return Entry(
                cmd.site_id,
                MovementKind.TRANSFER,
                location_id,
                cmd.item_id,
                cmd.lot_id,
                quantity,
                cmd.actor,
                cmd.reason,
                reference,
                cmd.request_id,
                now,
            )

        out = await _post(conn, leg(cmd.from_location_id, -cmd.quantity, f"to {to.location_id}"))
        into = await _post(
            conn, leg(cmd.to_location_id, cmd.quantity, f"from {cmd.from_location_id}")
        )
        await _settle(conn, lot, [cmd.from_location_id, cmd.to_location_id], now)
        return Posted([out, into])

    return await run_once(db, cmd, Posted, action)


async def _adjust(
    conn: asyncpg.Connection,
    site_id: str,
    location_id: str,
    item_id: str,
    lot_id: str,
    delta: int,
    actor: str,
    reason: str,
    reference: str,
    request_id: str,
    now: datetime,
) -> tuple[Lot, Entry]:
    """Books found (+) or missing (-) units; a lot found that the books never knew is created."""
    if delta > 0:
        lot = await _lot_for_receipt(
            conn, site_id, lot_id, item_id, ReceiptSource.SUPPLIER, "", now
        )
    else:
        lot = await storage.lock_lot(conn, site_id, lot_id)
        lot.require_item(item_id)
        await _take_out(conn, lot, location_id, -delta)
    entry = Entry(
        site_id,
        MovementKind.ADJUSTMENT,
        location_id,
        item_id,
        lot_id,
        delta,
        actor,
        reason,
        reference,
        request_id,
        now,
    )
    return lot, await _post(conn, entry)


async def adjust_stock(db: Database, cmd: commands.AdjustStock) -> Posted:
    async def action(conn: asyncpg.Connection) -> Posted:
        now = _now()
        await storage.get_location(conn, cmd.site_id, cmd.location_id)
        await storage.get_item(conn, cmd.site_id, cmd.item_id)
        lot, entry = await _adjust(
            conn,
            cmd.site_id,
            cmd.location_id,
            cmd.item_id,
            cmd.lot_id,
            cmd.quantity_delta,
            cmd.actor,
            cmd.reason,
            "adjustment",
            cmd.request_id,
            now,
        )
        await _settle(conn, lot, [cmd.location_id], now)
        return Posted([entry])

    return await run_once(db, cmd, Posted, action)


# Kanban moves, from the stations service's events


async def apply_event(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    """Runs inside the inbox transaction that records the event as applied."""
    match event.payload:
        case ItemDefined() as item:
            await storage.upsert_item(conn, Item(event.site_id, item.item_id, item.unit_of_measure))
        case LoopDefined() as loop:
            await storage.insert_item(conn, Item(event.site_id, loop.item_id, DEFAULT_UNIT))
            await storage.define_supermarket(
                conn, event.site_id, loop.location_id, loop.item_id, loop.cap_units
            )
        case LoopResized() | CardRetired() as change:
            # The supermarket's cap follows the cards in the loop.
            await storage.define_supermarket(
                conn, event.site_id, change.location_id, change.item_id, change.cap_units
            )
    for move in kanban_moves(event.site_id, event.payload, event.occurred_at):
        await _apply_kanban_move(conn, event, move)


async def _apply_kanban_move(
    conn: asyncpg.Connection, event: ReceivedEvent, move: KanbanMove
) -> None:
    entry = move.entry
    site_id, item_id, lot_id = entry.site_id, entry.item_id, entry.lot_id
    # Finished-goods locations are named by orders' products; stock learns them here.
    await storage.learn_location_and_item(
        conn,
        Location(site_id, entry.location_id, "", LocationKind.LINE_SIDE),
        Item(site_id, item_id, DEFAULT_UNIT),
    )
    try:
        if entry.kind is MovementKind.RECEIPT:
            lot = await _lot_for_receipt(
                conn,
                site_id,
                lot_id,
                item_id,
                ReceiptSource.PRODUCTION,
                move.station_id,
                entry.occurred_at,
            )
            await _require_room(conn, site_id, entry.location_id, item_id, entry.quantity)
        else:
            # No hold check: the station consumed it before the hold reached it
            # (stations refuses scans of held lots from then on).
            lot = await _lot_for_issue(conn, site_id, lot_id, entry.location_id, -entry.quantity)
            lot.require_item(item_id)
            await _take_out(conn, lot, entry.location_id, -entry.quantity)
    except FailedPrecondition as refusal:
        # Acknowledged, not retried: the refusal itself is the record.
        await storage.record_refusal(conn, entry, refusal.reason, refusal.message, event.event_id)
        m.MOVEMENTS_REFUSED.labels(site_id, entry.location_id, item_id, refusal.reason).inc()
        log.warning(
            "movement_refused",
            reason=refusal.reason,
            detail=refusal.message,
            location_id=entry.location_id,
            item_id=item_id,
            lot_id=lot_id,
            event_id=event.event_id,
        )
        return
    await _post(conn, entry, event.event_id)
    if entry.kind is MovementKind.ISSUE:
        if lot.status is LotStatus.QUARANTINED:
            await storage.add_consumed_before_hold(
                conn, site_id, lot.disposition_id, -entry.quantity
            )
        if move.station_id:
            await storage.record_consumption(
                conn, site_id, move.station_id, item_id, lot_id, -entry.quantity, entry.occurred_at
            )
    elif move.station_id:
        await storage.record_production(
            conn,
            site_id,
            lot_id,
            item_id,
            move.station_id,
            move.started_at or entry.occurred_at,
            entry.occurred_at,
        )
    await _settle(conn, lot, [entry.location_id], entry.occurred_at)


async def _lot_for_issue(
    conn: asyncpg.Connection, site_id: str, lot_id: str, location_id: str, quantity: int
) -> Lot:
    """The lot a kanban scan took from; a lot stock never received has nothing to take."""
    lot = await storage.find_lot(conn, site_id, lot_id)
    if lot is None:
        raise FailedPrecondition(
            INSUFFICIENT_STOCK,
            f"{quantity} of lot {lot_id} taken at {location_id}, a lot stock never received",
            {"available": "0", "lot_id": lot_id, "location_id": location_id},
        )
    return lot


# Quality


async def _lot_locations(conn: asyncpg.Connection, lot: Lot) -> list[str]:
    return [location for location, _ in await storage.lot_locations(conn, lot.site_id, lot.lot_id)]


async def quarantine_lot(db: Database, cmd: commands.QuarantineLot) -> LotAndDisposition:
    async def action(conn: asyncpg.Connection) -> LotAndDisposition:
        now = _now()
        lot = await storage.lock_lot(conn, cmd.site_id, cmd.lot_id)
        audit.note_before(lot)
        number = await storage.count_dispositions_of_lot(conn, cmd.site_id, cmd.lot_id) + 1
        disposition_id = f"{cmd.lot_id[:56]}-Q{number}"
        held = lot.quarantine(cmd.reason, disposition_id)
        disposition = Disposition(
            site_id=cmd.site_id,
            disposition_id=disposition_id,
            lot_id=lot.lot_id,
            item_id=lot.item_id,
            reason=cmd.reason,
            outcome=None,
            quarantined_quantity=await storage.lot_on_hand(conn, cmd.site_id, cmd.lot_id),
            consumed_before_hold=0,
            opened_by=cmd.actor,
            closed_by="",
            closing_comment="",
            opened_at=now,
            closed_at=None,
        )
        await storage.save_lot(conn, held)
        await storage.insert_disposition(conn, disposition)
        await outbox.enqueue(
            conn,
            site_id=cmd.site_id,
            destinations=STATIONS_AND_ALERTS,
            payload=LotQuarantined(lot.lot_id, lot.item_id, cmd.reason, disposition_id),
            occurred_at=now,
        )
        m.LOTS_QUARANTINED.labels(cmd.site_id).inc()
        await _check_thresholds(
            conn, cmd.site_id, lot.item_id, await _lot_locations(conn, lot), now
        )
        return LotAndDisposition(held, disposition, [], disposition.quarantined_quantity)

    return await run_once(db, cmd, LotAndDisposition, action)


async def release_lot(db: Database, cmd: commands.ReleaseLot) -> LotAndDisposition:
    async def action(conn: asyncpg.Connection) -> LotAndDisposition:
        now = _now()
        lot = await storage.lock_lot(conn, cmd.site_id, cmd.lot_id)
        audit.note_before(lot)
        require_lot_quarantined(lot)
        disposition = await storage.get_disposition(
            conn, cmd.site_id, lot.disposition_id, lock=True
        )
        closed = disposition.close(Outcome.RELEASE, cmd.actor, cmd.comment, now)
        return await _settle_disposition(conn, lot, closed, [], now)

    return await run_once(db, cmd, LotAndDisposition, action)


async def close_disposition(db: Database, cmd: commands.CloseDisposition) -> LotAndDisposition:
    async def action(conn: asyncpg.Connection) -> LotAndDisposition:
        now = _now()
        found = await storage.get_disposition(conn, cmd.site_id, cmd.disposition_id)
        lot = await storage.lock_lot(conn, cmd.site_id, found.lot_id)
        audit.note_before(found)
        disposition = await storage.get_disposition(
            conn, cmd.site_id, cmd.disposition_id, lock=True
        )
        closed = disposition.close(cmd.outcome, cmd.actor, cmd.comment, now)
        where = await storage.lot_locations(conn, cmd.site_id, lot.lot_id)
        kind, to_remove = {
            Outcome.SCRAP: (MovementKind.SCRAP, sum(q for _, q in where)),
            Outcome.RETURN_TO_SUPPLIER: (
                MovementKind.RETURN_TO_SUPPLIER,
                sum(q for _, q in where),
            ),
            Outcome.REWORK: (MovementKind.SCRAP, cmd.scrapped_quantity),
        }[cmd.outcome]
        check_take(lot.lot_id, "all its locations", sum(q for _, q in where), to_remove)
        entries = []
        for location_id, quantity in where:
            if to_remove == 0:
                break
            taken = min(quantity, to_remove)
            to_remove -= taken
            reference = (
                f"supplier {lot.origin_id}" if kind is MovementKind.RETURN_TO_SUPPLIER else "scrap"
            )
            entry = Entry(
                cmd.site_id,
                kind,
                location_id,
                lot.item_id,
                lot.lot_id,
                -taken,
                cmd.actor,
                f"disposition {closed.disposition_id}: {cmd.comment}".strip(": "),
                reference,
                cmd.request_id,
                now,
            )
            entries.append(await _post(conn, entry))
        return await _settle_disposition(conn, lot, closed, entries, now)

    return await run_once(db, cmd, LotAndDisposition, action)


async def _settle_disposition(
    conn: asyncpg.Connection,
    lot: Lot,
    closed: Disposition,
    entries: list[Entry],
    now: datetime,
) -> LotAndDisposition:
    assert closed.outcome is not None
    await storage.close_disposition(conn, closed)
    locations = await _lot_locations(conn, lot) + [e.location_id for e in entries]
    on_hand = await storage.lot_on_hand(conn, lot.site_id, lot.lot_id)
    settled = lot.settle(closed.outcome, on_hand)
    await storage.save_lot(conn, settled)
    gone = closed.outcome in (Outcome.SCRAP, Outcome.RETURN_TO_SUPPLIER)
    await outbox.enqueue(
        conn,
        site_id=lot.site_id,
        destinations=STATIONS_AND_ALERTS,
        payload=(
            LotWrittenOff(lot.lot_id, lot.item_id, closed.outcome.value)
            if gone
            else LotReleased(lot.lot_id, lot.item_id)
        ),
        occurred_at=now,
    )
    m.DISPOSITIONS_CLOSED.labels(lot.site_id, closed.outcome.value).inc()
    await _check_thresholds(conn, lot.site_id, lot.item_id, sorted(set(locations)), now)
    return LotAndDisposition(settled, closed, entries, on_hand)


async def get_lot(db: Database, site_id: str, lot_id: str) -> LotOnHand:
    require_id("site_id", site_id)
    require_id("lot_id", lot_id)
    async with db.pool.acquire() as conn:
        lot = await storage.get_lot(conn, site_id, lot_id)
        return LotOnHand(lot, await storage.lot_on_hand(conn, site_id, lot_id))


async def get_disposition(db: Database, site_id: str, disposition_id: str) -> Disposition:
    require_id("site_id", site_id)
    require_id("disposition_id", disposition_id)
    async with db.pool.acquire() as conn:
        return await storage.get_disposition(conn, site_id, disposition_id)


async def list_dispositions(
    db: Database, site_id: str, open_only: bool, size: int, token: str
) -> Page[Disposition]:
    require_id("site_id", site_id)
    limit = page_size(size)
    after = decode_token(token, 1)
    async with db.pool.acquire() as conn:
        rows = await storage.list_dispositions(
            conn, site_id, open_only, after[0] if after else None, limit + 1
        )
    return page_of(rows, limit, lambda d: [d.disposition_id])


async def trace_lot(
    db: Database, site_id: str, lot_id: str, backward: bool, max_depth: int
) -> tuple[LotOnHand, list[TraceLink]]:
    if max_depth < 0:
        raise InvalidArgument("max_depth", "must not be negative (0 means all levels)")
    found = await get_lot(db, site_id, lot_id)
    async with db.pool.acquire() as conn:
        rows = await storage.trace(conn, site_id, lot_id, backward, max_depth)
    return found, [TraceLink(**dict(r)) for r in rows]


# Cycle counts


async def open_count(db: Database, cmd: commands.OpenCount) -> Count:
    async def action(conn: asyncpg.Connection) -> Count:
        now = _now()
        await storage.get_location(conn, cmd.site_id, cmd.location_id)
        if await storage.find_count(conn, cmd.site_id, cmd.count_id) is not None:
            raise AlreadyExists("count", cmd.count_id)
        if other := await storage.open_count_at_location(conn, cmd.site_id, cmd.location_id):
            raise FailedPrecondition(
                COUNT_ALREADY_OPEN,
                f"location {cmd.location_id} is already being counted by count {other}",
                {"count_id": other, "location_id": cmd.location_id},
            )
        books = await storage.books_at_location(conn, cmd.site_id, cmd.location_id)
        count = Count(
            site_id=cmd.site_id,
            count_id=cmd.count_id,
            location_id=cmd.location_id,
            state=CountState.OPEN,
            tolerance_percent=cmd.tolerance_percent,
            lines=[CountLine(item, lot, None, None) for item, lot in sorted(books)],
            opened_by=cmd.actor,
            opened_at=now,
            closed_at=None,
        )
        await storage.insert_count(conn, count)
        return count

    return await run_once(db, cmd, Count, action)


async def record_count(db: Database, cmd: commands.RecordCount) -> Count:
    async def action(conn: asyncpg.Connection) -> Count:
        count = await storage.get_count(conn, cmd.site_id, cmd.count_id, lock=True)
        count.require_state(CountState.OPEN, "record a quantity in")
        await storage.get_item(conn, cmd.site_id, cmd.item_id)
        key = (cmd.item_id, cmd.lot_id)
        others = [line for line in count.lines if (line.item_id, line.lot_id) != key]
        line = CountLine(cmd.item_id, cmd.lot_id, cmd.counted_quantity, None)
        counted = replace(count, lines=sorted([*others, line], key=lambda x: (x.item_id, x.lot_id)))
        await storage.save_count_lines(conn, counted)
        return counted

    return await run_once(db, cmd, Count, action)


async def _post_adjustments(
    conn: asyncpg.Connection,
    count: Count,
    lines: list[CountLine],
    actor: str,
    request_id: str,
    reason: str,
) -> list[Entry]:
    now = _now()
    entries = []
    for line in lines:
        if line.variance == 0:
            continue
        lot, entry = await _adjust(
            conn,
            count.site_id,
            count.location_id,
            line.item_id,
            line.lot_id,
            line.variance,
            actor,
            reason,
            f"count {count.count_id}",
            request_id,
            now,
        )
        entries.append(entry)
        await _settle(conn, lot, [count.location_id], now)
    return entries


async def reconcile_count(db: Database, cmd: commands.ReconcileCount) -> CountAndEntries:
    """Lines within tolerance are adjusted now; the others wait for ApproveCount."""

    async def action(conn: asyncpg.Connection) -> CountAndEntries:
        now = _now()
        count = await storage.get_count(conn, cmd.site_id, cmd.count_id, lock=True)
        count.require_state(CountState.OPEN, "reconcile")
        count.require_all_counted()
        books = await storage.books_at_location(conn, cmd.site_id, count.location_id)
        reconciled = count.reconciled(books, now)
        await storage.save_count(conn, reconciled)
        within = [line for line in reconciled.lines if line.within(count.tolerance_percent)]
        entries = await _post_adjustments(
            conn, reconciled, within, cmd.actor, cmd.request_id, "cycle count within tolerance"
        )
        for line in reconciled.lines:
            m.COUNT_VARIANCE.labels(cmd.site_id).observe(abs(line.variance))
            if not line.within(count.tolerance_percent):
                await outbox.enqueue(
                    conn,
                    site_id=cmd.site_id,
                    destinations=ALERTS,
                    payload=CountVarianceFlagged(
                        count_id=count.count_id,
                        location_id=count.location_id,
                        item_id=line.item_id,
                        lot_id=line.lot_id,
                        book_quantity=line.book_quantity or 0,
                        counted_quantity=line.counted_quantity or 0,
                        tolerance_percent=count.tolerance_percent,
                    ),
                    occurred_at=now,
                )
        m.COUNT_ACCURACY.labels(cmd.site_id, count.location_id).set(reconciled.accuracy)
        if reconciled.state is CountState.CLOSED:
            await _announce_count_closed(conn, reconciled, now)
        return CountAndEntries(reconciled, entries)

    return await run_once(db, cmd, CountAndEntries, action)


async def approve_count(db: Database, cmd: commands.ApproveCount) -> CountAndEntries:
    async def action(conn: asyncpg.Connection) -> CountAndEntries:
        count = await storage.get_count(conn, cmd.site_id, cmd.count_id, lock=True)
        count.require_state(CountState.AWAITING_APPROVAL, "approve")
        beyond = [line for line in count.lines if not line.within(count.tolerance_percent)]
        reason = "cycle count variance approved" + (f": {cmd.comment}" if cmd.comment else "")
        entries = await _post_adjustments(conn, count, beyond, cmd.actor, cmd.request_id, reason)
        closed = replace(count, state=CountState.CLOSED, closed_at=_now())
        await storage.save_count(conn, closed)
        await _announce_count_closed(conn, closed, _now())
        return CountAndEntries(closed, entries)

    return await run_once(db, cmd, CountAndEntries, action)


async def _announce_count_closed(conn: asyncpg.Connection, count: Count, now: datetime) -> None:
    """The alerts service resolves the count's variance alerts."""
    await outbox.enqueue(
        conn,
        site_id=count.site_id,
        destinations=ALERTS,
        payload=CountClosed(count.count_id, count.location_id),
        occurred_at=now,
    )


async def get_count(db: Database, site_id: str, count_id: str) -> Count:
    require_id("site_id", site_id)
    require_id("count_id", count_id)
    async with db.pool.acquire() as conn:
        return await storage.get_count(conn, site_id, count_id)


# Thresholds


async def set_threshold(db: Database, cmd: commands.SetThreshold) -> Threshold:
    async def action(conn: asyncpg.Connection) -> Threshold:
        now = _now()
        await storage.get_item(conn, cmd.site_id, cmd.item_id)
        if cmd.location_id:
            await storage.get_location(conn, cmd.site_id, cmd.location_id)
        existing = [
            t
            for t in await storage.lock_thresholds(
                conn, cmd.site_id, cmd.item_id, [cmd.location_id]
            )
            if t.location_id == cmd.location_id
        ]
        before = existing[0].state if existing else ThresholdState.NORMAL
        on_hand = await storage.usable_on_hand(conn, cmd.site_id, cmd.item_id, cmd.location_id)
        threshold = Threshold(
            cmd.site_id,
            cmd.item_id,
            cmd.location_id,
            cmd.safety_stock,
            cmd.overstock,
            threshold_state(on_hand, cmd.safety_stock, cmd.overstock),
        )
        await storage.upsert_threshold(conn, threshold)
        if threshold.state is not before:
            await _announce_threshold(conn, threshold, on_hand, now)
        return threshold

    return await run_once(db, cmd, Threshold, action)


async def list_thresholds(
    db: Database, site_id: str, item_id: str, size: int, token: str
) -> Page[Threshold]:
    require_id("site_id", site_id)
    optional_id("item_id", item_id)
    limit = page_size(size)
    after = decode_token(token, 2)
    async with db.pool.acquire() as conn:
        rows = await storage.list_thresholds(conn, site_id, item_id, after, limit + 1)
    return page_of(rows, limit, lambda t: [t.item_id, t.location_id])


# Queries


async def list_locations(
    db: Database,
    site_id: str,
    warehouse_id: str,
    kind: LocationKind | None,
    size: int,
    token: str,
) -> Page[Location]:
    require_id("site_id", site_id)
    optional_id("warehouse_id", warehouse_id)
    limit = page_size(size)
    after = decode_token(token, 1)
    async with db.pool.acquire() as conn:
        rows = await storage.list_locations(
            conn, site_id, warehouse_id, kind, after[0] if after else None, limit + 1
        )
    return page_of(rows, limit, lambda loc: [loc.location_id])


@dataclass(frozen=True)
class StockQuery:
    site_id: str
    location_id: str
    item_id: str
    lot_id: str
    warehouse_id: str
    lot_status: LotStatus | None
    include_empty: bool
    as_of: datetime | None
    page_size: int
    page_token: str


async def get_stock_levels(db: Database, query: StockQuery) -> Page[StockLevel]:
    require_id("site_id", query.site_id)
    for field in ("location_id", "item_id", "lot_id", "warehouse_id"):
        optional_id(field, getattr(query, field))
    limit = page_size(query.page_size)
    after = decode_token(query.page_token, 3)
    filters = (
        query.site_id,
        query.location_id,
        query.item_id,
        query.lot_id,
        query.warehouse_id,
        query.lot_status,
    )
    async with db.pool.acquire() as conn:
        rows = await storage.stock_levels(
            conn, filters, query.include_empty, query.as_of, after, limit + 1
        )
    levels = [
        StockLevel(
            r["site_id"],
            r["location_id"],
            r["item_id"],
            r["lot_id"],
            int(r["on_hand"]),
            LotStatus(r["lot_status"]),
        )
        for r in rows
    ]
    return page_of(levels, limit, lambda s: [s.location_id, s.item_id, s.lot_id])


async def list_movements(
    db: Database,
    site_id: str,
    item_id: str,
    location_id: str,
    lot_id: str,
    since: datetime | None,
    until: datetime | None,
    size: int,
    token: str,
) -> Page[Entry]:
    require_id("site_id", site_id)
    for field, value in (("item_id", item_id), ("location_id", location_id), ("lot_id", lot_id)):
        optional_id(field, value)
    if not (item_id or location_id or lot_id):
        raise InvalidArgument("item_id", "name an item, a location or a lot (or several)")
    if since and until and until <= since:
        raise InvalidArgument("until", "must be after since")
    limit = page_size(size)
    after = decode_position(token)
    async with db.pool.acquire() as conn:
        rows = await storage.list_movements(
            conn,
            site_id,
            item_id,
            location_id,
            lot_id,
            since,
            until,
            after,
            limit + 1,
        )
    return page_of(rows, limit, lambda e: [str(e.movement_id)])


async def list_item_turnover(
    db: Database, site_id: str, item_id: str, window_days: int, size: int, token: str
) -> TurnoverPage:
    require_id("site_id", site_id)
    optional_id("item_id", item_id)
    if not 0 <= window_days <= MAX_TURNOVER_DAYS:
        raise InvalidArgument("window_days", f"must be between 0 and {MAX_TURNOVER_DAYS}")
    limit = page_size(size)
    after = decode_token(token, 1)
    end = _now()
    start = end - timedelta(days=window_days or DEFAULT_TURNOVER_DAYS)
    async with db.pool.acquire() as conn:
        items = await storage.items_page(
            conn, site_id, item_id, after[0] if after else None, limit + 1
        )
        figures = []
        for item in items[:limit]:
            opening, changes, issued = await storage.item_history(
                conn, site_id, item.item_id, start, end
            )
            figures.append(turnover(item, opening, changes, issued, start, end))
    more = len(items) > limit
    return TurnoverPage(
        figures, start, end, encode_token([figures[-1].item_id]) if more and figures else ""
    )
