"""The ledger: every kind of movement, never negative under racing issues, on-hand
as of a past time, movement history, retries and bad input."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from kanban.stock.v1 import stock_pb2 as pb

from tests.conftest import new_id, refused
from tests.stock_site import ACTOR, StockSite


@pytest.fixture
async def site(stack) -> StockSite:
    return await StockSite(stack.stock, new_id("site")).create()


def stamp(when: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(when)
    return value


async def test_every_kind_of_movement_is_in_the_ledger_with_who_and_why(site):
    s = site.stub
    await site.receive("LOT-1", 100)
    await site.issue("LOT-1", 10)
    await site.transfer("LOT-1", 30, "BIN-A", "BIN-B")
    await s.ReturnToSupplier(
        pb.ReturnToSupplierRequest(
            request_id=new_id("r"),
            site_id=site.site_id,
            location_id="BIN-B",
            item_id="RAW",
            lot_id="LOT-1",
            quantity=5,
            supplier_id="ACME",
            reason="wrong grade",
        ),
        metadata=site.metadata,
    )
    await s.ScrapStock(
        pb.ScrapStockRequest(
            request_id=new_id("r"),
            site_id=site.site_id,
            location_id="BIN-A",
            item_id="RAW",
            lot_id="LOT-1",
            quantity=2,
            reason="dropped",
        ),
        metadata=site.metadata,
    )
    adjusted = await s.AdjustStock(
        pb.AdjustStockRequest(
            request_id="adjust-1",
            site_id=site.site_id,
            location_id="BIN-A",
            item_id="RAW",
            lot_id="LOT-1",
            quantity_delta=-3,
            reason="found short",
        ),
        metadata=site.metadata,
    )

    assert await site.levels() == {
        ("BIN-A", "LOT-1"): 100 - 10 - 30 - 2 - 3,
        ("BIN-B", "LOT-1"): 25,
    }
    history = await site.movements(lot_id="LOT-1")
    kinds = [(pb.MovementKind.Name(m.kind), m.location_id, m.quantity) for m in history]
    # Newest first; a transfer is two entries.
    assert kinds == [
        ("MOVEMENT_KIND_ADJUSTMENT", "BIN-A", -3),
        ("MOVEMENT_KIND_SCRAP", "BIN-A", -2),
        ("MOVEMENT_KIND_RETURN_TO_SUPPLIER", "BIN-B", -5),
        ("MOVEMENT_KIND_TRANSFER", "BIN-B", 30),
        ("MOVEMENT_KIND_TRANSFER", "BIN-A", -30),
        ("MOVEMENT_KIND_ISSUE", "BIN-A", -10),
        ("MOVEMENT_KIND_RECEIPT", "BIN-A", 100),
    ]
    assert all(m.actor == ACTOR and m.request_id and m.occurred_at.seconds for m in history)
    assert history[0].reason == "found short"
    assert history[0].request_id == "adjust-1"
    assert adjusted.movement.entries[0].movement_id == history[0].movement_id
    assert history[-1].reference == "ACME"
    assert history[-2].reference == "station STAMP"
    # On hand is the ledger's sum.
    assert sum(m.quantity for m in history) == sum((await site.levels()).values())


async def test_an_issue_above_on_hand_is_refused_with_what_is_available(site):
    await site.receive("LOT-1", 7)

    refusal = await refused(site.issue("LOT-1", 8))

    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.reason == "INSUFFICIENT_STOCK"
    assert refusal.metadata["available"] == "7"
    assert await site.levels() == {("BIN-A", "LOT-1"): 7}
    assert len(await site.movements(lot_id="LOT-1")) == 1


async def test_racing_issues_on_the_last_units_never_go_negative(site):
    await site.receive("LOT-1", 10)

    results = await asyncio.gather(
        *(site.issue("LOT-1", 3) for _ in range(8)), return_exceptions=True
    )

    succeeded = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    # Exactly as many as the stock allows: 3 x 3 = 9 of 10.
    assert len(succeeded) == 3
    assert all(
        isinstance(f, grpc.aio.AioRpcError) and f.code() == grpc.StatusCode.FAILED_PRECONDITION
        for f in failed
    )
    assert await site.levels() == {("BIN-A", "LOT-1"): 1}


async def test_racing_single_unit_issues_empty_the_lot_exactly(site):
    await site.receive("LOT-1", 10)

    results = await asyncio.gather(
        *(site.issue("LOT-1", 1) for _ in range(25)), return_exceptions=True
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert await site.levels(include_empty=True) == {("BIN-A", "LOT-1"): 0}
    assert (await site.lot("LOT-1")).status == pb.LOT_STATUS_CONSUMED


async def test_a_retry_with_the_same_request_id_moves_stock_once(site):
    first = await site.receive("LOT-1", 10, request_id="receipt-1")
    again = await site.receive("LOT-1", 10, request_id="receipt-1")

    assert again == first
    assert await site.levels() == {("BIN-A", "LOT-1"): 10}

    changed = await refused(site.receive("LOT-1", 11, request_id="receipt-1"))
    assert changed.fields == ["request_id"]


async def test_on_hand_as_of_a_past_time_comes_from_the_ledger(site):
    before = datetime.now(UTC)
    await site.receive("LOT-1", 10)
    between = datetime.now(UTC)
    await site.issue("LOT-1", 4)
    await site.transfer("LOT-1", 6, "BIN-A", "BIN-B")

    async def as_of(when: datetime) -> dict[tuple[str, str], int]:
        return await site.levels(as_of=stamp(when))

    assert await as_of(before - timedelta(seconds=1)) == {}
    assert await as_of(between) == {("BIN-A", "LOT-1"): 10}
    assert await as_of(datetime.now(UTC)) == await site.levels() == {("BIN-B", "LOT-1"): 6}


async def test_levels_filter_by_warehouse_item_and_lot_status(site):
    await site.receive("LOT-1", 10)
    await site.receive("LOT-2", 5, location="BIN-B")
    await site.receive("P-1", 3, item="PART", location="LS-STAMP")
    await site.quarantine("LOT-2")

    assert await site.levels(warehouse_id="WH") == {("BIN-A", "LOT-1"): 10, ("BIN-B", "LOT-2"): 5}
    assert await site.levels(item_id="PART") == {("LS-STAMP", "P-1"): 3}
    assert await site.levels(lot_status=pb.LOT_STATUS_QUARANTINED) == {("BIN-B", "LOT-2"): 5}


async def test_movement_history_of_an_item_a_location_or_a_lot(site):
    await site.receive("LOT-1", 10)
    await site.receive("LOT-2", 10, location="BIN-B")
    await site.issue("LOT-2", 1, location="BIN-B")

    assert len(await site.movements(item_id="RAW")) == 3
    assert [m.lot_id for m in await site.movements(location_id="BIN-B")] == ["LOT-2", "LOT-2"]
    assert len(await site.movements(lot_id="LOT-1")) == 1
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await site.movements(item_id="RAW", since=stamp(later)) == []


async def test_turnover_and_days_of_supply_per_item(site):
    received = await site.receive("LOT-1", 100)
    await site.issue("LOT-1", 60)

    reply = await site.stub.ListItemTurnover(
        pb.ListItemTurnoverRequest(site_id=site.site_id, window_days=30)
    )

    by_item = {t.item_id: t for t in reply.items}
    raw = by_item["RAW"]
    assert (raw.unit_of_measure, raw.on_hand, raw.issued) == ("kg", 40, 60)
    # A new item is measured from its first movement, not over all 30 days.
    first = received.movement.entries[0].occurred_at.ToDatetime(UTC)
    days = (reply.window_end.ToDatetime(UTC) - first) / timedelta(days=1)
    assert raw.days_of_supply == pytest.approx(40 / (60 / days))
    assert 40 <= raw.average_on_hand <= 100
    assert raw.turnover == pytest.approx(60 / raw.average_on_hand)
    assert not by_item["PART"].HasField("days_of_supply")


async def test_the_ledger_cannot_be_altered(site, database_url):
    await site.receive("LOT-1", 10)
    conn = await asyncpg.connect(database_url)
    try:
        for statement in (
            "UPDATE stock.movements SET quantity = 1000 WHERE site_id = $1",
            "DELETE FROM stock.movements WHERE site_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement, site.site_id)
    finally:
        await conn.close()
    assert await site.levels() == {("BIN-A", "LOT-1"): 10}


async def test_locations_list_by_kind(site):
    reply = await site.stub.ListLocations(
        pb.ListLocationsRequest(site_id=site.site_id, kind=pb.LOCATION_KIND_WAREHOUSE_BIN)
    )

    assert [loc.location_id for loc in reply.locations] == ["BIN-A", "BIN-B"]


def receipt(site, **fields) -> pb.ReceiveStockRequest:
    values = dict(
        request_id=new_id("r"),
        site_id=site.site_id,
        location_id="BIN-A",
        item_id="RAW",
        lot_id="LOT-1",
        quantity=5,
        source=pb.RECEIPT_SOURCE_SUPPLIER,
        origin_id="ACME",
    )
    values.update(fields)
    return pb.ReceiveStockRequest(**values)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"request_id": ""}, "request_id"),
        ({"location_id": ""}, "location_id"),
        ({"lot_id": "bad lot"}, "lot_id"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"source": pb.RECEIPT_SOURCE_UNSPECIFIED}, "source"),
        ({"source": 99}, "source"),
        ({"origin_id": ""}, "origin_id"),
        ({"reason": "x" * 500}, "reason"),
    ],
)
async def test_a_malformed_receipt_names_the_field_and_changes_nothing(site, fields, field):
    refusal = await refused(site.stub.ReceiveStock(receipt(site, **fields)))

    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.fields == [field]
    assert await site.levels() == {}


@pytest.mark.parametrize(
    ("fields", "resource"),
    [({"location_id": "NOWHERE"}, "location"), ({"item_id": "GHOST"}, "item")],
)
async def test_a_receipt_to_an_unknown_place_or_item_is_not_found(site, fields, resource):
    refusal = await refused(site.stub.ReceiveStock(receipt(site, **fields)))

    assert refusal.code == grpc.StatusCode.NOT_FOUND
    assert resource in refusal.message


async def test_a_lot_belongs_to_one_item(site):
    await site.receive("LOT-1", 5)

    refusal = await refused(site.receive("LOT-1", 5, item="PART"))

    assert refusal.reason == "LOT_ITEM_MISMATCH"
    assert refusal.metadata["lot_item_id"] == "RAW"


async def test_bad_queries_name_the_field(site):
    s = site.stub
    cases = [
        (s.ListMovements(pb.ListMovementsRequest(site_id=site.site_id)), "item_id"),
        (
            s.ListMovements(
                pb.ListMovementsRequest(site_id=site.site_id, item_id="RAW", page_token="junk")
            ),
            "page_token",
        ),
        (s.GetStockLevels(pb.GetStockLevelsRequest(site_id="")), "site_id"),
        (s.GetStockLevels(pb.GetStockLevelsRequest(site_id="S", lot_status=42)), "lot_status"),
        (
            s.ListItemTurnover(pb.ListItemTurnoverRequest(site_id="S", window_days=-1)),
            "window_days",
        ),
        (
            s.CreateLocation(
                pb.CreateLocationRequest(
                    request_id="r",
                    site_id="S",
                    location_id="B",
                    kind=pb.LOCATION_KIND_WAREHOUSE_BIN,
                )
            ),
            "warehouse_id",
        ),
        (
            s.AdjustStock(
                pb.AdjustStockRequest(
                    request_id="r",
                    site_id="S",
                    location_id="B",
                    item_id="I",
                    lot_id="L",
                    reason="x",
                )
            ),
            "quantity_delta",
        ),
        (
            s.TransferStock(
                pb.TransferStockRequest(
                    request_id="r",
                    site_id="S",
                    from_location_id="B",
                    to_location_id="B",
                    item_id="I",
                    lot_id="L",
                    quantity=1,
                )
            ),
            "to_location_id",
        ),
    ]
    for call, field in cases:
        refusal = await refused(call)
        assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert refusal.fields == [field]
