"""The outbox keeps delivered events for the retention period, then forgets them;
events still owed to a destination stay however old they are."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.core import outbox
from services.core.db import Database
from services.core.events import CardEmptied
from services.core.migrations import migrate
from services.core.server import Components, ServiceSpec, start_service
from services.stock.app import SPEC as STOCK
from tests.conftest import eventually, fast_settings, new_schema

WEEK = timedelta(days=7)


@pytest.fixture
async def db(database_url):
    schema = new_schema("outbox")
    conn = await asyncpg.connect(database_url)
    await migrate(conn, schema, STOCK.directory)
    database = await Database.connect(database_url, schema)
    yield database
    await database.close()
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


async def queue(db: Database, card_code: str, delivered_ago: timedelta | None) -> None:
    """An event for alerts, occurred a month ago; delivered `delivered_ago`, or not yet."""
    occurred_at = datetime.now(UTC) - timedelta(days=30)
    async with db.transaction() as conn:
        await outbox.enqueue(
            conn,
            site_id="SITE",
            destinations=("alerts",),
            payload=CardEmptied("L", card_code, "PART", "SM", "LOT", 1, "WELD"),
            occurred_at=occurred_at,
        )
        if delivered_ago is not None:
            await conn.execute(
                """UPDATE outbox SET delivered_at = now() - $2::interval
                   WHERE payload->>'card_code' = $1""",
                card_code,
                delivered_ago,
            )


async def cards_in_outbox(db: Database) -> list[str]:
    rows = await db.pool.fetch("SELECT payload->>'card_code' AS card FROM outbox ORDER BY id")
    return [r["card"] for r in rows]


def pruned_so_far() -> float:
    return REGISTRY.get_sample_value("kanban_outbox_events_pruned_total") or 0.0


async def test_events_delivered_longer_ago_than_the_retention_are_deleted(db):
    await queue(db, "OLD-1", delivered_ago=timedelta(days=8))
    await queue(db, "RECENT", delivered_ago=timedelta(days=6))
    await queue(db, "OWED", delivered_ago=None)
    await queue(db, "OLD-2", delivered_ago=timedelta(days=30))
    counted = pruned_so_far()

    assert await outbox.prune(db, WEEK) == 2

    assert await cards_in_outbox(db) == ["RECENT", "OWED"]
    assert pruned_so_far() == counted + 2
    # Nothing left to forget: a second round deletes nothing.
    assert await outbox.prune(db, WEEK) == 0
    assert await cards_in_outbox(db) == ["RECENT", "OWED"]


async def test_a_backlog_is_deleted_in_batches_until_none_is_left(db):
    for n in range(7):
        await queue(db, f"OLD-{n}", delivered_ago=timedelta(days=10))
    await queue(db, "OWED", delivered_ago=None)

    assert await outbox.prune(db, WEEK, batch=3) == 7

    assert await cards_in_outbox(db) == ["OWED"]


async def test_a_service_with_destinations_prunes_its_outbox_on_its_own(database_url):
    """No delivery happens here (alerts' address answers nothing): what goes is what
    was delivered before the retention period, and the owed event stays."""

    def assemble(db: Database, settings: object) -> Components:
        return Components(servicers=[], service_names=[])

    spec = ServiceSpec(
        name=new_schema("outbox"),
        directory=STOCK.directory,
        assemble=assemble,
        destinations=("alerts",),
    )
    settings = fast_settings(
        database_url,
        peers={"alerts": "localhost:1"},
        outbox_retention_seconds=3600,
        outbox_prune_seconds=0.2,
    )
    service = await start_service(spec, settings)
    try:
        await queue(service.db, "OLD", delivered_ago=timedelta(hours=2))
        await queue(service.db, "RECENT", delivered_ago=timedelta(minutes=30))
        await queue(service.db, "OWED", delivered_ago=None)

        async def only_the_kept_ones_left() -> bool:
            return await cards_in_outbox(service.db) == ["RECENT", "OWED"]

        assert await eventually(only_the_kept_ones_left)
    finally:
        await service.stop(0)
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"DROP SCHEMA {spec.name} CASCADE")
        await conn.close()
