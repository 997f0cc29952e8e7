"""SQL for the stock service: master data, the ledger, lots, quality, counts,
thresholds and genealogy. Rows in, domain objects out."""

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.core.errors import NotFound
from services.stock.domain import (
    Count,
    CountLine,
    CountState,
    Disposition,
    Entry,
    Item,
    Location,
    LocationKind,
    Lot,
    LotStatus,
    MovementKind,
    Outcome,
    ReceiptSource,
    Threshold,
    ThresholdState,
    Warehouse,
)

# Master data


async def insert_warehouse(conn: asyncpg.Connection, warehouse: Warehouse) -> Warehouse:
    await conn.execute(
        """INSERT INTO warehouses (site_id, warehouse_id, name) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        warehouse.site_id,
        warehouse.warehouse_id,
        warehouse.name,
    )
    row = await conn.fetchrow(
        "SELECT * FROM warehouses WHERE site_id = $1 AND warehouse_id = $2",
        warehouse.site_id,
        warehouse.warehouse_id,
    )
    return Warehouse(**dict(row))


async def require_warehouse(conn: asyncpg.Connection, site_id: str, warehouse_id: str) -> None:
    if not await conn.fetchval(
        "SELECT true FROM warehouses WHERE site_id = $1 AND warehouse_id = $2",
        site_id,
        warehouse_id,
    ):
        raise NotFound("warehouse", warehouse_id)


def _location(row: asyncpg.Record) -> Location:
    return Location(
        row["site_id"], row["location_id"], row["warehouse_id"], LocationKind(row["kind"])
    )


# Inserts a row unless its key exists, and returns what is stored, in one round trip
# (a location or item created, or one a loop names). A row that a transaction still
# open inserts meanwhile is not in this statement's snapshot: then read again.
_INSERTED_OR_STORED = """WITH inserted AS ({insert} ON CONFLICT DO NOTHING RETURNING *)
    SELECT * FROM inserted UNION ALL SELECT * FROM {table} WHERE {key} LIMIT 1"""
_INSERT_LOCATION = _INSERTED_OR_STORED.format(
    insert="""INSERT INTO locations (site_id, location_id, warehouse_id, kind)
              VALUES ($1, $2, $3, $4)""",
    table="locations",
    key="site_id = $1 AND location_id = $2",
)
_INSERT_ITEM = _INSERTED_OR_STORED.format(
    insert="INSERT INTO items (site_id, item_id, unit_of_measure) VALUES ($1, $2, $3)",
    table="items",
    key="site_id = $1 AND item_id = $2",
)


async def insert_location(conn: asyncpg.Connection, location: Location) -> Location:
    """Inserts the location unless it exists; returns what is stored."""
    row = await conn.fetchrow(
        _INSERT_LOCATION,
        location.site_id,
        location.location_id,
        location.warehouse_id,
        location.kind.value,
    )
    if row is None:
        return await get_location(conn, location.site_id, location.location_id)
    return _location(row)


async def learn_location_and_item(conn: asyncpg.Connection, location: Location, item: Item) -> None:
    """Makes sure a location and an item exist, as given unless already stored: one
    round trip for what every kanban move needs."""
    await conn.execute(
        """WITH location AS (
               INSERT INTO locations (site_id, location_id, warehouse_id, kind)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING)
           INSERT INTO items (site_id, item_id, unit_of_measure) VALUES ($1, $5, $6)
           ON CONFLICT DO NOTHING""",
        location.site_id,
        location.location_id,
        location.warehouse_id,
        location.kind.value,
        item.item_id,
        item.unit_of_measure,
    )


async def get_location(conn: asyncpg.Connection, site_id: str, location_id: str) -> Location:
    row = await conn.fetchrow(
        "SELECT * FROM locations WHERE site_id = $1 AND location_id = $2", site_id, location_id
    )
    if row is None:
        raise NotFound("location", location_id)
    return _location(row)


async def list_locations(
    conn: asyncpg.Connection,
    site_id: str,
    warehouse_id: str,
    kind: LocationKind | None,
    after: str | None,
    limit: int,
) -> list[Location]:
    rows = await conn.fetch(
        """SELECT * FROM locations
           WHERE site_id = $1 AND ($2 = '' OR warehouse_id = $2)
             AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR location_id > $4)
           ORDER BY location_id LIMIT $5""",
        site_id,
        warehouse_id,
        kind.value if kind else None,
        after,
        limit,
    )
    return [_location(r) for r in rows]


async def define_supermarket(
    conn: asyncpg.Connection, site_id: str, location_id: str, item_id: str, cap_units: int
) -> None:
    await insert_location(conn, Location(site_id, location_id, "", LocationKind.SUPERMARKET))
    await conn.execute(
        """INSERT INTO location_caps (site_id, location_id, item_id, cap_units)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (site_id, location_id, item_id) DO UPDATE SET cap_units = $4""",
        site_id,
        location_id,
        item_id,
        cap_units,
    )


async def insert_item(conn: asyncpg.Connection, item: Item) -> Item:
    """Inserts the item unless it exists; returns what is stored."""
    row = await conn.fetchrow(_INSERT_ITEM, item.site_id, item.item_id, item.unit_of_measure)
    if row is None:
        return await get_item(conn, item.site_id, item.item_id)
    return Item(**dict(row))


async def upsert_item(conn: asyncpg.Connection, item: Item) -> None:
    await conn.execute(
        """INSERT INTO items (site_id, item_id, unit_of_measure) VALUES ($1, $2, $3)
           ON CONFLICT (site_id, item_id) DO UPDATE SET unit_of_measure = $3""",
        item.site_id,
        item.item_id,
        item.unit_of_measure,
    )


async def get_item(conn: asyncpg.Connection, site_id: str, item_id: str) -> Item:
    row = await conn.fetchrow(
        "SELECT * FROM items WHERE site_id = $1 AND item_id = $2", site_id, item_id
    )
    if row is None:
        raise NotFound("item", item_id)
    return Item(**dict(row))


# Lots


def _lot(row: asyncpg.Record) -> Lot:
    values = dict(row)
    values["status"] = LotStatus(values["status"])
    values["source"] = ReceiptSource(values["source"])
    return Lot(**values)


async def find_lot(conn: asyncpg.Connection, site_id: str, lot_id: str) -> Lot | None:
    """The lot, locked: every movement of a lot, and every change of its status, queue here."""
    row = await conn.fetchrow(
        "SELECT * FROM lots WHERE site_id = $1 AND lot_id = $2 FOR UPDATE", site_id, lot_id
    )
    return None if row is None else _lot(row)


async def lock_lot(conn: asyncpg.Connection, site_id: str, lot_id: str) -> Lot:
    lot = await find_lot(conn, site_id, lot_id)
    if lot is None:
        raise NotFound("lot", lot_id)
    return lot


async def get_lot(conn: asyncpg.Connection, site_id: str, lot_id: str) -> Lot:
    row = await conn.fetchrow(
        "SELECT * FROM lots WHERE site_id = $1 AND lot_id = $2", site_id, lot_id
    )
    if row is None:
        raise NotFound("lot", lot_id)
    return _lot(row)


async def insert_lot(conn: asyncpg.Connection, lot: Lot) -> bool:
    """Creates the lot; False if a concurrent first receipt of it created it first."""
    inserted = await conn.fetchval(
        """INSERT INTO lots (site_id, lot_id, item_id, status, source, origin_id, hold_reason,
                             disposition_id, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT DO NOTHING RETURNING true""",
        lot.site_id,
        lot.lot_id,
        lot.item_id,
        lot.status.value,
        lot.source.value,
        lot.origin_id,
        lot.hold_reason,
        lot.disposition_id,
        lot.created_at,
    )
    return bool(inserted)


async def save_lot(conn: asyncpg.Connection, lot: Lot) -> None:
    await conn.execute(
        """UPDATE lots SET status = $3, hold_reason = $4, disposition_id = $5
           WHERE site_id = $1 AND lot_id = $2""",
        lot.site_id,
        lot.lot_id,
        lot.status.value,
        lot.hold_reason,
        lot.disposition_id,
    )


async def lot_on_hand(conn: asyncpg.Connection, site_id: str, lot_id: str) -> int:
    value = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM on_hand WHERE site_id = $1 AND lot_id = $2",
        site_id,
        lot_id,
    )
    return int(value)


async def lot_locations(
    conn: asyncpg.Connection, site_id: str, lot_id: str
) -> list[tuple[str, int]]:
    """Where the lot is, with how much, in location order."""
    rows = await conn.fetch(
        """SELECT location_id, quantity FROM on_hand
           WHERE site_id = $1 AND lot_id = $2 AND quantity > 0 ORDER BY location_id""",
        site_id,
        lot_id,
    )
    return [(r["location_id"], int(r["quantity"])) for r in rows]


# The ledger


async def lock_cap(
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


async def lock_on_hand(
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


async def insert_entry(conn: asyncpg.Connection, entry: Entry, event_id: str | None) -> Entry:
    """Appends to the ledger and keeps on_hand, its running sum, in step: one statement."""
    movement_id = await conn.fetchval(
        # The row as first inserted must pass the CHECK too, hence greatest(); a
        # withdrawal always finds its row, since check_take saw the quantity there.
        """WITH kept AS (
               INSERT INTO on_hand (site_id, location_id, item_id, lot_id, quantity)
               VALUES ($1, $4, $5, $6, greatest($7::bigint, 0))
               ON CONFLICT (site_id, location_id, item_id, lot_id)
               DO UPDATE SET quantity = on_hand.quantity + $7)
           INSERT INTO movements (site_id, event_id, kind, location_id, item_id, lot_id, quantity,
                                  actor, reason, reference, request_id, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
        entry.site_id,
        event_id,
        entry.kind.value,
        entry.location_id,
        entry.item_id,
        entry.lot_id,
        entry.quantity,
        entry.actor,
        entry.reason,
        entry.reference,
        entry.request_id,
        entry.occurred_at,
    )
    return Entry(**{**entry.__dict__, "movement_id": int(movement_id)})


async def record_refusal(
    conn: asyncpg.Connection, entry: Entry, reason: str, detail: str, event_id: str
) -> None:
    await conn.execute(
        """INSERT INTO refused_movements (site_id, event_id, kind, location_id, item_id,
                                          lot_id, quantity, reason, detail, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        entry.site_id,
        event_id,
        entry.kind.value,
        entry.location_id,
        entry.item_id,
        entry.lot_id,
        abs(entry.quantity),
        reason,
        detail,
        entry.occurred_at,
    )


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(
        site_id=row["site_id"],
        kind=MovementKind(row["kind"]),
        location_id=row["location_id"],
        item_id=row["item_id"],
        lot_id=row["lot_id"],
        quantity=int(row["quantity"]),
        actor=row["actor"],
        reason=row["reason"],
        reference=row["reference"],
        request_id=row["request_id"],
        occurred_at=row["occurred_at"],
        movement_id=int(row["id"]),
    )


async def list_movements(
    conn: asyncpg.Connection,
    site_id: str,
    item_id: str,
    location_id: str,
    lot_id: str,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[Entry]:
    rows = await conn.fetch(
        """SELECT * FROM movements
           WHERE site_id = $1 AND ($2 = '' OR item_id = $2) AND ($3 = '' OR location_id = $3)
             AND ($4 = '' OR lot_id = $4)
             AND ($5::timestamptz IS NULL OR occurred_at >= $5)
             AND ($6::timestamptz IS NULL OR occurred_at < $6)
             AND ($7::bigint IS NULL OR id < $7)
           ORDER BY id DESC LIMIT $8""",
        site_id,
        item_id,
        location_id,
        lot_id,
        since,
        until,
        before_id,
        limit,
    )
    return [_entry(r) for r in rows]


_LEVEL_FILTERS = """
    l.site_id = $1 AND ($2 = '' OR l.location_id = $2) AND ($3 = '' OR l.item_id = $3)
    AND ($4 = '' OR l.lot_id = $4) AND ($5 = '' OR loc.warehouse_id = $5)
    AND ($6::text IS NULL OR lots.status = $6)
    AND ($7::text[] IS NULL OR (l.location_id, l.item_id, l.lot_id) > ($7[1], $7[2], $7[3]))
"""


async def stock_levels(
    conn: asyncpg.Connection,
    filters: tuple[str, str, str, str, str, LotStatus | None],
    include_empty: bool,
    as_of: datetime | None,
    after: list[str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """On-hand per location, item and lot: from the running sum now, or summed from the
    ledger up to `as_of`."""
    site_id, location_id, item_id, lot_id, warehouse_id, status = filters
    source = (
        "on_hand"
        if as_of is None
        else """(SELECT site_id, location_id, item_id, lot_id, sum(quantity) AS quantity
                FROM movements WHERE site_id = $1 AND occurred_at <= $9
                GROUP BY site_id, location_id, item_id, lot_id)"""
    )
    args: list[Any] = [
        site_id,
        location_id,
        item_id,
        lot_id,
        warehouse_id,
        status.value if status else None,
        after,
        limit,
    ]
    if as_of is not None:
        args.append(as_of)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT l.site_id, l.location_id, l.item_id, l.lot_id, l.quantity AS on_hand,
                   coalesce(lots.status, 'AVAILABLE') AS lot_status
            FROM {source} l
            JOIN locations loc ON loc.site_id = l.site_id AND loc.location_id = l.location_id
            LEFT JOIN lots ON lots.site_id = l.site_id AND lots.lot_id = l.lot_id
            WHERE {_LEVEL_FILTERS} AND ({"true" if include_empty else "l.quantity > 0"})
            ORDER BY l.location_id, l.item_id, l.lot_id
            LIMIT $8""",
        *args,
    )
    return rows


# Genealogy


async def record_consumption(
    conn: asyncpg.Connection,
    site_id: str,
    station_id: str,
    item_id: str,
    lot_id: str,
    quantity: int,
    occurred_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO consumptions (site_id, station_id, item_id, lot_id, quantity, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        site_id,
        station_id,
        item_id,
        lot_id,
        quantity,
        occurred_at,
    )


async def record_production(
    conn: asyncpg.Connection,
    site_id: str,
    lot_id: str,
    item_id: str,
    station_id: str,
    started_at: datetime,
    completed_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO productions (site_id, lot_id, item_id, station_id, started_at, completed_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (site_id, lot_id, station_id) DO UPDATE
           SET started_at = least(productions.started_at, $5),
               completed_at = greatest(productions.completed_at, $6)""",
        site_id,
        lot_id,
        item_id,
        station_id,
        started_at,
        completed_at,
    )


async def trace(
    conn: asyncpg.Connection, site_id: str, lot_id: str, backward: bool, max_depth: int
) -> list[asyncpg.Record]:
    """Links of the genealogy reachable from the lot, breadth first, each at its least depth."""
    near, far = ("made_lot_id", "lot_id") if backward else ("lot_id", "made_lot_id")
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""WITH RECURSIVE walk AS (
                SELECT i.*, 1 AS depth FROM lot_inputs i WHERE i.site_id = $1 AND i.{near} = $2
                UNION
                SELECT i.*, w.depth + 1 FROM walk w
                JOIN lot_inputs i ON i.site_id = w.site_id AND i.{near} = w.{far}
                WHERE $3 = 0 OR w.depth < $3
            ) CYCLE lot_id, made_lot_id SET is_cycle USING path
            SELECT lot_id, item_id, made_lot_id, made_item_id, station_id, min(depth) AS depth
            FROM walk WHERE NOT is_cycle
            GROUP BY lot_id, item_id, made_lot_id, made_item_id, station_id
            ORDER BY depth, made_lot_id, lot_id""",
        site_id,
        lot_id,
        max_depth,
    )
    return rows


# Dispositions


def _disposition(row: asyncpg.Record) -> Disposition:
    values = dict(row)
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    return Disposition(**values)


async def count_dispositions_of_lot(conn: asyncpg.Connection, site_id: str, lot_id: str) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM dispositions WHERE site_id = $1 AND lot_id = $2", site_id, lot_id
    )
    return int(value)


async def insert_disposition(conn: asyncpg.Connection, d: Disposition) -> None:
    await conn.execute(
        """INSERT INTO dispositions (site_id, disposition_id, lot_id, item_id, reason,
                                     quarantined_quantity, opened_by, opened_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        d.site_id,
        d.disposition_id,
        d.lot_id,
        d.item_id,
        d.reason,
        d.quarantined_quantity,
        d.opened_by,
        d.opened_at,
    )


async def get_disposition(
    conn: asyncpg.Connection, site_id: str, disposition_id: str, *, lock: bool = False
) -> Disposition:
    row = await conn.fetchrow(
        "SELECT * FROM dispositions WHERE site_id = $1 AND disposition_id = $2"
        + (" FOR UPDATE" if lock else ""),
        site_id,
        disposition_id,
    )
    if row is None:
        raise NotFound("disposition", disposition_id)
    return _disposition(row)


async def close_disposition(conn: asyncpg.Connection, d: Disposition) -> None:
    assert d.outcome is not None
    await conn.execute(
        """UPDATE dispositions SET outcome = $3, closed_by = $4, closing_comment = $5,
                                   closed_at = $6
           WHERE site_id = $1 AND disposition_id = $2""",
        d.site_id,
        d.disposition_id,
        d.outcome.value,
        d.closed_by,
        d.closing_comment,
        d.closed_at,
    )


async def add_consumed_before_hold(
    conn: asyncpg.Connection, site_id: str, disposition_id: str, quantity: int
) -> None:
    await conn.execute(
        """UPDATE dispositions SET consumed_before_hold = consumed_before_hold + $3
           WHERE site_id = $1 AND disposition_id = $2""",
        site_id,
        disposition_id,
        quantity,
    )


async def list_dispositions(
    conn: asyncpg.Connection, site_id: str, open_only: bool, after: str | None, limit: int
) -> list[Disposition]:
    rows = await conn.fetch(
        """SELECT * FROM dispositions
           WHERE site_id = $1 AND (NOT $2 OR outcome IS NULL)
             AND ($3::text IS NULL OR disposition_id > $3)
           ORDER BY disposition_id LIMIT $4""",
        site_id,
        open_only,
        after,
        limit,
    )
    return [_disposition(r) for r in rows]


# Cycle counts


async def find_count(
    conn: asyncpg.Connection, site_id: str, count_id: str, *, lock: bool = False
) -> Count | None:
    row = await conn.fetchrow(
        "SELECT * FROM counts WHERE site_id = $1 AND count_id = $2"
        + (" FOR UPDATE" if lock else ""),
        site_id,
        count_id,
    )
    if row is None:
        return None
    lines = await conn.fetch(
        """SELECT item_id, lot_id, counted_quantity, book_quantity FROM count_lines
           WHERE site_id = $1 AND count_id = $2 ORDER BY item_id, lot_id""",
        site_id,
        count_id,
    )
    values = dict(row)
    values["state"] = CountState(values["state"])
    return Count(**values, lines=[CountLine(**dict(line)) for line in lines])


async def get_count(
    conn: asyncpg.Connection, site_id: str, count_id: str, *, lock: bool = False
) -> Count:
    count = await find_count(conn, site_id, count_id, lock=lock)
    if count is None:
        raise NotFound("count", count_id)
    return count


async def open_count_at_location(
    conn: asyncpg.Connection, site_id: str, location_id: str
) -> str | None:
    value: str | None = await conn.fetchval(
        """SELECT count_id FROM counts
           WHERE site_id = $1 AND location_id = $2 AND state <> 'CLOSED'""",
        site_id,
        location_id,
    )
    return value


async def insert_count(conn: asyncpg.Connection, count: Count) -> None:
    await conn.execute(
        """INSERT INTO counts (site_id, count_id, location_id, state, tolerance_percent,
                               opened_by, opened_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        count.site_id,
        count.count_id,
        count.location_id,
        count.state.value,
        count.tolerance_percent,
        count.opened_by,
        count.opened_at,
    )
    await save_count_lines(conn, count)


async def save_count(conn: asyncpg.Connection, count: Count) -> None:
    await conn.execute(
        "UPDATE counts SET state = $3, closed_at = $4 WHERE site_id = $1 AND count_id = $2",
        count.site_id,
        count.count_id,
        count.state.value,
        count.closed_at,
    )
    await save_count_lines(conn, count)


async def save_count_lines(conn: asyncpg.Connection, count: Count) -> None:
    await conn.executemany(
        """INSERT INTO count_lines (site_id, count_id, item_id, lot_id, counted_quantity,
                                    book_quantity)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (site_id, count_id, item_id, lot_id)
           DO UPDATE SET counted_quantity = $5, book_quantity = $6""",
        [
            (
                count.site_id,
                count.count_id,
                line.item_id,
                line.lot_id,
                line.counted_quantity,
                line.book_quantity,
            )
            for line in count.lines
        ],
    )


async def books_at_location(
    conn: asyncpg.Connection, site_id: str, location_id: str
) -> dict[tuple[str, str], int]:
    rows = await conn.fetch(
        """SELECT item_id, lot_id, quantity FROM on_hand
           WHERE site_id = $1 AND location_id = $2 AND quantity > 0""",
        site_id,
        location_id,
    )
    return {(r["item_id"], r["lot_id"]): int(r["quantity"]) for r in rows}


# Thresholds


def _threshold(row: asyncpg.Record) -> Threshold:
    values = dict(row)
    values["state"] = ThresholdState(values["state"])
    return Threshold(**values)


async def upsert_threshold(conn: asyncpg.Connection, threshold: Threshold) -> None:
    await conn.execute(
        """INSERT INTO thresholds (site_id, item_id, location_id, safety_stock, overstock, state)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (site_id, item_id, location_id)
           DO UPDATE SET safety_stock = $4, overstock = $5, state = $6""",
        threshold.site_id,
        threshold.item_id,
        threshold.location_id,
        threshold.safety_stock,
        threshold.overstock,
        threshold.state.value,
    )


async def lock_thresholds(
    conn: asyncpg.Connection, site_id: str, item_id: str, location_ids: list[str]
) -> list[Threshold]:
    """The item's thresholds at these locations and over the site, locked, in key order."""
    rows = await conn.fetch(
        """SELECT * FROM thresholds
           WHERE site_id = $1 AND item_id = $2 AND (location_id = '' OR location_id = ANY($3))
           ORDER BY location_id FOR UPDATE""",
        site_id,
        item_id,
        location_ids,
    )
    return [_threshold(r) for r in rows]


async def usable_on_hand(
    conn: asyncpg.Connection, site_id: str, item_id: str, location_id: str
) -> int:
    """Available (not held, not written off) units of the item at the location, or over the
    site when location_id is empty."""
    value = await conn.fetchval(
        """SELECT coalesce(sum(o.quantity), 0) FROM on_hand o
           JOIN lots ON lots.site_id = o.site_id AND lots.lot_id = o.lot_id
           WHERE o.site_id = $1 AND o.item_id = $2 AND ($3 = '' OR o.location_id = $3)
             AND lots.status = 'AVAILABLE'""",
        site_id,
        item_id,
        location_id,
    )
    return int(value)


async def list_thresholds(
    conn: asyncpg.Connection, site_id: str, item_id: str, after: list[str] | None, limit: int
) -> list[Threshold]:
    rows = await conn.fetch(
        """SELECT * FROM thresholds
           WHERE site_id = $1 AND ($2 = '' OR item_id = $2)
             AND ($3::text[] IS NULL OR (item_id, location_id) > ($3[1], $3[2]))
           ORDER BY item_id, location_id LIMIT $4""",
        site_id,
        item_id,
        after,
        limit,
    )
    return [_threshold(r) for r in rows]


# Turnover


async def items_page(
    conn: asyncpg.Connection, site_id: str, item_id: str, after: str | None, limit: int
) -> list[Item]:
    rows = await conn.fetch(
        """SELECT * FROM items WHERE site_id = $1 AND ($2 = '' OR item_id = $2)
             AND ($3::text IS NULL OR item_id > $3)
           ORDER BY item_id LIMIT $4""",
        site_id,
        item_id,
        after,
        limit,
    )
    return [Item(**dict(r)) for r in rows]


async def item_history(
    conn: asyncpg.Connection, site_id: str, item_id: str, start: datetime, end: datetime
) -> tuple[int, list[tuple[datetime, int]], int]:
    """On hand of the item at `start`, the ledger's changes in [start, end) in time order
    (transfers cancel out), and the units issued or consumed in that window."""
    opening = await conn.fetchval(
        """SELECT coalesce(sum(quantity), 0) FROM movements
           WHERE site_id = $1 AND item_id = $2 AND occurred_at < $3""",
        site_id,
        item_id,
        start,
    )
    rows = await conn.fetch(
        """SELECT occurred_at, sum(quantity) AS delta,
                  sum(CASE WHEN kind = 'ISSUE' THEN -quantity ELSE 0 END) AS issued
           FROM movements
           WHERE site_id = $1 AND item_id = $2 AND occurred_at >= $3 AND occurred_at < $4
           GROUP BY occurred_at ORDER BY occurred_at""",
        site_id,
        item_id,
        start,
        end,
    )
    changes = [(r["occurred_at"], int(r["delta"])) for r in rows if r["delta"]]
    return int(opening), changes, sum(int(r["issued"]) for r in rows)


# Metrics


async def on_hand_by_status(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT o.site_id, o.location_id, o.item_id, coalesce(lots.status, 'AVAILABLE') AS status,
                  sum(o.quantity)::bigint AS on_hand
           FROM on_hand o LEFT JOIN lots ON lots.site_id = o.site_id AND lots.lot_id = o.lot_id
           GROUP BY 1, 2, 3, 4"""
    )
    return rows


async def use_and_availability(conn: asyncpg.Connection, window: timedelta) -> list[asyncpg.Record]:
    """Per item used in the window: units issued in it, available on hand now, and when
    the item first moved (an item younger than the window is measured from then)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH used AS (
               SELECT site_id, item_id, -sum(quantity) AS issued FROM movements
               WHERE kind = 'ISSUE' AND occurred_at >= now() - $1::interval
               GROUP BY site_id, item_id),
           available AS (
               SELECT o.site_id, o.item_id, sum(o.quantity) AS on_hand FROM on_hand o
               JOIN lots ON lots.site_id = o.site_id AND lots.lot_id = o.lot_id
               WHERE lots.status = 'AVAILABLE' GROUP BY o.site_id, o.item_id)
           SELECT u.site_id, u.item_id, coalesce(a.on_hand, 0)::bigint AS on_hand,
                  u.issued::bigint AS issued,
                  (SELECT min(occurred_at) FROM movements m
                   WHERE m.site_id = u.site_id AND m.item_id = u.item_id) AS first_moved_at
           FROM used u LEFT JOIN available a USING (site_id, item_id)
           WHERE u.issued > 0""",
        window,
    )
    return rows
