"""A quality hold is never lost: stock commits it with its event for stations,
and however the two die, the line ends up refusing the held containers."""

import asyncpg
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2 as pb
from kanban.stock.v1 import stock_pb2_grpc

from tests.conftest import Line, cards_by_lot, eventually, new_id, refused, stock_by_lot
from tests.e2e.conftest import Launcher, open_channel

CONTAINER = 10


async def test_a_hold_made_while_stations_is_down_survives_stock_being_killed(
    launcher: Launcher, database_url: str
):
    services = await launcher.start_line()
    stock, stations = services["stock"], services["stations"]
    conn = await asyncpg.connect(database_url)
    try:
        async with open_channel(stations.address) as ch1, open_channel(stock.address) as ch2:
            line = await Line(stations_pb2_grpc.StationsServiceStub(ch1), new_id("site")).create(
                cards=3, container_quantity=CONTAINER
            )
            stock_stub = stock_pb2_grpc.StockServiceStub(ch2)

            async def opening_stock_arrived() -> bool:
                return await stock_by_lot(stock_stub, line.site_id, "SM-P") == {
                    "P-OPENING": 3 * CONTAINER
                }

            assert await eventually(opening_stock_arrived)
            await stations.kill()
            await stock_stub.QuarantineLot(
                pb.QuarantineLotRequest(
                    request_id=new_id("r"),
                    site_id=line.site_id,
                    lot_id="P-OPENING",
                    reason="cracks",
                )
            )
            await stock.kill()
            pending = await conn.fetchval(
                """SELECT count(*) FROM stock.outbox WHERE site_id = $1
                   AND destination = 'stations' AND delivered_at IS NULL""",
                line.site_id,
            )
            assert pending == 1, "the hold should be waiting in stock's outbox"

            await stations.start()
            await stock.start()

            async def hold_applied() -> bool:
                applied = await conn.fetchval(
                    """SELECT count(*) FROM stations.inbox WHERE event_id IN
                       (SELECT event_id FROM stock.outbox WHERE site_id = $1
                        AND destination = 'stations')""",
                    line.site_id,
                )
                return applied == 1

            assert await eventually(hold_applied), "the hold never reached stations"
            for card in ("P-001", "P-002", "P-003"):
                refusal = await refused(line.scan("WELD", card))
                assert refusal.reason == "LOT_QUARANTINED"
            assert cards_by_lot(await line.cards("P")) == {"P-OPENING": 3 * CONTAINER}
    finally:
        await conn.close()
