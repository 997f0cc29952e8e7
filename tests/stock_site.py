"""A fresh stock site for tests: a warehouse with bins and a quarantine area, a
line-side location, and two items; plus short calls for the movements."""

import json
from typing import Any

import asyncpg
from kanban.stock.v1 import stock_pb2 as pb
from kanban.stock.v1 import stock_pb2_grpc

from tests.conftest import new_id

ACTOR = "ana.quality"


class StockSite:
    def __init__(self, stub: stock_pb2_grpc.StockServiceStub, site_id: str) -> None:
        self.stub = stub
        self.site_id = site_id
        self.metadata = (("kanban-actor", ACTOR),)

    async def create(self) -> "StockSite":
        s = self.stub
        await s.CreateWarehouse(
            pb.CreateWarehouseRequest(
                request_id=new_id("r"), site_id=self.site_id, warehouse_id="WH", name="Main"
            )
        )
        for location, kind in (
            ("BIN-A", pb.LOCATION_KIND_WAREHOUSE_BIN),
            ("BIN-B", pb.LOCATION_KIND_WAREHOUSE_BIN),
            ("QA", pb.LOCATION_KIND_QUARANTINE),
        ):
            await s.CreateLocation(
                pb.CreateLocationRequest(
                    request_id=new_id("r"),
                    site_id=self.site_id,
                    location_id=location,
                    warehouse_id="WH",
                    kind=kind,
                )
            )
        await s.CreateLocation(
            pb.CreateLocationRequest(
                request_id=new_id("r"),
                site_id=self.site_id,
                location_id="LS-STAMP",
                kind=pb.LOCATION_KIND_LINE_SIDE,
            )
        )
        for item, unit in (("RAW", "kg"), ("PART", "pcs")):
            await s.CreateItem(
                pb.CreateItemRequest(
                    request_id=new_id("r"), site_id=self.site_id, item_id=item, unit_of_measure=unit
                )
            )
        return self

    async def receive(
        self,
        lot: str,
        quantity: int,
        *,
        location: str = "BIN-A",
        item: str = "RAW",
        request_id: str = "",
    ) -> pb.ReceiveStockResponse:
        return await self.stub.ReceiveStock(
            pb.ReceiveStockRequest(
                request_id=request_id or new_id("r"),
                site_id=self.site_id,
                location_id=location,
                item_id=item,
                lot_id=lot,
                quantity=quantity,
                source=pb.RECEIPT_SOURCE_SUPPLIER,
                origin_id="ACME",
                reason="purchase order 4711",
            ),
            metadata=self.metadata,
        )

    async def issue(
        self,
        lot: str,
        quantity: int,
        *,
        location: str = "BIN-A",
        item: str = "RAW",
        station: str = "STAMP",
        request_id: str = "",
    ) -> pb.IssueStockResponse:
        return await self.stub.IssueStock(
            pb.IssueStockRequest(
                request_id=request_id or new_id("r"),
                site_id=self.site_id,
                location_id=location,
                item_id=item,
                lot_id=lot,
                quantity=quantity,
                destination=pb.ISSUE_DESTINATION_STATION,
                destination_id=station,
            ),
            metadata=self.metadata,
        )

    async def transfer(
        self, lot: str, quantity: int, source: str, target: str, *, item: str = "RAW"
    ) -> pb.TransferStockResponse:
        return await self.stub.TransferStock(
            pb.TransferStockRequest(
                request_id=new_id("r"),
                site_id=self.site_id,
                from_location_id=source,
                to_location_id=target,
                item_id=item,
                lot_id=lot,
                quantity=quantity,
            ),
            metadata=self.metadata,
        )

    async def quarantine(self, lot: str, reason: str = "cracks found") -> pb.QuarantineLotResponse:
        return await self.stub.QuarantineLot(
            pb.QuarantineLotRequest(
                request_id=new_id("r"), site_id=self.site_id, lot_id=lot, reason=reason
            ),
            metadata=self.metadata,
        )

    async def lot(self, lot: str) -> pb.Lot:
        reply = await self.stub.GetLot(pb.GetLotRequest(site_id=self.site_id, lot_id=lot))
        return reply.lot

    async def levels(self, **filters) -> dict[tuple[str, str], int]:
        """On hand per (location, lot), every page."""
        found: dict[tuple[str, str], int] = {}
        token = ""
        while True:
            reply = await self.stub.GetStockLevels(
                pb.GetStockLevelsRequest(
                    site_id=self.site_id, page_size=2, page_token=token, **filters
                )
            )
            found.update({(lv.location_id, lv.lot_id): lv.on_hand for lv in reply.levels})
            if not (token := reply.next_page_token):
                return found

    async def movements(self, **filters) -> list[pb.Movement]:
        found: list[pb.Movement] = []
        token = ""
        while True:
            reply = await self.stub.ListMovements(
                pb.ListMovementsRequest(
                    site_id=self.site_id, page_size=3, page_token=token, **filters
                )
            )
            found += reply.movements
            if not (token := reply.next_page_token):
                return found


async def events_sent(database_url: str, site_id: str, event_type: str) -> list[dict[str, Any]]:
    """Payloads of the stock service's outbox events of a type for a site, in order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT payload FROM stock.outbox WHERE site_id = $1 AND event_type = $2
               AND destination = 'alerts' ORDER BY id""",
            site_id,
            event_type,
        )
    finally:
        await conn.close()
    return [json.loads(r["payload"]) for r in rows]
