"""Cycle counts reconciled against the books, and safety-stock / overstock lines."""

import asyncpg
import grpc
import pytest
from kanban.stock.v1 import stock_pb2 as pb
from prometheus_client import REGISTRY

from tests.conftest import eventually, new_id, refused
from tests.stock_site import StockSite, events_sent


@pytest.fixture
async def site(stack) -> StockSite:
    return await StockSite(stack.stock, new_id("site")).create()


async def open_count(site, count_id="C1", location="BIN-A", tolerance=5.0):
    return await site.stub.OpenCount(
        pb.OpenCountRequest(
            request_id=new_id("r"),
            site_id=site.site_id,
            count_id=count_id,
            location_id=location,
            tolerance_percent=tolerance,
        ),
        metadata=site.metadata,
    )


async def record(site, lot, quantity, count_id="C1", item="RAW"):
    return await site.stub.RecordCount(
        pb.RecordCountRequest(
            request_id=new_id("r"),
            site_id=site.site_id,
            count_id=count_id,
            item_id=item,
            lot_id=lot,
            counted_quantity=quantity,
        ),
        metadata=site.metadata,
    )


async def reconcile(site, count_id="C1"):
    return await site.stub.ReconcileCount(
        pb.ReconcileCountRequest(request_id=new_id("r"), site_id=site.site_id, count_id=count_id),
        metadata=site.metadata,
    )


def accuracy(site) -> float | None:
    return REGISTRY.get_sample_value(
        "kanban_stock_count_accuracy_ratio", {"site_id": site.site_id, "location_id": "BIN-A"}
    )


async def test_a_count_within_tolerance_adjusts_the_books_by_itself(site):
    await site.receive("LOT-1", 100)
    await site.receive("LOT-2", 50)

    opened = await open_count(site)
    # Counters count blind: lines, no book quantities.
    assert [(line.lot_id, line.HasField("counted_quantity")) for line in opened.count.lines] == [
        ("LOT-1", False),
        ("LOT-2", False),
    ]
    assert all(line.book_quantity == 0 for line in opened.count.lines)
    await record(site, "LOT-1", 97)
    await record(site, "LOT-2", 50)
    result = await reconcile(site)

    assert result.count.state == pb.COUNT_STATE_CLOSED
    assert [(line.lot_id, line.book_quantity, line.variance) for line in result.count.lines] == [
        ("LOT-1", 100, -3),
        ("LOT-2", 50, 0),
    ]
    assert [(e.kind, e.lot_id, e.quantity) for e in result.entries] == [
        (pb.MOVEMENT_KIND_ADJUSTMENT, "LOT-1", -3)
    ]
    assert await site.levels() == {("BIN-A", "LOT-1"): 97, ("BIN-A", "LOT-2"): 50}
    assert accuracy(site) == 1.0


async def test_a_variance_beyond_tolerance_waits_for_approval_and_raises_an_event(
    site, database_url
):
    await site.receive("LOT-1", 100)
    await site.receive("LOT-2", 100)
    await open_count(site, tolerance=2.0)
    await record(site, "LOT-1", 99)
    await record(site, "LOT-2", 80)
    # A lot on the shelf the books never heard of.
    await record(site, "LOT-X", 5)

    result = await reconcile(site)

    assert result.count.state == pb.COUNT_STATE_AWAITING_APPROVAL
    assert accuracy(site) == pytest.approx(1 / 3)
    # Only the line within tolerance was adjusted.
    assert [(e.lot_id, e.quantity) for e in result.entries] == [("LOT-1", -1)]
    flagged = await events_sent(database_url, site.site_id, "CountVarianceFlagged")
    assert sorted((e["lot_id"], e["book_quantity"], e["counted_quantity"]) for e in flagged) == [
        ("LOT-2", 100, 80),
        ("LOT-X", 0, 5),
    ]
    assert await site.levels() == {("BIN-A", "LOT-1"): 99, ("BIN-A", "LOT-2"): 100}

    approved = await site.stub.ApproveCount(
        pb.ApproveCountRequest(
            request_id=new_id("r"), site_id=site.site_id, count_id="C1", comment="recounted"
        ),
        metadata=site.metadata,
    )

    assert approved.count.state == pb.COUNT_STATE_CLOSED
    assert sorted((e.lot_id, e.quantity) for e in approved.entries) == [
        ("LOT-2", -20),
        ("LOT-X", 5),
    ]
    assert await site.levels() == {
        ("BIN-A", "LOT-1"): 99,
        ("BIN-A", "LOT-2"): 80,
        ("BIN-A", "LOT-X"): 5,
    }
    assert (await site.lot("LOT-X")).status == pb.LOT_STATUS_AVAILABLE


async def test_count_rules(site):
    await site.receive("LOT-1", 10)
    await open_count(site)

    incomplete = await refused(reconcile(site))
    second = await refused(open_count(site, count_id="C2"))
    await record(site, "LOT-1", 10)
    await reconcile(site)
    closed = await refused(record(site, "LOT-1", 11))
    not_waiting = await refused(
        site.stub.ApproveCount(
            pb.ApproveCountRequest(request_id=new_id("r"), site_id=site.site_id, count_id="C1")
        )
    )
    same_id = await refused(open_count(site, count_id="C1", location="BIN-B"))

    assert incomplete.reason == "COUNT_INCOMPLETE"
    assert second.reason == "COUNT_ALREADY_OPEN"
    assert second.metadata["count_id"] == "C1"
    assert closed.reason == not_waiting.reason == "INVALID_COUNT_STATE"
    assert same_id.code == grpc.StatusCode.ALREADY_EXISTS
    for tolerance in (-1.0, 101.0, float("nan")):
        bad = await refused(open_count(site, count_id="C3", tolerance=tolerance))
        assert bad.fields == ["tolerance_percent"]
    negative = await refused(record(site, "LOT-1", -1, count_id="C3"))
    assert negative.fields == ["counted_quantity"]


async def set_threshold(site, safety, overstock, location=""):
    return await site.stub.SetThreshold(
        pb.SetThresholdRequest(
            request_id=new_id("r"),
            site_id=site.site_id,
            item_id="RAW",
            location_id=location,
            safety_stock=safety,
            overstock=overstock,
        )
    )


async def test_crossing_a_threshold_raises_one_event_per_crossing(site, database_url):
    threshold = await set_threshold(site, 50, 200)
    assert threshold.threshold.state == "BELOW_SAFETY_STOCK"

    await site.receive("LOT-1", 100)  # back to normal
    for _ in range(5):
        await site.issue("LOT-1", 1)  # still normal: no event
    await site.receive("LOT-2", 150)  # 245: above the overstock line
    await site.receive("LOT-3", 1)  # still above: no event
    await site.quarantine("LOT-2")  # 96 usable: normal again

    crossings = await events_sent(database_url, site.site_id, "StockThresholdCrossed")
    assert [(e["state"], e["on_hand"]) for e in crossings] == [
        ("BELOW_SAFETY_STOCK", 0),
        ("NORMAL", 100),
        ("ABOVE_OVERSTOCK", 245),
        ("NORMAL", 96),
    ]
    listed = await site.stub.ListThresholds(pb.ListThresholdsRequest(site_id=site.site_id))
    assert [(t.item_id, t.location_id, t.state) for t in listed.thresholds] == [
        ("RAW", "", "NORMAL")
    ]


async def test_a_threshold_at_a_location_watches_that_location_only(site, database_url):
    await set_threshold(site, 10, 0, location="BIN-B")
    await site.receive("LOT-1", 100)  # in BIN-A: BIN-B is still empty
    await site.transfer("LOT-1", 20, "BIN-A", "BIN-B")

    crossings = await events_sent(database_url, site.site_id, "StockThresholdCrossed")

    assert [(e["location_id"], e["state"]) for e in crossings] == [
        ("BIN-B", "BELOW_SAFETY_STOCK"),
        ("BIN-B", "NORMAL"),
    ]


async def test_events_for_alerts_are_delivered(site, database_url):
    await set_threshold(site, 10, 0)

    async def delivered() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return bool(
                await conn.fetchval(
                    """SELECT bool_and(delivered_at IS NOT NULL) FROM stock.outbox
                       WHERE site_id = $1 AND destination = 'alerts'""",
                    site.site_id,
                )
            )
        finally:
            await conn.close()

    assert await eventually(delivered)


@pytest.mark.parametrize(
    ("safety", "overstock", "field"),
    [
        (-1, 0, "safety_stock"),
        (0, -1, "overstock"),
        (100, 50, "overstock"),
        (100, 100, "overstock"),
    ],
)
async def test_bad_thresholds_name_the_field(site, safety, overstock, field):
    refusal = await refused(set_threshold(site, safety, overstock))

    assert refusal.fields == [field]
