"""The stations service layer: open a transaction, load, ask the domain, write, commit."""

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import structlog

from services.core import audit, auth, outbox
from services.core.db import Database
from services.core.errors import FailedPrecondition, InvalidArgument, KanbanError, require_same
from services.core.events import (
    CardStarted,
    ItemDefined,
    LotQuarantined,
    LotReleased,
    LotWrittenOff,
    OrderReduced,
    OrderReleased,
    OverproductionBlocked,
)
from services.core.feeds import Heartbeat, follow
from services.core.idempotency import run_once
from services.core.inbox import ReceivedEvent
from services.core.notify import Notifications
from services.core.paging import decode_token, encode_token
from services.core.validation import page_size, require_id
from services.stations import analytics, commands, storage
from services.stations import metrics as m
from services.stations.analyst import Analyst, Question
from services.stations.analytics import LineAnalysis, Safety, Window
from services.stations.domain import (
    OVERPRODUCTION_BLOCKED,
    Board,
    Card,
    CardState,
    FeedItem,
    Instruction,
    InstructionState,
    Item,
    Loop,
    LotHold,
    LotHoldNotice,
    LotHoldStatus,
    Signal,
    SignalState,
    SignalWithdrawal,
    Site,
    Station,
    Withdrawal,
    cards_by_consumer,
    fit_release,
    no_open_instruction,
    no_open_signal,
    plan_reduction,
)
from services.stations.sizing import SizingPolicy, enabled_safeties

log = structlog.get_logger()
R = TypeVar("R")

# Where stations' events go: cards move stock; finished instructions also tell orders.
STOCK = ("stock",)
ALERTS = ("alerts",)
# Card movements: stock moves the parts, alerts watches the cards.
KANBAN = ("stock", "alerts")
ORDER_PROGRESS = ("stock", "orders")
DESTINATIONS = ("stock", "orders", "alerts")


@dataclass(frozen=True)
class LoopWithCards:
    loop: Loop
    cards: list[Card]


@dataclass(frozen=True)
class CardAndSignal:
    card: Card
    # None when a scan retired the card instead.
    signal: Signal | None


@dataclass(frozen=True)
class ResizedLoop:
    loop: Loop
    added: list[Card]
    signals: list[Signal]
    retired: list[Card]
    # Kept with the answer, so the audit trail says why.
    reason: str


@dataclass(frozen=True)
class LoopPage:
    loops: list[Loop]
    next_page_token: str


# The window AnalyzeLine reads when none is given, and the longest it reads.
DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = commands.MAX_WINDOW
# Who the audit trail names for resizes a sizing policy makes.
SIZING_POLICY = auth.Principal("sizing-policy", frozenset({auth.Role.SERVICE}))


@dataclass(frozen=True)
class LineReport:
    analysis: LineAnalysis
    # Loop id -> its sizing policy, for the loops that have one.
    policies: dict[str, SizingPolicy]


def _now() -> datetime:
    return datetime.now(UTC)


# Master data


async def create_site(db: Database, cmd: commands.CreateSite) -> Site:
    async def action(conn: asyncpg.Connection) -> Site:
        site = Site(cmd.site_id, cmd.name)
        stored = await storage.insert_site(conn, site)
        require_same("site", cmd.site_id, site, stored)
        return stored

    return await run_once(db, cmd, Site, action)


async def create_station(db: Database, cmd: commands.CreateStation) -> Station:
    async def action(conn: asyncpg.Connection) -> Station:
        await storage.require_site(conn, cmd.site_id)
        station = Station(cmd.site_id, cmd.station_id, cmd.name)
        stored = await storage.insert_station(conn, station)
        require_same("station", cmd.station_id, station, stored)
        return stored

    return await run_once(db, cmd, Station, action)


async def create_item(db: Database, cmd: commands.CreateItem) -> Item:
    async def action(conn: asyncpg.Connection) -> Item:
        await storage.require_site(conn, cmd.site_id)
        item = Item(cmd.site_id, cmd.item_id, cmd.description, cmd.unit_of_measure)
        stored = await storage.insert_item(conn, item)
        require_same("item", cmd.item_id, item, stored)
        # Stock keeps its own copy, with the unit it counts in.
        await outbox.enqueue(
            conn,
            site_id=cmd.site_id,
            destinations=STOCK,
            payload=ItemDefined(item.item_id, item.unit_of_measure),
            occurred_at=_now(),
        )
        return stored

    return await run_once(db, cmd, Item, action)


async def create_loop(db: Database, cmd: commands.CreateLoop) -> LoopWithCards:
    async def action(conn: asyncpg.Connection) -> LoopWithCards:
        await storage.require_site(conn, cmd.site_id)
        await storage.require_item(conn, cmd.site_id, cmd.item_id)
        await storage.require_station(conn, cmd.site_id, cmd.supplier_station_id)
        await storage.require_station(conn, cmd.site_id, cmd.consumer_station_id)
        loop = Loop(
            site_id=cmd.site_id,
            loop_id=cmd.loop_id,
            item_id=cmd.item_id,
            supplier_station_id=cmd.supplier_station_id,
            consumer_station_id=cmd.consumer_station_id,
            supermarket_location_id=cmd.supermarket_location_id,
            container_quantity=cmd.container_quantity,
            card_count=cmd.card_count,
        )
        if not await storage.insert_loop(conn, loop):
            stored = await storage.get_loop(conn, cmd.site_id, cmd.loop_id)
            require_same("loop", loop.loop_id, loop, stored)
            return LoopWithCards(
                loop, await storage.cards_of_loop(conn, loop.site_id, loop.loop_id)
            )
        now = _now()
        cards = loop.new_cards(cmd.initial_card_state, now)
        await storage.insert_cards(conn, cards)
        await outbox.enqueue(
            conn,
            site_id=loop.site_id,
            destinations=KANBAN,
            payload=loop.defined(cmd.initial_card_state),
            occurred_at=now,
        )
        if cmd.initial_card_state is CardState.EMPTY:
            for card in cards:
                await _raise_signal(conn, loop, card, now)
        return LoopWithCards(loop, cards)

    return await run_once(db, cmd, LoopWithCards, action)


async def resize_loop(db: Database, cmd: commands.ResizeLoop) -> ResizedLoop:
    """More cards ask their supplier at once; fewer retire as they come back empty."""

    async def action(conn: asyncpg.Connection) -> ResizedLoop:
        loop = await storage.get_loop(conn, cmd.site_id, cmd.loop_id, lock=True)
        audit.note_before(loop)
        return await _resize(conn, loop, cmd.card_count, cmd.reason)

    return await run_once(db, cmd, ResizedLoop, action)


async def _resize(
    conn: asyncpg.Connection, loop: Loop, card_count: int, reason: str
) -> ResizedLoop:
    """Resizes the loop, locked by the caller, in the caller's transaction."""
    waiting = await storage.lock_waiting_cards(conn, loop.site_id, loop.loop_id)
    numbered = await storage.numbered_cards(conn, loop.site_id, loop.loop_id)
    now = _now()
    resize = loop.resize(card_count, waiting, numbered, now)
    await storage.save_loop(conn, resize.loop)
    await storage.insert_cards(conn, resize.added)
    for card in resize.retired:
        await storage.save_card(conn, card)
        signal = await storage.active_signal(conn, loop.site_id, card.card_code)
        sequence = await storage.next_sequence(conn, loop.site_id, signal.station_id)
        await storage.withdraw_signal(conn, signal, sequence)
    await outbox.enqueue(
        conn,
        site_id=loop.site_id,
        destinations=KANBAN,
        payload=resize.resized(reason),
        occurred_at=now,
    )
    signals = [await _raise_signal(conn, resize.loop, card, now) for card in resize.added]
    return ResizedLoop(resize.loop, resize.added, signals, resize.retired, reason)


# Queries


async def get_loop(db: Database, site_id: str, loop_id: str) -> LoopWithCards:
    require_id("site_id", site_id)
    require_id("loop_id", loop_id)
    async with db.pool.acquire() as conn:
        loop = await storage.get_loop(conn, site_id, loop_id)
        return LoopWithCards(loop, await storage.cards_of_loop(conn, site_id, loop_id))


async def list_loops(db: Database, site_id: str, size: int, token: str) -> LoopPage:
    require_id("site_id", site_id)
    limit = page_size(size)
    after = decode_token(token, 1)
    async with db.pool.acquire() as conn:
        loops = await storage.list_loops(conn, site_id, after[0] if after else None, limit + 1)
    more = len(loops) > limit
    loops = loops[:limit]
    return LoopPage(loops, encode_token([loops[-1].loop_id]) if more else "")


async def get_card(db: Database, site_id: str, card_code: str) -> Card:
    require_id("site_id", site_id)
    require_id("card_code", card_code)
    async with db.pool.acquire() as conn:
        return await storage.get_card(conn, site_id, card_code)


async def get_board(db: Database, site_id: str) -> Board:
    require_id("site_id", site_id)
    async with db.pool.acquire() as conn:
        await storage.require_site(conn, site_id)
        statuses = await storage.loop_statuses(conn, site_id)
        return Board.of(
            statuses,
            await storage.open_signal_counts(conn, site_id),
            await storage.open_instruction_counts(conn, site_id),
        )


# The pull loop


async def _raise_signal(
    conn: asyncpg.Connection, loop: Loop, card: Card, now: datetime, *, save_card: bool = False
) -> Signal:
    """The card's signal at the supplier; with `save_card`, the card is saved as it is
    by the same statement (one round trip less on a scan)."""
    signal = Signal.raise_for(loop, card, now)
    signal = await storage.insert_signal(conn, signal, card if save_card else None)
    m.SIGNALS_RAISED.labels(loop.site_id, loop.supplier_station_id, loop.loop_id).inc()
    return signal


async def scan_card(db: Database, cmd: commands.ScanCard) -> CardAndSignal:
    """The consumer takes a FULL container: the card empties and the supplier is told."""

    async def action(conn: asyncpg.Connection) -> CardAndSignal:
        card, loop = await storage.lock_card_in_loop(conn, cmd.site_id, cmd.card_code)
        audit.note_before(card)
        now = _now()
        try:
            emptied = card.scan(loop, cmd.station_id, now)
        except FailedPrecondition as refusal:
            m.SCANS_REFUSED.labels(cmd.site_id, cmd.station_id, refusal.reason).inc()
            raise
        await outbox.enqueue(
            conn,
            site_id=cmd.site_id,
            destinations=KANBAN,
            payload=emptied,
            occurred_at=now,
        )
        signal = await _take_back(conn, loop, card, now)
        return CardAndSignal(card, signal)

    return await run_once(db, cmd, CardAndSignal, action)


async def _take_back(
    conn: asyncpg.Connection, loop: Loop, card: Card, now: datetime
) -> Signal | None:
    """A card came back empty: it asks its supplier for another container, or
    retires if its loop is being made smaller (no signal then). Either way the
    card is saved as it now is."""
    if loop.cards_to_retire:
        # Read again under the loop's lock: a resize or another retirement may
        # have changed it since.
        loop = await storage.get_loop(conn, loop.site_id, loop.loop_id, lock=True)
    smaller, retired = loop.take_back(card, now)
    if retired is None:
        return await _raise_signal(conn, loop, card, now, save_card=True)
    await storage.save_card(conn, card)
    await storage.save_loop(conn, smaller)
    await outbox.enqueue(
        conn, site_id=loop.site_id, destinations=KANBAN, payload=retired, occurred_at=now
    )
    m.CARDS_RETIRED.labels(loop.site_id, loop.loop_id).inc()
    return None


async def start_signal(db: Database, cmd: commands.StartSignal) -> CardAndSignal:
    """The supplier starts the oldest open signal, or the named card's."""

    async def action(conn: asyncpg.Connection) -> CardAndSignal:
        await storage.require_station(conn, cmd.site_id, cmd.station_id)
        if cmd.card_code:
            card = await storage.lock_card(conn, cmd.site_id, cmd.card_code)
        else:
            oldest = await storage.lock_oldest_card_to_start(conn, cmd.site_id, cmd.station_id)
            if oldest is None:
                raise no_open_signal(cmd.station_id)
            card = oldest
        audit.note_before(card)
        loop = await storage.get_loop(conn, cmd.site_id, card.loop_id)
        now = _now()
        card.start(loop, cmd.station_id, now)
        signal = await storage.active_signal(conn, cmd.site_id, card.card_code)
        await storage.save_card(conn, card)
        await storage.set_signal_state(conn, signal, SignalState.STARTED, now)
        await outbox.enqueue(
            conn,
            site_id=cmd.site_id,
            destinations=ALERTS,
            payload=CardStarted(loop.loop_id, card.card_code, cmd.station_id),
            occurred_at=now,
        )
        m.SIGNAL_WAIT.labels(cmd.site_id, cmd.station_id).observe(
            (now - signal.raised_at).total_seconds()
        )
        return CardAndSignal(card, signal)

    return await run_once(db, cmd, CardAndSignal, action)


async def complete_card(db: Database, cmd: commands.CompleteCard) -> CardAndSignal:
    """The supplier puts a finished container of a lot into the supermarket."""

    async def action(conn: asyncpg.Connection) -> CardAndSignal:
        card, loop = await storage.lock_card_in_loop(conn, cmd.site_id, cmd.card_code)
        audit.note_before(card)
        now = _now()
        emptied_at = card.emptied_at
        try:
            filled = card.complete(loop, cmd.station_id, cmd.lot_id, cmd.quantity, now)
        except FailedPrecondition as refusal:
            if refusal.reason == OVERPRODUCTION_BLOCKED:
                m.OVERPRODUCTION_BLOCKED.labels(cmd.site_id, cmd.station_id, loop.loop_id).inc()
            raise
        signal = await storage.active_signal(conn, cmd.site_id, card.card_code)
        await storage.save_card(conn, card)
        await storage.set_signal_state(conn, signal, SignalState.COMPLETED, now)
        await outbox.enqueue(
            conn,
            site_id=cmd.site_id,
            destinations=KANBAN,
            payload=filled,
            occurred_at=now,
        )
        m.SIGNALS_COMPLETED.labels(cmd.site_id, cmd.station_id, loop.loop_id).inc()
        if emptied_at is not None:
            m.LEAD_TIME.labels(cmd.site_id, loop.loop_id).observe(
                (now - emptied_at).total_seconds()
            )
        return CardAndSignal(card, signal)

    return await _reporting_overproduction(
        db, cmd, run_once(db, cmd, CardAndSignal, action), card_code=cmd.card_code
    )


async def _reporting_overproduction(
    db: Database,
    cmd: commands.CompleteCard | commands.CompleteInstruction,
    completion: Awaitable[R],
    *,
    card_code: str = "",
    instruction_id: str = "",
) -> R:
    """Awaits a completion; if it is refused as over-production, tells the alerts service
    in a transaction of its own (the refused one left nothing behind)."""
    try:
        return await completion
    except FailedPrecondition as refusal:
        if refusal.reason != OVERPRODUCTION_BLOCKED:
            raise
        async with db.transaction() as conn:
            await outbox.enqueue(
                conn,
                site_id=cmd.site_id,
                destinations=ALERTS,
                payload=OverproductionBlocked(
                    cmd.station_id, card_code, instruction_id, cmd.quantity, refusal.message
                ),
                occurred_at=_now(),
            )
        raise


async def watch_signals(
    db: Database,
    notifications: Notifications,
    site_id: str,
    station_id: str,
    after_sequence: int,
    heartbeat_seconds: float,
) -> AsyncIterator[FeedItem | Heartbeat]:
    """The station's work after the cursor (signals, instructions, withdrawals) and
    news of lots on hold in its supermarket, then new ones as they come."""
    require_id("site_id", site_id)
    require_id("station_id", station_id)
    async with db.pool.acquire() as conn:
        await storage.require_station(conn, site_id, station_id)
    # What this stream sent that a later message may take back.
    sent: set[Announcement] = set()
    async for item in follow(
        db,
        notifications,
        f"{site_id}/{station_id}",
        after_sequence,
        heartbeat_seconds,
        read_after=lambda conn, cursor: storage.feed_after(conn, site_id, station_id, cursor),
        read_last=lambda conn: storage.last_sequence(conn, site_id, station_id),
        page_size=storage.FEED_PAGE,
    ):
        if taken_back := _takes_back(item):
            what, first_sequence = taken_back
            # Only for a terminal that may have seen it: sent by this stream, or
            # before the cursor it resumed from (an earlier stream may have).
            if what not in sent and first_sequence > after_sequence:
                continue
        elif announcement := _announces(item):
            sent.add(announcement)
        yield item


# What a signal, an instruction or a hold notice announces, for a withdrawal or a
# lifting to name: a signal and a hold by their sequence, an instruction by its id
# (a cut announces it again with another sequence).
Announcement = tuple[str, int | str]


def _announces(item: FeedItem | Heartbeat) -> Announcement | None:
    match item:
        case Signal():
            return ("signal", item.sequence)
        case Instruction():
            return ("instruction", item.instruction_id)
        case LotHoldNotice() if item.status is LotHoldStatus.HELD:
            return ("hold", item.held_sequence)
    return None


def _takes_back(item: FeedItem | Heartbeat) -> tuple[Announcement, int] | None:
    """What a withdrawal or a lifted hold takes back, and the sequence that was first
    announced with; None for anything else."""
    match item:
        case Withdrawal():
            return ("instruction", item.instruction.instruction_id), item.first_sequence
        case SignalWithdrawal():
            return ("signal", item.signal.sequence), item.signal.sequence
        case LotHoldNotice() if item.status is not LotHoldStatus.HELD:
            return ("hold", item.held_sequence), item.held_sequence
    return None


# Production instructions of orders, at the pacemaker


async def start_instruction(db: Database, cmd: commands.StartInstruction) -> Instruction:
    """The pacemaker starts its most urgent open instruction, or the named one."""

    async def action(conn: asyncpg.Connection) -> Instruction:
        await storage.require_station(conn, cmd.site_id, cmd.station_id)
        if cmd.instruction_id:
            instruction = await storage.lock_instruction(conn, cmd.site_id, cmd.instruction_id)
        else:
            urgent = await storage.lock_most_urgent_instruction(conn, cmd.site_id, cmd.station_id)
            if urgent is None:
                raise no_open_instruction(cmd.station_id)
            instruction = urgent
        instruction.start(cmd.station_id, _now())
        await storage.save_instruction(conn, instruction)
        return instruction

    return await run_once(db, cmd, Instruction, action)


async def complete_instruction(db: Database, cmd: commands.CompleteInstruction) -> Instruction:
    """Finished goods of an order: only against a started instruction, never above it."""

    async def action(conn: asyncpg.Connection) -> Instruction:
        instruction = await storage.lock_instruction(conn, cmd.site_id, cmd.instruction_id)
        try:
            completed = instruction.complete(cmd.station_id, cmd.lot_id, cmd.quantity)
        except FailedPrecondition as refusal:
            if refusal.reason == OVERPRODUCTION_BLOCKED:
                m.OVERPRODUCTION_BLOCKED.labels(cmd.site_id, cmd.station_id, "").inc()
            raise
        await storage.save_instruction(conn, instruction)
        await outbox.enqueue(
            conn,
            site_id=cmd.site_id,
            destinations=ORDER_PROGRESS,
            payload=completed,
            occurred_at=_now(),
        )
        m.INSTRUCTIONS_COMPLETED.labels(cmd.site_id, cmd.station_id).inc()
        return instruction

    return await _reporting_overproduction(
        db, cmd, run_once(db, cmd, Instruction, action), instruction_id=cmd.instruction_id
    )


async def apply_event(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    """Orders' and stock's events, inside the inbox transaction that records them as
    applied."""
    match event.payload:
        case OrderReleased() as released:
            await _queue_instructions(conn, event.site_id, released)
        case OrderReduced() as reduced:
            await _withdraw_instructions(conn, event.site_id, reduced)
        case LotQuarantined() as quarantined:
            await _hold_lot(conn, event.site_id, quarantined, event.occurred_at)
        case LotReleased() as lot:
            await _release_lot(conn, event.site_id, lot)
        case LotWrittenOff() as lot:
            await _write_off_lot(conn, event.site_id, lot)


async def _queue_instructions(conn: asyncpg.Connection, site_id: str, order: OrderReleased) -> None:
    station_id = order.pacemaker_station_id
    if not await storage.station_exists(conn, site_id, station_id):
        # Acknowledged, not retried forever: a product names a station we do not have.
        m.INSTRUCTIONS_REFUSED.labels(site_id, station_id, "STATION_NOT_FOUND").inc()
        log.error(
            "instructions_refused",
            reason="STATION_NOT_FOUND",
            station_id=station_id,
            erp_order_id=order.erp_order_id,
        )
        return
    existing = await storage.lock_instructions_of_order(conn, site_id, order.erp_order_id)
    for instruction_id, quantity in fit_release(existing, order.instructions, order.order_quantity):
        await storage.insert_instruction(
            conn,
            Instruction(
                site_id=site_id,
                instruction_id=instruction_id,
                erp_order_id=order.erp_order_id,
                station_id=station_id,
                item_id=order.item_id,
                location_id=order.location_id,
                quantity=quantity,
                due_time=order.due_time,
                priority=order.priority,
                state=InstructionState.OPEN,
                sequence=await storage.next_sequence(conn, site_id, station_id),
                lot_id="",
                made_quantity=0,
            ),
        )


async def _withdraw_instructions(
    conn: asyncpg.Connection, site_id: str, order: OrderReduced
) -> None:
    instructions = await storage.lock_instructions_of_order(conn, site_id, order.erp_order_id)
    reduction = plan_reduction(instructions, order.quantity)
    for instruction in reduction.withdraw:
        sequence = await storage.next_sequence(conn, site_id, instruction.station_id)
        await storage.withdraw_instruction(conn, instruction, sequence)
    if reduction.shrink:
        instruction, quantity = reduction.shrink
        # Announced again with its new quantity; terminals replace the old one.
        instruction.quantity = quantity
        instruction.sequence = await storage.next_sequence(conn, site_id, instruction.station_id)
        await storage.save_instruction(conn, instruction)
        await storage.notify_station(conn, site_id, instruction.station_id)


# Quality holds on lots, from stock. Each lot event locks the lot's FULL cards
# first, then its hold and notices, then stations in order of their ids: two of
# them never wait on each other in a circle, nor on a scan (one card, then one
# station).


async def _hold_lot(
    conn: asyncpg.Connection, site_id: str, lot: LotQuarantined, held_at: datetime
) -> None:
    """No container of the lot may be consumed; the stations consuming them are told."""
    # Locked before the hold is recorded: a scan racing it either committed first
    # (its card is EMPTY, left out here, and the scan stands) or waits for this
    # transaction and then sees the hold.
    cards = await storage.lock_full_cards_of_lot(conn, site_id, lot.lot_id)
    hold = LotHold(site_id, lot.lot_id, lot.item_id, lot.reason, lot.disposition_id, held_at)
    if not await storage.insert_lot_hold(conn, hold):
        return  # held already: its stations were told then
    loops = await storage.loops_of(conn, site_id, (c.loop_id for c in cards))
    for station_id, card_codes in cards_by_consumer(cards, loops).items():
        sequence = await storage.next_sequence(conn, site_id, station_id)
        await storage.insert_hold_notice(
            conn, LotHoldNotice.held(hold, station_id, card_codes, sequence)
        )


async def _release_lot(conn: asyncpg.Connection, site_id: str, lot: LotReleased) -> None:
    """The lot's containers may be used again; the stations told of the hold are told."""
    cards = await storage.lock_full_cards_of_lot(conn, site_id, lot.lot_id)
    await storage.delete_lot_hold(conn, site_id, lot.lot_id)
    loops = await storage.loops_of(conn, site_id, (c.loop_id for c in cards))
    notices = await storage.lock_held_notices(conn, site_id, lot.lot_id)
    await _lift_notices(conn, notices, LotHoldStatus.RELEASED, cards_by_consumer(cards, loops))


async def _write_off_lot(conn: asyncpg.Connection, site_id: str, lot: LotWrittenOff) -> None:
    """The lot was scrapped or returned: its containers are gone, so their cards
    empty and their suppliers are asked for new ones, as a scan would."""
    cards = await storage.lock_full_cards_of_lot(conn, site_id, lot.lot_id)
    await storage.delete_lot_hold(conn, site_id, lot.lot_id)
    # Locked before the stations, as a scan does: a card may retire instead.
    await storage.lock_loops(conn, site_id, (c.loop_id for c in cards))
    loops = await storage.loops_of(conn, site_id, (c.loop_id for c in cards))
    notices = await storage.lock_held_notices(conn, site_id, lot.lot_id)
    await storage.lock_stations(
        conn,
        site_id,
        [loops[c.loop_id].supplier_station_id for c in cards] + [n.station_id for n in notices],
    )
    now = _now()
    for card in cards:
        loop = loops[card.loop_id]
        emptied = card.write_off(loop, now)
        await outbox.enqueue(
            conn, site_id=site_id, destinations=KANBAN, payload=emptied, occurred_at=now
        )
        await _take_back(conn, loop, card, now)
    await _lift_notices(conn, notices, LotHoldStatus.WRITTEN_OFF, cards_by_consumer(cards, loops))


async def _lift_notices(
    conn: asyncpg.Connection,
    notices: list[LotHoldNotice],
    status: LotHoldStatus,
    card_codes: dict[str, list[str]],
) -> None:
    """Each station told of the hold learns it is lifted, and which of its cards that
    concerns now, with its next sequence."""
    for notice in notices:
        sequence = await storage.next_sequence(conn, notice.site_id, notice.station_id)
        lifted = notice.lifted(status, card_codes.get(notice.station_id, []), sequence)
        await storage.lift_hold_notice(conn, lifted)


# Analysis and sizing


async def analyze_line(
    db: Database,
    analyst: Analyst,
    site_id: str,
    start: datetime | None,
    end: datetime | None,
    safety: Safety = analytics.NO_SAFETY,
) -> LineReport:
    """The line over [start, end); loops with a sizing policy are sized with its safety."""
    require_id("site_id", site_id)
    end = end or _now()
    try:
        start = start or end - DEFAULT_WINDOW
    except OverflowError:
        raise InvalidArgument("end_time", "leaves no room for a window before it") from None
    if start >= end:
        raise InvalidArgument("start_time", "must be before end_time")
    if end - start > MAX_WINDOW:
        raise InvalidArgument("start_time", f"the window is at most {MAX_WINDOW.days} days")
    async with db.pool.acquire() as conn:
        await storage.require_site(conn, site_id)
        policies = await storage.sizing_policies(conn, site_id)
    question = Question(site_id, Window(start, end), enabled_safeties(policies), safety)
    [analysis] = await analyst.analyze([question])
    return LineReport(analysis, policies)


async def set_sizing_policy(db: Database, cmd: commands.SetSizingPolicy) -> SizingPolicy:
    async def action(conn: asyncpg.Connection) -> SizingPolicy:
        await storage.get_loop(conn, cmd.site_id, cmd.loop_id, lock=True)
        before = await storage.get_sizing_policy(conn, cmd.site_id, cmd.loop_id)
        audit.note_before(before or "")
        policy = SizingPolicy(
            site_id=cmd.site_id,
            loop_id=cmd.loop_id,
            enabled=cmd.enabled,
            min_cards=cmd.min_cards,
            max_cards=cmd.max_cards,
            safety=cmd.safety,
            period=cmd.period,
            window=cmd.window,
            checked_at=before.checked_at if before else None,
            resized_at=before.resized_at if before else None,
        )
        await storage.save_sizing_policy(conn, policy)
        return policy

    return await run_once(db, cmd, SizingPolicy, action)


async def apply_sizing_policies(db: Database, analyst: Analyst) -> None:
    """Each policy that is due looks at its loop and, if the recommendation (within its
    bounds) differs from the loop's cards, resizes it: all in one transaction, so a
    crash leaves the policy due and nothing half done."""
    auth.CURRENT.set(SIZING_POLICY)
    auth.CURRENT_RPC.set("SizingPolicy")
    async with db.pool.acquire() as conn:
        due = await storage.due_sizing_policies(conn, _now())
    for site_id, loop_id in due:
        try:
            await _apply_sizing_policy(db, analyst, site_id, loop_id)
        except KanbanError as error:
            # One loop's refusal must not stop the others, nor the service.
            log.warning("sizing_policy_failed", site_id=site_id, loop_id=loop_id, error=str(error))


async def _apply_sizing_policy(db: Database, analyst: Analyst, site_id: str, loop_id: str) -> None:
    async with db.transaction() as conn:
        now = _now()
        policy = await storage.lock_due_sizing_policy(conn, site_id, loop_id, now)
        if policy is None:
            return
        # Locked first: the analyst's reads then see the loop's cards as they stay
        # until this transaction ends.
        loop = await storage.get_loop(conn, site_id, loop_id, lock=True)
        window = Window(now - policy.window, now)
        question = Question(site_id, window, {loop_id: policy.safety}, loop_id=loop_id)
        [line] = await analyst.analyze([question])
        [analysis] = line.loops
        target = policy.target(analysis.sizing, loop.target_card_count)
        resized = target != loop.target_card_count
        if resized:
            audit.note_before(loop)
            reason = _sizing_reason(analysis, target)
            done = await _resize(conn, loop, target, reason)
            await audit.record(
                conn, site_id, f"sizing:{loop_id}:{now.isoformat()}", loop_id, "OK", done
            )
            m.SIZING_RESIZES.labels(site_id, loop_id).inc()
            log.info(
                "loop_resized_by_policy",
                site_id=site_id,
                loop_id=loop_id,
                cards=target,
                reason=reason,
            )
        await storage.save_sizing_policy(conn, policy.checked(now, resized))


def _sizing_reason(analysis: analytics.LoopAnalysis, target: int) -> str:
    sizing = analysis.sizing
    if sizing is None:
        return f"sizing policy: {target} cards, the nearest its bounds allow (no trip completed)"
    return (
        f"sizing policy: demand {sizing.demand_units_per_hour:.1f}/h x lead time"
        f" {sizing.lead_time_hours:.2f} h x (1 + {sizing.safety_factor:.2f}) needs"
        f" {sizing.recommended_cards} cards; {target} within bounds"
    )
