"""Quality holds reach the line: a quarantined lot's containers cannot be consumed,
a release frees them, a write-off sends their cards back for replacements; and
the genealogy of lots made through a three-station line."""

import asyncio

import asyncpg
import grpc
import pytest
from kanban.stations.v1 import stations_pb2
from kanban.stock.v1 import stock_pb2 as pb

from tests.conftest import Line, Refusal, cards_by_lot, eventually, new_id, refused, stock_by_lot
from tests.stock_site import StockSite

CONTAINER = 50


@pytest.fixture
async def plant(stack) -> tuple[Line, StockSite]:
    line = await Line(stack.stations, new_id("site")).create(cards=6, container_quantity=CONTAINER)
    site = await StockSite(stack.stock, line.site_id).create()
    # The opening stock of loop P has reached stock.
    assert await eventually(lambda: site.levels(location_id="SM-P"))
    return line, site


async def refused_movements(database_url: str, site_id: str) -> int:
    """Movements stock refused for the site: a hold or write-off applied twice would show."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM stock.refused_movements WHERE site_id = $1", site_id
            )
        )
    finally:
        await conn.close()


async def scan_refused_for_quarantine(line: Line, card: str) -> bool:
    try:
        await line.scan("WELD", card)
    except grpc.aio.AioRpcError as error:
        return Refusal(error).reason == "LOT_QUARANTINED"
    raise AssertionError(f"the scan of {card} went through: the hold never reached the line")


async def test_a_quarantined_lot_is_refused_at_the_scan_until_released(plant):
    line, site = plant
    await site.quarantine("P-OPENING", "wrong steel grade")

    refusal = await eventually(lambda: refused_scan(line, "P-001"))

    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.metadata["lot_id"] == "P-OPENING"
    assert "set this container aside" in refusal.message
    # Nothing moved: the card is still full, the stock still there.
    assert cards_by_lot(await line.cards("P")) == {"P-OPENING": 6 * CONTAINER}
    await site.stub.ReleaseLot(
        pb.ReleaseLotRequest(request_id=new_id("r"), site_id=line.site_id, lot_id="P-OPENING")
    )
    assert await eventually(lambda: scan_passes(line, "P-001"))


async def test_supermarket_stock_moves_only_with_its_cards(plant):
    line, site = plant

    issue = await refused(site.issue("P-OPENING", 1, location="SM-P", item="PART"))
    receipt = await refused(site.receive("P-EXTRA", 1, location="SM-P", item="PART"))
    transfer = await refused(site.transfer("P-OPENING", 1, "SM-P", "BIN-A", item="PART"))

    assert issue.reason == receipt.reason == transfer.reason == "KANBAN_LOCATION"
    assert await stock_by_lot(site.stub, line.site_id, "SM-P") == {"P-OPENING": 6 * CONTAINER}


async def refused_scan(line: Line, card: str) -> Refusal | None:
    """The refusal of a scan that is refused; None (after undoing nothing) if it is not yet."""
    try:
        probe = await line.stub.GetCard(
            stations_pb2.GetCardRequest(site_id=line.site_id, card_code=card)
        )
        if not probe.card.lot_quarantined:
            return None
        await line.scan("WELD", card)
    except grpc.aio.AioRpcError as error:
        return Refusal(error)
    raise AssertionError("a card shown as quarantined was consumed")


async def scan_passes(line: Line, card: str) -> bool:
    try:
        await line.scan("WELD", card)
    except grpc.aio.AioRpcError as error:
        assert Refusal(error).reason == "LOT_QUARANTINED"
        return False
    return True


async def test_a_quarantine_racing_scans_never_lets_a_held_container_be_consumed(
    plant, database_url
):
    line, site = plant

    async def scan(card: str) -> str:
        try:
            await line.scan("WELD", card)
            return "scanned"
        except grpc.aio.AioRpcError as error:
            return Refusal(error).reason

    results = await asyncio.gather(
        scan("P-001"),
        scan("P-002"),
        site.quarantine("P-OPENING"),
        scan("P-003"),
        scan("P-004"),
    )
    held = results[2]
    outcomes = [r for r in results if isinstance(r, str)]
    assert set(outcomes) <= {"scanned", "LOT_QUARANTINED"}
    # Once the hold is at the line, every remaining container is refused.
    assert await eventually(lambda: refused_scan(line, "P-005"))
    assert await scan_refused_for_quarantine(line, "P-006")

    scanned = outcomes.count("scanned")
    left = (6 - scanned) * CONTAINER
    assert cards_by_lot(await line.cards("P")) == {"P-OPENING": left}

    async def settled() -> bool:
        return await stock_by_lot(site.stub, line.site_id, "SM-P") == {"P-OPENING": left}

    assert await eventually(settled)
    disposition = await site.stub.GetDisposition(
        pb.GetDispositionRequest(
            site_id=line.site_id, disposition_id=held.disposition.disposition_id
        )
    )
    # What the hold froze, less what stations consumed before the hold reached it.
    d = disposition.disposition
    assert d.quarantined_quantity - d.consumed_before_hold == left
    assert await refused_movements(database_url, line.site_id) == 0


async def test_scrapping_a_held_lot_sends_its_cards_back_for_replacements(plant, database_url):
    line, site = plant
    await line.scan("WELD", "P-001")
    held = await site.quarantine("P-OPENING")

    closed = await site.stub.CloseDisposition(
        pb.CloseDispositionRequest(
            request_id=new_id("r"),
            site_id=line.site_id,
            disposition_id=held.disposition.disposition_id,
            outcome=pb.DISPOSITION_OUTCOME_SCRAP,
        )
    )

    assert closed.lot.status == pb.LOT_STATUS_SCRAPPED

    async def all_empty() -> bool:
        cards = await line.cards("P")
        return all(c.state == stations_pb2.CARD_STATE_EMPTY for c in cards)

    assert await eventually(all_empty)
    board = await line.stub.GetBoard(stations_pb2.GetBoardRequest(site_id=line.site_id))
    stamp = next(s for s in board.stations if s.station_id == "STAMP")
    assert stamp.open_signals == 6
    # The write-off moved the stock once: nothing left, nothing refused.
    assert await stock_by_lot(site.stub, line.site_id, "SM-P") == {}
    assert await refused_movements(database_url, line.site_id) == 0
    # The replacement goes through the loop as usual.
    await line.start("STAMP", "P-002")
    await line.complete("STAMP", "P-002", "P-NEW", CONTAINER)
    assert await eventually(lambda: stock_by_lot(site.stub, line.site_id, "SM-P")) == {
        "P-NEW": CONTAINER
    }


async def trace(site: StockSite, lot: str, direction: int) -> list[tuple[str, str, str, int]]:
    reply = await site.stub.TraceLot(
        pb.TraceLotRequest(site_id=site.site_id, lot_id=lot, direction=direction)
    )
    return sorted((k.lot_id, k.made_lot_id, k.station_id, k.depth) for k in reply.links)


async def test_genealogy_through_a_three_station_line(plant):
    line, site = plant
    await site.stub.CreateItem(
        pb.CreateItemRequest(
            request_id=new_id("r"), site_id=line.site_id, item_id="CHASSIS", unit_of_measure="pcs"
        )
    )
    # Raw material goes to stamping, which makes P-LOT-1 from it.
    await site.receive("RAW-1", 100)
    await site.issue("RAW-1", 40, station="STAMP")
    await line.scan("WELD", "P-001")  # welding takes an opening container of P
    await line.start("STAMP", "P-001")
    await line.complete("STAMP", "P-001", "P-LOT-1", CONTAINER)
    # Welding makes W-LOT-1 from the P container in use when it started and
    # the P-LOT-1 container it took while making it.
    await line.scan("ASSY", "W-001")
    await line.start("WELD", "W-001")
    await line.scan("WELD", "P-001")
    await line.complete("WELD", "W-001", "W-LOT-1", CONTAINER)
    # Assembly takes W-LOT-1 and reports finished chassis.
    await line.scan("ASSY", "W-001")

    async def assy_consumed_w_lot_1() -> bool:
        # Received into the supermarket, then issued to assembly.
        return len(await site.movements(lot_id="W-LOT-1")) == 2

    assert await eventually(assy_consumed_w_lot_1)
    await site.stub.ReceiveStock(
        pb.ReceiveStockRequest(
            request_id=new_id("r"),
            site_id=line.site_id,
            location_id="BIN-B",
            item_id="CHASSIS",
            lot_id="FG-1",
            quantity=10,
            source=pb.RECEIPT_SOURCE_PRODUCTION,
            origin_id="ASSY",
        )
    )

    assert await trace(site, "FG-1", pb.TRACE_DIRECTION_BACKWARD) == [
        ("P-LOT-1", "W-LOT-1", "WELD", 2),
        ("P-OPENING", "W-LOT-1", "WELD", 2),
        ("RAW-1", "P-LOT-1", "STAMP", 3),
        ("W-LOT-1", "FG-1", "ASSY", 1),
    ]
    assert await trace(site, "RAW-1", pb.TRACE_DIRECTION_FORWARD) == [
        ("P-LOT-1", "W-LOT-1", "WELD", 2),
        ("RAW-1", "P-LOT-1", "STAMP", 1),
        ("W-LOT-1", "FG-1", "ASSY", 3),
    ]
    shallow = await site.stub.TraceLot(
        pb.TraceLotRequest(
            site_id=line.site_id,
            lot_id="FG-1",
            direction=pb.TRACE_DIRECTION_BACKWARD,
            max_depth=1,
        )
    )
    assert [k.lot_id for k in shallow.links] == ["W-LOT-1"]
