"""SQL for loops, cards, signals, instructions, lot holds and sizing policies. Functions
take the caller's connection."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from services.core.errors import NotFound
from services.stations.analytics import CardTrip, LoopShape, Safety
from services.stations.domain import (
    Card,
    CardState,
    FeedItem,
    Instruction,
    InstructionState,
    Item,
    Loop,
    LoopStatus,
    LotHold,
    LotHoldNotice,
    LotHoldStatus,
    Signal,
    SignalState,
    SignalWithdrawal,
    Site,
    Station,
    Withdrawal,
)
from services.stations.sizing import SizingPolicy

SIGNALS_CHANNEL = "kanban_signals"
# How many signals (and instructions, and lot hold notices) one read of a station's
# feed returns at most.
FEED_PAGE = 1000

_LOOP_COLUMNS = """site_id, loop_id, item_id, supplier_station_id, consumer_station_id,
                   supermarket_location_id, container_quantity, card_count, cards_to_retire"""
_CARD_COLUMNS = """site_id, card_code, loop_id, state, lot_id, quantity, updated_at, emptied_at,
                   started_at"""
_SIGNAL_COLUMNS = """site_id, station_id, sequence, loop_id, card_code, item_id, quantity,
                     state, raised_at"""
_HOLD_COLUMNS = "site_id, lot_id, item_id, reason, disposition_id, held_at"


def _of(alias: str, columns: str) -> str:
    """The columns, each named through a table alias: "c.site_id, c.card_code, ..."."""
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def _loop(row: asyncpg.Record) -> Loop:
    return Loop(**dict(row))


def _card(row: asyncpg.Record) -> Card:
    return Card(**{**dict(row), "state": CardState(row["state"])})


async def _with_holds(
    conn: asyncpg.Connection, site_id: str, rows: list[asyncpg.Record]
) -> list[Card]:
    """The cards, each FULL one with the hold on its lot if there is one.

    Read by a statement of its own after the one that locked the cards: under READ
    COMMITTED it sees a hold committed while that one waited for a card's lock,
    which a join in the locking statement would not.
    """
    cards = [_card(r) for r in rows]
    lots = sorted({c.lot_id for c in cards if c.state is CardState.FULL})
    if not lots:
        return cards
    holds = {
        r["lot_id"]: LotHold(**dict(r))
        for r in await conn.fetch(
            f"""SELECT {_HOLD_COLUMNS} FROM lot_holds
                WHERE site_id = $1 AND lot_id = ANY($2::text[])""",
            site_id,
            lots,
        )
    }
    for card in cards:
        if card.state is CardState.FULL:
            card.hold = holds.get(card.lot_id)
    return cards


def _signal(row: Mapping[str, Any]) -> Signal:
    return Signal(**{**dict(row), "state": SignalState(row["state"])})


# Master data. Each insert returns the row as stored, which may be an older one
# with the same key; the service layer compares.


async def insert_site(conn: asyncpg.Connection, site: Site) -> Site:
    await conn.execute(
        "INSERT INTO sites (site_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        site.site_id,
        site.name,
    )
    row = await conn.fetchrow("SELECT site_id, name FROM sites WHERE site_id = $1", site.site_id)
    return Site(**dict(row))


async def insert_station(conn: asyncpg.Connection, station: Station) -> Station:
    await conn.execute(
        """INSERT INTO stations (site_id, station_id, name) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        station.site_id,
        station.station_id,
        station.name,
    )
    row = await conn.fetchrow(
        "SELECT site_id, station_id, name FROM stations WHERE site_id = $1 AND station_id = $2",
        station.site_id,
        station.station_id,
    )
    return Station(**dict(row))


async def insert_item(conn: asyncpg.Connection, item: Item) -> Item:
    await conn.execute(
        """INSERT INTO items (site_id, item_id, description, unit_of_measure)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
        item.site_id,
        item.item_id,
        item.description,
        item.unit_of_measure,
    )
    row = await conn.fetchrow(
        """SELECT site_id, item_id, description, unit_of_measure FROM items
           WHERE site_id = $1 AND item_id = $2""",
        item.site_id,
        item.item_id,
    )
    return Item(**dict(row))


async def insert_loop(conn: asyncpg.Connection, loop: Loop) -> bool:
    """Inserts the loop; False if one with its id already exists."""
    inserted = await conn.fetchval(
        f"""INSERT INTO loops ({_LOOP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT DO NOTHING RETURNING true""",
        loop.site_id,
        loop.loop_id,
        loop.item_id,
        loop.supplier_station_id,
        loop.consumer_station_id,
        loop.supermarket_location_id,
        loop.container_quantity,
        loop.card_count,
        loop.cards_to_retire,
    )
    return bool(inserted)


async def require_site(conn: asyncpg.Connection, site_id: str) -> None:
    if not await conn.fetchval("SELECT true FROM sites WHERE site_id = $1", site_id):
        raise NotFound("site", site_id)


async def require_station(conn: asyncpg.Connection, site_id: str, station_id: str) -> None:
    if not await conn.fetchval(
        "SELECT true FROM stations WHERE site_id = $1 AND station_id = $2", site_id, station_id
    ):
        raise NotFound("station", station_id)


async def require_item(conn: asyncpg.Connection, site_id: str, item_id: str) -> None:
    if not await conn.fetchval(
        "SELECT true FROM items WHERE site_id = $1 AND item_id = $2", site_id, item_id
    ):
        raise NotFound("item", item_id)


async def loops_of(
    conn: asyncpg.Connection, site_id: str, loop_ids: Iterable[str]
) -> dict[str, Loop]:
    rows = await conn.fetch(
        f"SELECT {_LOOP_COLUMNS} FROM loops WHERE site_id = $1 AND loop_id = ANY($2::text[])",
        site_id,
        sorted(set(loop_ids)),
    )
    return {r["loop_id"]: _loop(r) for r in rows}


async def get_loop(
    conn: asyncpg.Connection, site_id: str, loop_id: str, *, lock: bool = False
) -> Loop:
    """The loop; with `lock`, locked until the transaction ends: resizes and the
    retirements they leave pending serialise on it."""
    row = await conn.fetchrow(
        f"""SELECT {_LOOP_COLUMNS} FROM loops WHERE site_id = $1 AND loop_id = $2
            {"FOR UPDATE" if lock else ""}""",
        site_id,
        loop_id,
    )
    if row is None:
        raise NotFound("loop", loop_id)
    return _loop(row)


async def lock_loops(conn: asyncpg.Connection, site_id: str, loop_ids: Iterable[str]) -> None:
    await conn.execute(
        """SELECT 1 FROM loops WHERE site_id = $1 AND loop_id = ANY($2::text[])
           ORDER BY loop_id FOR UPDATE""",
        site_id,
        sorted(set(loop_ids)),
    )


async def save_loop(conn: asyncpg.Connection, loop: Loop) -> None:
    await conn.execute(
        """UPDATE loops SET card_count = $3, cards_to_retire = $4
           WHERE site_id = $1 AND loop_id = $2""",
        loop.site_id,
        loop.loop_id,
        loop.card_count,
        loop.cards_to_retire,
    )


async def list_loops(
    conn: asyncpg.Connection, site_id: str, after_loop_id: str | None, limit: int
) -> list[Loop]:
    rows = await conn.fetch(
        f"""SELECT {_LOOP_COLUMNS} FROM loops WHERE site_id = $1 AND loop_id > $2
            ORDER BY loop_id LIMIT $3""",
        site_id,
        after_loop_id or "",
        limit,
    )
    return [_loop(r) for r in rows]


# Cards


async def insert_cards(conn: asyncpg.Connection, cards: list[Card]) -> None:
    await conn.executemany(
        f"INSERT INTO cards ({_CARD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                c.site_id,
                c.card_code,
                c.loop_id,
                c.state.value,
                c.lot_id,
                c.quantity,
                c.updated_at,
                c.emptied_at,
                c.started_at,
            )
            for c in cards
        ],
    )


# The scan's reads, named for tools/bench/scan_sql.py, which runs the same SQL.
LOCK_CARD = f"SELECT {_CARD_COLUMNS} FROM cards WHERE site_id = $1 AND card_code = $2 FOR UPDATE"
# $3: the lot whose hold to read with the loop, NULL for none.
LOOP_AND_HOLD = f"""SELECT {_of("l", _LOOP_COLUMNS)}, h.item_id AS hold_item_id,
                           h.reason AS hold_reason, h.disposition_id AS hold_disposition_id,
                           h.held_at AS hold_held_at
                    FROM loops l LEFT JOIN lot_holds h ON h.site_id = l.site_id AND h.lot_id = $3
                    WHERE l.site_id = $1 AND l.loop_id = $2"""


async def get_card(conn: asyncpg.Connection, site_id: str, card_code: str) -> Card:
    row = await conn.fetchrow(
        f"SELECT {_CARD_COLUMNS} FROM cards WHERE site_id = $1 AND card_code = $2",
        site_id,
        card_code,
    )
    if row is None:
        raise NotFound("card", card_code)
    (card,) = await _with_holds(conn, site_id, [row])
    return card


async def lock_card(conn: asyncpg.Connection, site_id: str, card_code: str) -> Card:
    """The card, locked until the transaction ends: its transitions serialise on this."""
    (card,) = await _with_holds(conn, site_id, [await _locked_card_row(conn, site_id, card_code)])
    return card


async def _locked_card_row(
    conn: asyncpg.Connection, site_id: str, card_code: str
) -> asyncpg.Record:
    row = await conn.fetchrow(LOCK_CARD, site_id, card_code)
    if row is None:
        raise NotFound("card", card_code)
    return row


async def lock_card_in_loop(
    conn: asyncpg.Connection, site_id: str, card_code: str
) -> tuple[Card, Loop]:
    """The card locked, as lock_card, and its loop: the loop and the hold on the
    card's lot are read by one statement after the lock (why after: _with_holds)."""
    card = _card(await _locked_card_row(conn, site_id, card_code))
    found = await conn.fetchrow(
        LOOP_AND_HOLD,
        site_id,
        card.loop_id,
        card.lot_id if card.state is CardState.FULL else None,
    )
    if found is None:
        raise NotFound("loop", card.loop_id)
    fields = dict(found)
    hold = {name: fields.pop(f"hold_{name}") for name in _HOLD_COLUMNS.split(", ")[2:]}
    if hold["held_at"] is not None:
        card.hold = LotHold(site_id=site_id, lot_id=card.lot_id, **hold)
    return card, Loop(**fields)


async def lock_oldest_card_to_start(
    conn: asyncpg.Connection, site_id: str, station_id: str
) -> Card | None:
    """The EMPTY card behind the station's oldest open signal that no one else holds."""
    row = await conn.fetchrow(
        f"""SELECT {_of("c", _CARD_COLUMNS)}
            FROM signals s JOIN cards c USING (site_id, card_code)
            WHERE s.site_id = $1 AND s.station_id = $2 AND s.state = 'OPEN'
              AND c.state = 'EMPTY'
            ORDER BY s.sequence LIMIT 1
            FOR UPDATE OF c SKIP LOCKED""",
        site_id,
        station_id,
    )
    return _card(row) if row else None


async def lock_full_cards_of_lot(conn: asyncpg.Connection, site_id: str, lot_id: str) -> list[Card]:
    """The FULL cards holding the lot, locked in code order. A scan holding one of
    them is waited for; if it emptied the card, the card is left out."""
    rows = await conn.fetch(
        f"""SELECT {_CARD_COLUMNS} FROM cards
            WHERE site_id = $1 AND lot_id = $2 AND state = 'FULL'
            ORDER BY card_code FOR UPDATE""",
        site_id,
        lot_id,
    )
    return await _with_holds(conn, site_id, rows)


async def cards_of_loop(conn: asyncpg.Connection, site_id: str, loop_id: str) -> list[Card]:
    """The loop's cards, retired ones left out."""
    rows = await conn.fetch(
        f"""SELECT {_CARD_COLUMNS} FROM cards
            WHERE site_id = $1 AND loop_id = $2 AND state <> 'RETIRED'
            ORDER BY card_code""",
        site_id,
        loop_id,
    )
    return await _with_holds(conn, site_id, rows)


async def numbered_cards(conn: asyncpg.Connection, site_id: str, loop_id: str) -> int:
    """How many cards the loop ever had, retired ones too: new cards' codes follow."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM cards WHERE site_id = $1 AND loop_id = $2", site_id, loop_id
        )
    )


async def lock_waiting_cards(conn: asyncpg.Connection, site_id: str, loop_id: str) -> list[Card]:
    """The loop's EMPTY cards whose signal no one started, newest signal first: the
    first to retire are those their supplier would get to last. A card someone is
    starting right now is skipped rather than waited for."""
    rows = await conn.fetch(
        f"""SELECT {_of("c", _CARD_COLUMNS)}
            FROM signals s JOIN cards c USING (site_id, card_code)
            WHERE c.site_id = $1 AND c.loop_id = $2 AND c.state = 'EMPTY'
              AND s.state = 'OPEN'
            ORDER BY s.sequence DESC
            FOR UPDATE OF c SKIP LOCKED""",
        site_id,
        loop_id,
    )
    return [_card(r) for r in rows]


def _save_card(first: int) -> str:
    """The UPDATE that saves a card, its parameters (_card_values) from $first on."""
    site, code, state, lot, quantity, updated, emptied, started = (
        f"${n}" for n in range(first, first + 8)
    )
    return f"""UPDATE cards SET state = {state}, lot_id = {lot}, quantity = {quantity},
                   updated_at = {updated}, emptied_at = {emptied}, started_at = {started}
               WHERE site_id = {site} AND card_code = {code}"""


def _card_values(card: Card) -> tuple[object, ...]:
    return (
        card.site_id,
        card.card_code,
        card.state.value,
        card.lot_id,
        card.quantity,
        card.updated_at,
        card.emptied_at,
        card.started_at,
    )


async def save_card(conn: asyncpg.Connection, card: Card) -> None:
    await conn.execute(_save_card(1), *_card_values(card))


# Signals


async def next_sequence(conn: asyncpg.Connection, site_id: str, station_id: str) -> int:
    """Bumps the sequence of what the station is sent (signals, instructions,
    withdrawals). The row stays locked until commit, so a higher sequence never
    becomes visible before a lower one."""
    sequence = await conn.fetchval(
        """UPDATE stations SET last_sequence = last_sequence + 1
           WHERE site_id = $1 AND station_id = $2 RETURNING last_sequence""",
        site_id,
        station_id,
    )
    return int(sequence)


async def lock_stations(conn: asyncpg.Connection, site_id: str, station_ids: Iterable[str]) -> None:
    """Locks the stations' rows in one order before their sequences are bumped one by
    one, so that two transactions bumping several stations never wait in a circle."""
    await conn.execute(
        """SELECT 1 FROM stations WHERE site_id = $1 AND station_id = ANY($2::text[])
           ORDER BY station_id FOR UPDATE""",
        site_id,
        sorted(set(station_ids)),
    )


def insert_signal_sql(*, saving_card: bool) -> str:
    """insert_signal's statement (tools/bench/scan_sql.py runs it too): the signal's
    fields $1..$8, the channel $9, and with `saving_card` the card from $10 on."""
    saving = f", saved AS ({_save_card(10)})" if saving_card else ""
    return f"""WITH numbered AS (
                   UPDATE stations SET last_sequence = last_sequence + 1
                   WHERE site_id = $1 AND station_id = $2 RETURNING last_sequence),
               inserted AS (
                   INSERT INTO signals ({_SIGNAL_COLUMNS})
                   SELECT $1, $2, last_sequence, $3::text, $4::text, $5::text, $6::bigint,
                          $7::text, $8::timestamptz
                   FROM numbered RETURNING sequence){saving}
               -- Delivered at commit, to every replica listening.
               SELECT sequence, pg_notify($9, $1 || '/' || $2) FROM inserted"""


async def insert_signal(
    conn: asyncpg.Connection, signal: Signal, card: Card | None = None
) -> Signal:
    """Inserts the signal under its supplier station's next sequence (next_sequence's
    rules hold) and returns it so numbered; saves `card` too, if given, as save_card
    would. One statement, one round trip."""
    sequence = await conn.fetchval(
        insert_signal_sql(saving_card=card is not None),
        signal.site_id,
        signal.station_id,
        signal.loop_id,
        signal.card_code,
        signal.item_id,
        signal.quantity,
        signal.state.value,
        signal.raised_at,
        SIGNALS_CHANNEL,
        *(_card_values(card) if card else ()),
    )
    return replace(signal, sequence=int(sequence))


async def active_signal(conn: asyncpg.Connection, site_id: str, card_code: str) -> Signal:
    row = await conn.fetchrow(
        f"""SELECT {_SIGNAL_COLUMNS} FROM signals
            WHERE site_id = $1 AND card_code = $2 AND state IN ('OPEN', 'STARTED')""",
        site_id,
        card_code,
    )
    if row is None:
        raise NotFound("signal", card_code)
    return _signal(row)


async def set_signal_state(
    conn: asyncpg.Connection, signal: Signal, state: SignalState, now: datetime
) -> Signal:
    column = {SignalState.STARTED: "started_at", SignalState.COMPLETED: "completed_at"}[state]
    await conn.execute(
        f"""UPDATE signals SET state = $4, {column} = $5
            WHERE site_id = $1 AND station_id = $2 AND sequence = $3""",
        signal.site_id,
        signal.station_id,
        signal.sequence,
        state.value,
        now,
    )
    signal.state = state
    return signal


async def withdraw_signal(conn: asyncpg.Connection, signal: Signal, sequence: int) -> None:
    await conn.execute(
        """UPDATE signals SET state = 'WITHDRAWN', withdrawn_sequence = $4
           WHERE site_id = $1 AND station_id = $2 AND sequence = $3""",
        signal.site_id,
        signal.station_id,
        signal.sequence,
        sequence,
    )
    signal.state = SignalState.WITHDRAWN
    await notify_station(conn, signal.site_id, signal.station_id)


async def last_sequence(conn: asyncpg.Connection, site_id: str, station_id: str) -> int:
    value = await conn.fetchval(
        "SELECT last_sequence FROM stations WHERE site_id = $1 AND station_id = $2",
        site_id,
        station_id,
    )
    if value is None:
        raise NotFound("station", station_id)
    return int(value)


# Board


async def loop_statuses(conn: asyncpg.Connection, site_id: str | None) -> list[LoopStatus]:
    """Every loop's cards by state; all sites when site_id is None."""
    rows = await conn.fetch(
        f"""SELECT {_of("l", _LOOP_COLUMNS)},
                   count(*) FILTER (WHERE c.state = 'FULL') AS full_cards,
                   count(*) FILTER (WHERE c.state = 'EMPTY') AS empty_cards,
                   count(*) FILTER (WHERE c.state = 'IN_PROCESS') AS in_process_cards,
                   coalesce(sum(c.quantity) FILTER (WHERE c.state = 'FULL'), 0)::bigint
                       AS units_in_supermarket,
                   l.container_quantity * count(*) FILTER (WHERE c.state = 'IN_PROCESS')
                       AS units_in_process,
                   count(*) FILTER (WHERE c.state = 'FULL' AND h.lot_id IS NOT NULL)
                       AS quarantined_cards
            FROM loops l JOIN cards c USING (site_id, loop_id)
                 LEFT JOIN lot_holds h ON h.site_id = c.site_id AND h.lot_id = c.lot_id
            WHERE $1::text IS NULL OR l.site_id = $1
            GROUP BY l.site_id, l.loop_id
            ORDER BY l.site_id, l.loop_id""",
        site_id,
    )
    loop_fields = set(Loop.__dataclass_fields__)
    return [
        LoopStatus(
            loop=Loop(**{k: v for k, v in dict(r).items() if k in loop_fields}),
            full_cards=r["full_cards"],
            empty_cards=r["empty_cards"],
            in_process_cards=r["in_process_cards"],
            units_in_supermarket=r["units_in_supermarket"],
            units_in_process=r["units_in_process"],
            quarantined_cards=r["quarantined_cards"],
        )
        for r in rows
    ]


async def open_signal_counts(conn: asyncpg.Connection, site_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT station_id, count(*) AS n FROM signals
           WHERE site_id = $1 AND state = 'OPEN' GROUP BY station_id""",
        site_id,
    )
    return {r["station_id"]: r["n"] for r in rows}


# Instructions

_INSTRUCTION_COLUMNS = """site_id, instruction_id, erp_order_id, station_id, item_id, location_id,
                          quantity, due_time, priority, state, sequence, lot_id, made_quantity,
                          started_at"""


def _instruction(row: Mapping[str, Any]) -> Instruction:
    return Instruction(**{**dict(row), "state": InstructionState(row["state"])})


async def station_exists(conn: asyncpg.Connection, site_id: str, station_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM stations WHERE site_id = $1 AND station_id = $2",
            site_id,
            station_id,
        )
    )


async def insert_instruction(conn: asyncpg.Connection, instruction: Instruction) -> None:
    await conn.execute(
        f"""INSERT INTO instructions ({_INSTRUCTION_COLUMNS}, first_sequence, released_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $11, now())
            ON CONFLICT DO NOTHING""",
        instruction.site_id,
        instruction.instruction_id,
        instruction.erp_order_id,
        instruction.station_id,
        instruction.item_id,
        instruction.location_id,
        instruction.quantity,
        instruction.due_time,
        instruction.priority,
        instruction.state.value,
        instruction.sequence,
        instruction.lot_id,
        instruction.made_quantity,
        instruction.started_at,
    )
    await notify_station(conn, instruction.site_id, instruction.station_id)


async def notify_station(conn: asyncpg.Connection, site_id: str, station_id: str) -> None:
    """Wakes the station's streams, in every replica, when the transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", SIGNALS_CHANNEL, f"{site_id}/{station_id}")


async def lock_instruction(
    conn: asyncpg.Connection, site_id: str, instruction_id: str
) -> Instruction:
    row = await conn.fetchrow(
        f"""SELECT {_INSTRUCTION_COLUMNS} FROM instructions
            WHERE site_id = $1 AND instruction_id = $2 FOR UPDATE""",
        site_id,
        instruction_id,
    )
    if row is None:
        raise NotFound("instruction", instruction_id)
    return _instruction(row)


async def lock_most_urgent_instruction(
    conn: asyncpg.Connection, site_id: str, station_id: str
) -> Instruction | None:
    """The open instruction due first (then highest priority) that no one else holds."""
    row = await conn.fetchrow(
        f"""SELECT {_INSTRUCTION_COLUMNS} FROM instructions
            WHERE site_id = $1 AND station_id = $2 AND state = 'OPEN'
            ORDER BY due_time, priority DESC, sequence LIMIT 1
            FOR UPDATE SKIP LOCKED""",
        site_id,
        station_id,
    )
    return _instruction(row) if row else None


async def lock_instructions_of_order(
    conn: asyncpg.Connection, site_id: str, erp_order_id: str
) -> list[Instruction]:
    rows = await conn.fetch(
        f"""SELECT {_INSTRUCTION_COLUMNS} FROM instructions
            WHERE site_id = $1 AND erp_order_id = $2 ORDER BY instruction_id FOR UPDATE""",
        site_id,
        erp_order_id,
    )
    return [_instruction(r) for r in rows]


async def save_instruction(conn: asyncpg.Connection, instruction: Instruction) -> None:
    await conn.execute(
        """UPDATE instructions SET state = $3, quantity = $4, sequence = $5, lot_id = $6,
                                   made_quantity = $7, started_at = $8
           WHERE site_id = $1 AND instruction_id = $2""",
        instruction.site_id,
        instruction.instruction_id,
        instruction.state.value,
        instruction.quantity,
        instruction.sequence,
        instruction.lot_id,
        instruction.made_quantity,
        instruction.started_at,
    )


async def withdraw_instruction(
    conn: asyncpg.Connection, instruction: Instruction, sequence: int
) -> None:
    await conn.execute(
        """UPDATE instructions SET state = 'WITHDRAWN', withdrawn_sequence = $3
           WHERE site_id = $1 AND instruction_id = $2""",
        instruction.site_id,
        instruction.instruction_id,
        sequence,
    )
    instruction.state = InstructionState.WITHDRAWN
    await notify_station(conn, instruction.site_id, instruction.station_id)


async def open_instruction_counts(conn: asyncpg.Connection, site_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT station_id, count(*) AS n FROM instructions
           WHERE site_id = $1 AND state = 'OPEN' GROUP BY station_id""",
        site_id,
    )
    return {r["station_id"]: r["n"] for r in rows}


# Lot holds

_NOTICE_COLUMNS = """site_id, station_id, held_sequence, lot_id, item_id, reason, card_codes,
                     status, lifted_sequence"""


def _notice(row: Mapping[str, Any]) -> LotHoldNotice:
    fields = dict(row)
    lifted_sequence = fields.pop("lifted_sequence")
    return LotHoldNotice(
        **{
            **fields,
            "status": LotHoldStatus(row["status"]),
            "sequence": lifted_sequence or row["held_sequence"],
        }
    )


async def insert_lot_hold(conn: asyncpg.Connection, hold: LotHold) -> bool:
    """Records the hold; False if the lot was already held."""
    inserted = await conn.fetchval(
        f"""INSERT INTO lot_holds ({_HOLD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT DO NOTHING RETURNING true""",
        hold.site_id,
        hold.lot_id,
        hold.item_id,
        hold.reason,
        hold.disposition_id,
        hold.held_at,
    )
    return bool(inserted)


async def delete_lot_hold(conn: asyncpg.Connection, site_id: str, lot_id: str) -> None:
    await conn.execute("DELETE FROM lot_holds WHERE site_id = $1 AND lot_id = $2", site_id, lot_id)


async def insert_hold_notice(conn: asyncpg.Connection, notice: LotHoldNotice) -> None:
    await conn.execute(
        f"""INSERT INTO lot_hold_notices ({_NOTICE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)""",
        notice.site_id,
        notice.station_id,
        notice.held_sequence,
        notice.lot_id,
        notice.item_id,
        notice.reason,
        notice.card_codes,
        notice.status.value,
    )
    await notify_station(conn, notice.site_id, notice.station_id)


async def lock_held_notices(
    conn: asyncpg.Connection, site_id: str, lot_id: str
) -> list[LotHoldNotice]:
    """The stations told of the hold on the lot and not yet of its lifting."""
    rows = await conn.fetch(
        f"""SELECT {_NOTICE_COLUMNS} FROM lot_hold_notices
            WHERE site_id = $1 AND lot_id = $2 AND status = 'HELD'
            ORDER BY station_id FOR UPDATE""",
        site_id,
        lot_id,
    )
    return [_notice(r) for r in rows]


async def lift_hold_notice(conn: asyncpg.Connection, notice: LotHoldNotice) -> None:
    await conn.execute(
        """UPDATE lot_hold_notices SET status = $4, card_codes = $5, lifted_sequence = $6
           WHERE site_id = $1 AND station_id = $2 AND held_sequence = $3""",
        notice.site_id,
        notice.station_id,
        notice.held_sequence,
        notice.status.value,
        notice.card_codes,
        notice.sequence,
    )
    await notify_station(conn, notice.site_id, notice.station_id)


# Feeds

# A station's feed: its open signals, withdrawals, open instructions and lot hold
# notices after the cursor, at most a page of each. One statement is one snapshot,
# so a signal committed between two of the reads cannot be passed over by the
# cursor, moved on by a later item; and a supplier's wake-up is one round trip.
_FEED = f"""SELECT
    ARRAY(SELECT row({_SIGNAL_COLUMNS}) FROM signals
          WHERE site_id = $1 AND station_id = $2 AND state = 'OPEN' AND sequence > $3
          ORDER BY sequence LIMIT $4) AS signals,
    ARRAY(SELECT row({_SIGNAL_COLUMNS}, withdrawn_sequence) FROM signals
          WHERE site_id = $1 AND station_id = $2 AND state = 'WITHDRAWN'
            AND withdrawn_sequence > $3
          ORDER BY withdrawn_sequence LIMIT $4) AS withdrawn,
    ARRAY(SELECT row({_INSTRUCTION_COLUMNS}, withdrawn_sequence, first_sequence)
          FROM instructions
          WHERE site_id = $1 AND station_id = $2
            AND ((state = 'OPEN' AND sequence > $3)
                 OR (state = 'WITHDRAWN' AND withdrawn_sequence > $3))
          ORDER BY coalesce(withdrawn_sequence, sequence) LIMIT $4) AS instructions,
    ARRAY(SELECT row({_NOTICE_COLUMNS}) FROM lot_hold_notices
          WHERE site_id = $1 AND station_id = $2
            AND ((status = 'HELD' AND held_sequence > $3) OR lifted_sequence > $3)
          ORDER BY coalesce(lifted_sequence, held_sequence) LIMIT $4) AS notices"""


def _named(columns: str, values: Sequence[Any]) -> dict[str, Any]:
    """An anonymous row (a tuple) as a mapping, by the column list it was built from."""
    return dict(zip((c.strip() for c in columns.split(",")), values, strict=True))


async def feed_after(
    conn: asyncpg.Connection, site_id: str, station_id: str, after_sequence: int
) -> list[FeedItem]:
    """The station's open signals, open instructions, withdrawals and lot hold notices
    after the cursor, in sequence order, at most a page of each."""
    row = await conn.fetchrow(_FEED, site_id, station_id, after_sequence, FEED_PAGE)
    signals = [_signal(_named(_SIGNAL_COLUMNS, values)) for values in row["signals"]]
    withdrawn = [
        SignalWithdrawal(_signal(_named(_SIGNAL_COLUMNS, values[:-1])), values[-1])
        for values in row["withdrawn"]
    ]
    instructions: list[Instruction | Withdrawal] = []
    for values in row["instructions"]:
        *fields, withdrawn_sequence, first_sequence = values
        instruction = _instruction(_named(_INSTRUCTION_COLUMNS, fields))
        instructions.append(
            instruction
            if withdrawn_sequence is None
            else Withdrawal(instruction, withdrawn_sequence, first_sequence)
        )
    notices = [_notice(_named(_NOTICE_COLUMNS, values)) for values in row["notices"]]
    feed: list[FeedItem] = sorted(
        [*signals, *withdrawn, *instructions, *notices], key=lambda i: i.sequence
    )
    # A full page may have more after it: stop where the first full page ends, so
    # that the cursor never jumps over what the other pages did not reach.
    pages: tuple[Sequence[FeedItem], ...] = (signals, withdrawn, instructions, notices)
    horizon = min(
        (page[-1].sequence for page in pages if len(page) == FEED_PAGE),
        default=None,
    )
    return [item for item in feed if horizon is None or item.sequence <= horizon]


async def site_ids(conn: asyncpg.Connection) -> list[str]:
    return [r["site_id"] for r in await conn.fetch("SELECT site_id FROM sites ORDER BY site_id")]


# Analysis


async def loop_shapes(conn: asyncpg.Connection, site_id: str) -> list[LoopShape]:
    rows = await conn.fetch(
        """SELECT loop_id, supplier_station_id, consumer_station_id, container_quantity,
                  card_count
           FROM loops WHERE site_id = $1 ORDER BY loop_id""",
        site_id,
    )
    return [LoopShape(**dict(row)) for row in rows]


async def card_trips(
    conn: asyncpg.Connection, site_id: str, start: datetime, end: datetime, loop_id: str = ""
) -> list[CardTrip]:
    """The trips that overlap [start, end): raised in it, or raised before and not back
    FULL by its start. A withdrawn signal's card retired: it made no trip."""
    rows = await conn.fetch(
        """SELECT loop_id, card_code, raised_at, started_at, completed_at FROM signals
           WHERE site_id = $1 AND state <> 'WITHDRAWN' AND ($4 = '' OR loop_id = $4)
             AND raised_at < $3 AND (raised_at >= $2 OR completed_at IS NULL OR completed_at >= $2)
           ORDER BY raised_at""",
        site_id,
        start,
        end,
        loop_id,
    )
    return [CardTrip(**dict(row)) for row in rows]


_POLICY_COLUMNS = """site_id, loop_id, enabled, min_cards, max_cards, safety_factor,
                     service_level, period, "window", checked_at, resized_at"""


def _policy(row: Mapping[str, Any]) -> SizingPolicy:
    values = dict(row)
    safety = Safety(values.pop("safety_factor"), values.pop("service_level"))
    return SizingPolicy(**values, safety=safety)


async def save_sizing_policy(conn: asyncpg.Connection, policy: SizingPolicy) -> None:
    await conn.execute(
        f"""INSERT INTO sizing_policies ({_POLICY_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (site_id, loop_id) DO UPDATE SET
                enabled = $3, min_cards = $4, max_cards = $5, safety_factor = $6,
                service_level = $7, period = $8, "window" = $9, checked_at = $10,
                resized_at = $11""",
        policy.site_id,
        policy.loop_id,
        policy.enabled,
        policy.min_cards,
        policy.max_cards,
        policy.safety.factor,
        policy.safety.service_level,
        policy.period,
        policy.window,
        policy.checked_at,
        policy.resized_at,
    )


async def sizing_policies(conn: asyncpg.Connection, site_id: str) -> dict[str, SizingPolicy]:
    rows = await conn.fetch(
        f"SELECT {_POLICY_COLUMNS} FROM sizing_policies WHERE site_id = $1", site_id
    )
    return {row["loop_id"]: _policy(row) for row in rows}


async def get_sizing_policy(
    conn: asyncpg.Connection, site_id: str, loop_id: str
) -> SizingPolicy | None:
    row = await conn.fetchrow(
        f"SELECT {_POLICY_COLUMNS} FROM sizing_policies WHERE site_id = $1 AND loop_id = $2",
        site_id,
        loop_id,
    )
    return None if row is None else _policy(row)


async def due_sizing_policies(conn: asyncpg.Connection, now: datetime) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT site_id, loop_id FROM sizing_policies
           WHERE enabled AND (checked_at IS NULL OR checked_at + period <= $1)
           ORDER BY site_id, loop_id""",
        now,
    )
    return [(row["site_id"], row["loop_id"]) for row in rows]


async def lock_due_sizing_policy(
    conn: asyncpg.Connection, site_id: str, loop_id: str, now: datetime
) -> SizingPolicy | None:
    """The policy, locked, if it is still due: another replica may have just applied it."""
    row = await conn.fetchrow(
        f"""SELECT {_POLICY_COLUMNS} FROM sizing_policies
            WHERE site_id = $1 AND loop_id = $2 AND enabled
              AND (checked_at IS NULL OR checked_at + period <= $3)
            FOR UPDATE SKIP LOCKED""",
        site_id,
        loop_id,
        now,
    )
    return None if row is None else _policy(row)
