"""Quality holds: quarantine, release, dispositions and what each outcome moves."""

import asyncio

import grpc
import pytest
from kanban.stock.v1 import stock_pb2 as pb

from tests.conftest import Refusal, new_id, refused
from tests.stock_site import ACTOR, StockSite, events_sent


@pytest.fixture
async def site(stack) -> StockSite:
    return await StockSite(stack.stock, new_id("site")).create()


async def close(site, disposition_id: str, outcome: int, scrapped: int = 0):
    return await site.stub.CloseDisposition(
        pb.CloseDispositionRequest(
            request_id=new_id("r"),
            site_id=site.site_id,
            disposition_id=disposition_id,
            outcome=outcome,
            scrapped_quantity=scrapped,
            comment="checked by the lab",
        ),
        metadata=site.metadata,
    )


async def test_a_quarantined_lot_cannot_be_issued_but_may_move_into_quarantine(site):
    await site.receive("LOT-1", 10)

    held = await site.quarantine("LOT-1", "burrs on the edge")

    assert held.lot.status == pb.LOT_STATUS_QUARANTINED
    assert held.lot.hold_reason == "burrs on the edge"
    assert held.disposition.open
    assert held.disposition.quarantined_quantity == 10
    assert held.disposition.opened_by == ACTOR
    refusal = await refused(site.issue("LOT-1", 1))
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.reason == "LOT_QUARANTINED"
    assert refusal.metadata["disposition_id"] == held.disposition.disposition_id

    await site.transfer("LOT-1", 10, "BIN-A", "QA")
    out = await refused(site.transfer("LOT-1", 10, "QA", "BIN-B"))

    assert out.reason == "LOT_QUARANTINED"
    assert await site.levels() == {("QA", "LOT-1"): 10}
    queue = await site.stub.ListDispositions(
        pb.ListDispositionsRequest(site_id=site.site_id, open_only=True)
    )
    assert [d.lot_id for d in queue.dispositions] == ["LOT-1"]


async def test_release_makes_the_lot_usable_and_closes_its_disposition(site):
    await site.receive("LOT-1", 10)
    held = await site.quarantine("LOT-1")

    released = await site.stub.ReleaseLot(
        pb.ReleaseLotRequest(
            request_id=new_id("r"), site_id=site.site_id, lot_id="LOT-1", comment="false alarm"
        ),
        metadata=site.metadata,
    )

    assert released.lot.status == pb.LOT_STATUS_AVAILABLE
    assert released.disposition.outcome == pb.DISPOSITION_OUTCOME_RELEASE
    assert released.disposition.closed_by == ACTOR
    assert not released.disposition.open
    await site.issue("LOT-1", 10)
    again = await refused(
        close(site, held.disposition.disposition_id, pb.DISPOSITION_OUTCOME_SCRAP)
    )
    assert again.reason == "DISPOSITION_CLOSED"


async def test_scrap_takes_the_lot_out_of_every_location(site):
    await site.receive("LOT-1", 10)
    await site.transfer("LOT-1", 4, "BIN-A", "BIN-B")
    held = await site.quarantine("LOT-1")

    closed = await close(site, held.disposition.disposition_id, pb.DISPOSITION_OUTCOME_SCRAP)

    assert closed.lot.status == pb.LOT_STATUS_SCRAPPED
    assert closed.lot.on_hand == 0
    assert sorted((e.location_id, e.quantity, e.kind) for e in closed.entries) == [
        ("BIN-A", -6, pb.MOVEMENT_KIND_SCRAP),
        ("BIN-B", -4, pb.MOVEMENT_KIND_SCRAP),
    ]
    assert await site.levels() == {}
    refusal = await refused(site.receive("LOT-1", 1))
    assert refusal.reason == "LOT_WRITTEN_OFF"


async def test_return_to_supplier_sends_the_lot_back(site):
    await site.receive("LOT-1", 10)
    held = await site.quarantine("LOT-1")

    closed = await close(
        site, held.disposition.disposition_id, pb.DISPOSITION_OUTCOME_RETURN_TO_SUPPLIER
    )

    assert closed.lot.status == pb.LOT_STATUS_RETURNED
    (entry,) = closed.entries
    assert (entry.kind, entry.quantity, entry.reference) == (
        pb.MOVEMENT_KIND_RETURN_TO_SUPPLIER,
        -10,
        "supplier ACME",
    )


async def test_rework_releases_the_lot_less_what_could_not_be_saved(site):
    await site.receive("LOT-1", 10)
    held = await site.quarantine("LOT-1")

    too_many = await refused(
        close(site, held.disposition.disposition_id, pb.DISPOSITION_OUTCOME_REWORK, scrapped=11)
    )
    closed = await close(
        site, held.disposition.disposition_id, pb.DISPOSITION_OUTCOME_REWORK, scrapped=3
    )

    assert too_many.reason == "INSUFFICIENT_STOCK"
    assert closed.lot.status == pb.LOT_STATUS_AVAILABLE
    assert closed.lot.on_hand == 7
    assert [e.quantity for e in closed.entries] == [-3]
    await site.issue("LOT-1", 7)


async def test_a_quarantine_racing_issues_lets_through_only_what_came_first(site):
    await site.receive("LOT-1", 100)

    async def issue():
        try:
            await site.issue("LOT-1", 1)
            return "issued"
        except grpc.aio.AioRpcError as error:
            return Refusal(error).reason

    results = await asyncio.gather(
        *(issue() for _ in range(20)), site.quarantine("LOT-1"), *(issue() for _ in range(20))
    )

    held = results[20]
    outcomes = results[:20] + results[21:]
    issued = outcomes.count("issued")
    assert set(outcomes) <= {"issued", "LOT_QUARANTINED"}
    # What was issued before the hold plus what it froze is all there was.
    assert issued + held.disposition.quarantined_quantity == 100
    assert (await site.lot("LOT-1")).on_hand == 100 - issued
    after = await refused(site.issue("LOT-1", 1))
    assert after.reason == "LOT_QUARANTINED"


async def test_quarantine_is_told_to_the_alerts_service(site, database_url):
    await site.receive("LOT-1", 10)
    await site.quarantine("LOT-1", "porosity")

    sent = await events_sent(database_url, site.site_id, "LotQuarantined")

    assert [(e["lot_id"], e["reason"]) for e in sent] == [("LOT-1", "porosity")]


async def test_a_retried_quarantine_holds_once(site):
    await site.receive("LOT-1", 10)
    request = pb.QuarantineLotRequest(
        request_id="hold-1", site_id=site.site_id, lot_id="LOT-1", reason="cracks"
    )

    first = await site.stub.QuarantineLot(request)
    again = await site.stub.QuarantineLot(request)
    other = await refused(site.quarantine("LOT-1"))

    assert again.disposition == first.disposition
    assert other.reason == "LOT_QUARANTINED"
    dispositions = await site.stub.ListDispositions(
        pb.ListDispositionsRequest(site_id=site.site_id)
    )
    assert len(dispositions.dispositions) == 1


async def test_quality_bad_input(site):
    s = site.stub
    cases = [
        (
            s.QuarantineLot(pb.QuarantineLotRequest(request_id="r", site_id="S", lot_id="L")),
            "reason",
        ),
        (
            s.CloseDisposition(
                pb.CloseDispositionRequest(request_id="r", site_id="S", disposition_id="D")
            ),
            "outcome",
        ),
        (
            s.CloseDisposition(
                pb.CloseDispositionRequest(
                    request_id="r",
                    site_id="S",
                    disposition_id="D",
                    outcome=pb.DISPOSITION_OUTCOME_RELEASE,
                )
            ),
            "outcome",
        ),
        (
            s.CloseDisposition(
                pb.CloseDispositionRequest(
                    request_id="r",
                    site_id="S",
                    disposition_id="D",
                    outcome=pb.DISPOSITION_OUTCOME_SCRAP,
                    scrapped_quantity=3,
                )
            ),
            "scrapped_quantity",
        ),
        (s.TraceLot(pb.TraceLotRequest(site_id="S", lot_id="L")), "direction"),
    ]
    for call, field in cases:
        refusal = await refused(call)
        assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert refusal.fields == [field]
    missing = await refused(site.quarantine("NO-SUCH-LOT"))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert await site.levels() == {}
