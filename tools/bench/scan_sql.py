"""The scan's SQL on its own: what a scan costs PostgreSQL, without the service around it.

The bare prototype (tools.bench.bare) and the `sql` ceiling (tools.bench.ceilings)
both run `scan`, so the benchmark's ratios compare our service with the same
statements run straight through asyncpg.

Keep it in step with the real scan, statement for statement (the audit insert
left out: the bare prototype has no caller to audit); the card's lock, the loop
and hold read and the signal's statement are the storage module's own text
(LOCK_CARD, LOOP_AND_HOLD, insert_signal_sql). Today the real scan runs:

    BEGIN
    claim_request         services.core.idempotency.run_once (the claim)
    lock_card             services.stations.storage.lock_card_in_loop (first statement)
    read_loop_and_hold    services.stations.storage.lock_card_in_loop (second statement)
    enqueue_card_emptied  services.core.outbox.enqueue, called by service.scan_card
    raise_signal          services.stations.storage.insert_signal with the card to save,
                          called by service._take_back / _raise_signal
    record_answer         services.core.idempotency.run_once (the answer; the audit
                          insert of that statement left out)
    COMMIT

A change there (statements merged, split, added) is a change here: one function
per statement, called in order by `scan`.
"""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.core import codec
from services.core.events import CardEmptied
from services.core.outbox import CHANNEL_PREFIX
from services.stations.domain import INVALID_CARD_STATE, LOT_QUARANTINED, WRONG_STATION
from services.stations.storage import (
    LOCK_CARD,
    LOOP_AND_HOLD,
    SIGNALS_CHANNEL,
    insert_signal_sql,
)

# What the real service names the request in request_log (the command's class).
RPC = "ScanCard"
# Where a card movement's event goes: service.KANBAN.
DESTINATIONS = ["stock", "alerts"]


class Refusal(Exception):
    """The scan was refused; its transaction rolled back, as the real service's does."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ScanResult:
    """The emptied card and the signal raised at its supplier."""

    site_id: str
    card_code: str
    loop_id: str
    item_id: str
    supplier_station_id: str
    container_quantity: int
    sequence: int
    scanned_at: datetime


@dataclass(frozen=True)
class _LockedCard:
    loop_id: str
    state: str
    lot_id: str
    quantity: int
    started_at: datetime | None


@dataclass(frozen=True)
class _Loop:
    loop_id: str
    item_id: str
    supplier_station_id: str
    consumer_station_id: str
    supermarket_location_id: str
    container_quantity: int
    cards_to_retire: int
    lot_held: bool


async def scan(
    conn: asyncpg.Connection, site_id: str, station_id: str, card_code: str, request_id: str
) -> ScanResult:
    """Empties a FULL card at its consumer station and raises its signal, in one
    transaction; raises Refusal (nothing kept) where the real scan would refuse."""
    now = datetime.now(UTC)
    async with conn.transaction():
        if not await claim_request(conn, site_id, request_id, station_id, card_code):
            raise Refusal("REQUEST_SEEN", f"request {request_id} was already run")
        card = await lock_card(conn, site_id, card_code)
        loop = await read_loop_and_hold(conn, site_id, card)
        _check(card, loop, station_id, card_code)
        await enqueue_card_emptied(conn, site_id, card_code, card, loop, station_id, now)
        sequence = await raise_signal(conn, site_id, card_code, card, loop, now)
        result = ScanResult(
            site_id,
            card_code,
            loop.loop_id,
            loop.item_id,
            loop.supplier_station_id,
            loop.container_quantity,
            sequence,
            now,
        )
        await record_answer(conn, site_id, request_id, result)
        return result


def _check(card: _LockedCard, loop: _Loop, station_id: str, card_code: str) -> None:
    """The refusals a benchmark can meet, in the order Card.scan checks them."""
    if station_id != loop.consumer_station_id:
        raise Refusal(WRONG_STATION, f"card {card_code} belongs to {loop.consumer_station_id}")
    if card.state != "FULL":
        raise Refusal(INVALID_CARD_STATE, f"card {card_code} is {card.state}, not FULL")
    if loop.lot_held:
        raise Refusal(LOT_QUARANTINED, f"lot {card.lot_id} in card {card_code} is quarantined")
    if loop.cards_to_retire:
        # The real scan retires the card instead, with other statements: not measured here.
        raise Refusal("LOOP_SHRINKING", f"loop {loop.loop_id} is retiring cards")


async def claim_request(
    conn: asyncpg.Connection, site_id: str, request_id: str, station_id: str, card_code: str
) -> bool:
    fingerprint = hashlib.sha256(f"{site_id}/{station_id}/{card_code}".encode()).hexdigest()
    claimed = await conn.fetchval(
        """INSERT INTO request_log (site_id, request_id, rpc, fingerprint)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        site_id,
        request_id,
        RPC,
        fingerprint,
    )
    return bool(claimed)


async def lock_card(conn: asyncpg.Connection, site_id: str, card_code: str) -> _LockedCard:
    row = await conn.fetchrow(LOCK_CARD, site_id, card_code)
    if row is None:
        raise Refusal("CARD_NOT_FOUND", f"no card {card_code}")
    return _LockedCard(
        row["loop_id"], row["state"], row["lot_id"], row["quantity"], row["started_at"]
    )


async def read_loop_and_hold(conn: asyncpg.Connection, site_id: str, card: _LockedCard) -> _Loop:
    row = await conn.fetchrow(
        LOOP_AND_HOLD,
        site_id,
        card.loop_id,
        card.lot_id if card.state == "FULL" else None,
    )
    return _Loop(
        row["loop_id"],
        row["item_id"],
        row["supplier_station_id"],
        row["consumer_station_id"],
        row["supermarket_location_id"],
        row["container_quantity"],
        row["cards_to_retire"],
        row["hold_held_at"] is not None,
    )


async def enqueue_card_emptied(
    conn: asyncpg.Connection,
    site_id: str,
    card_code: str,
    card: _LockedCard,
    loop: _Loop,
    station_id: str,
    now: datetime,
) -> None:
    # The real event, so the relay delivers it and stock and alerts apply it.
    emptied = CardEmptied(
        loop_id=loop.loop_id,
        card_code=card_code,
        item_id=loop.item_id,
        location_id=loop.supermarket_location_id,
        lot_id=card.lot_id,
        quantity=card.quantity,
        consumer_station_id=station_id,
    )
    await conn.execute(
        """WITH queued AS (
               INSERT INTO outbox (event_id, destination, site_id, event_type, payload, occurred_at)
               SELECT $1::uuid, destination, $3::text, $4::text, $5::jsonb, $6::timestamptz
               FROM unnest($2::text[]) AS destination
               RETURNING 1)
           SELECT pg_notify($7 || current_schema(), '') WHERE EXISTS (SELECT 1 FROM queued)""",
        uuid.uuid4(),
        DESTINATIONS,
        site_id,
        "CardEmptied",
        codec.dumps(emptied),
        now,
        CHANNEL_PREFIX,
    )


async def raise_signal(
    conn: asyncpg.Connection,
    site_id: str,
    card_code: str,
    card: _LockedCard,
    loop: _Loop,
    now: datetime,
) -> int:
    """Numbers the signal at the supplier, stores it, saves the card EMPTY and wakes the
    supplier's feeds: the signal's sequence."""
    sequence = await conn.fetchval(
        insert_signal_sql(saving_card=True),
        site_id,
        loop.supplier_station_id,
        loop.loop_id,
        card_code,
        loop.item_id,
        loop.container_quantity,
        "OPEN",
        now,
        SIGNALS_CHANNEL,
        # The card as Card.scan leaves it: EMPTY, no lot, no units.
        site_id,
        card_code,
        "EMPTY",
        "",
        0,
        now,
        now,
        card.started_at,
    )
    return int(sequence)


async def record_answer(
    conn: asyncpg.Connection, site_id: str, request_id: str, result: ScanResult
) -> None:
    await conn.execute(
        "UPDATE request_log SET response = $3 WHERE site_id = $1 AND request_id = $2",
        site_id,
        request_id,
        codec.dumps(result),
    )
