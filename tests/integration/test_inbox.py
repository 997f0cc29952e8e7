"""Received events are applied once, a batch in one transaction: whole or not at all."""

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.core.db import Database
from services.core.events import CardEmptied
from services.core.inbox import ReceivedEvent, apply_once
from services.core.migrations import migrate
from services.stock.app import SPEC as STOCK
from tests.conftest import new_schema


@pytest.fixture
async def db(database_url):
    schema = new_schema("inbox")
    conn = await asyncpg.connect(database_url)
    await migrate(conn, schema, STOCK.directory)
    database = await Database.connect(database_url, schema)
    await database.pool.execute("CREATE TABLE effects (card_code text)")
    yield database
    await database.close()
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


def emptied(card_code: str, event_id: str | None = None) -> ReceivedEvent:
    payload = CardEmptied(
        loop_id="L",
        card_code=card_code,
        item_id="PART",
        location_id="SM",
        lot_id="LOT",
        quantity=1,
        consumer_station_id="WELD",
    )
    return ReceivedEvent(event_id or str(uuid.uuid4()), "SITE", "test", datetime.now(UTC), payload)


async def record(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    assert isinstance(event.payload, CardEmptied)
    if event.payload.card_code == "FAILS":
        raise RuntimeError("the handler failed")
    await conn.execute("INSERT INTO effects VALUES ($1)", event.payload.card_code)


async def effects(db: Database) -> list[str]:
    return [r["card_code"] for r in await db.pool.fetch("SELECT card_code FROM effects")]


async def test_each_event_is_applied_once_across_and_within_batches(db):
    first, second = emptied("A"), emptied("B")
    # The same id spelled as hex without hyphens is the same event.
    respelled = emptied("B", uuid.UUID(second.event_id).hex.upper())

    assert await apply_once(db, [first, first, second], record) == [True, False, True]
    assert await apply_once(db, [second, respelled, emptied("C")], record) == [False, False, True]
    assert sorted(await effects(db)) == ["A", "B", "C"]


async def test_a_batch_whose_handler_fails_leaves_none_of_it_applied(db):
    before, failing = emptied("A"), emptied("FAILS")

    with pytest.raises(RuntimeError):
        await apply_once(db, [before, failing], record)

    assert await effects(db) == []
    # Redelivered without the failing event, the first is new: nothing of it was kept.
    assert await apply_once(db, [before], record) == [True]
    assert await effects(db) == ["A"]
