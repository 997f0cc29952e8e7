"""gRPC face of the stock service: translates messages, nothing more."""

from kanban.stock.v1 import stock_pb2 as pb
from kanban.stock.v1 import stock_pb2_grpc

from services.core.config import Settings
from services.core.db import Database
from services.core.server import Components
from services.stock import service


class StockServicer(stock_pb2_grpc.StockServiceServicer):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self._db = db

    async def GetStockLevels(
        self, request: pb.GetStockLevelsRequest, context: object
    ) -> pb.GetStockLevelsResponse:
        page = await service.get_stock_levels(
            self._db,
            request.site_id,
            request.location_id,
            request.item_id,
            request.lot_id,
            request.include_empty,
            request.page_size,
            request.page_token,
        )
        return pb.GetStockLevelsResponse(
            levels=[
                pb.StockLevel(
                    site_id=level.site_id,
                    location_id=level.location_id,
                    item_id=level.item_id,
                    lot_id=level.lot_id,
                    on_hand=level.on_hand,
                )
                for level in page.levels
            ],
            next_page_token=page.next_page_token,
        )


def assemble(db: Database, settings: Settings) -> Components:
    return Components(
        servicers=[
            (stock_pb2_grpc.add_StockServiceServicer_to_server, StockServicer(db)),
        ],
        service_names=[
            pb.DESCRIPTOR.services_by_name["StockService"].full_name,
        ],
    )
