"""gRPC face of the stock service: translates messages, nothing more."""

from kanban.stock.v1 import stock_pb2 as pb
from kanban.stock.v1 import stock_pb2_grpc

from services.core.auth import actor
from services.core.config import Settings
from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.protobuf import (
    enum_from_proto,
    enum_to_proto,
    read_timestamp,
    required_enum,
    timestamp,
)
from services.core.server import Components
from services.stock import commands, service
from services.stock.domain import (
    Count,
    CountState,
    Disposition,
    Entry,
    Item,
    Location,
    LocationKind,
    Lot,
    LotStatus,
    Outcome,
    ReceiptSource,
    Threshold,
    Warehouse,
)


def _warehouse(w: Warehouse) -> pb.Warehouse:
    return pb.Warehouse(site_id=w.site_id, warehouse_id=w.warehouse_id, name=w.name)


def _location(loc: Location) -> pb.Location:
    return pb.Location(
        site_id=loc.site_id,
        location_id=loc.location_id,
        warehouse_id=loc.warehouse_id,
        kind=enum_to_proto(pb.LocationKind, loc.kind),
    )


def _item(item: Item) -> pb.Item:
    return pb.Item(site_id=item.site_id, item_id=item.item_id, unit_of_measure=item.unit_of_measure)


def _movement(e: Entry) -> pb.Movement:
    return pb.Movement(
        movement_id=e.movement_id,
        site_id=e.site_id,
        kind=enum_to_proto(pb.MovementKind, e.kind),
        location_id=e.location_id,
        item_id=e.item_id,
        lot_id=e.lot_id,
        quantity=e.quantity,
        actor=e.actor,
        reason=e.reason,
        reference=e.reference,
        request_id=e.request_id,
        occurred_at=timestamp(e.occurred_at),
    )


def _body(entries: list[Entry]) -> pb.MovementResponseBody:
    return pb.MovementResponseBody(entries=[_movement(e) for e in entries])


def _lot(lot: Lot, on_hand: int) -> pb.Lot:
    return pb.Lot(
        site_id=lot.site_id,
        lot_id=lot.lot_id,
        item_id=lot.item_id,
        status=enum_to_proto(pb.LotStatus, lot.status),
        source=enum_to_proto(pb.ReceiptSource, lot.source),
        origin_id=lot.origin_id,
        on_hand=on_hand,
        hold_reason=lot.hold_reason,
        disposition_id=lot.disposition_id,
        created_at=timestamp(lot.created_at),
    )


def _disposition(d: Disposition) -> pb.Disposition:
    return pb.Disposition(
        site_id=d.site_id,
        disposition_id=d.disposition_id,
        lot_id=d.lot_id,
        item_id=d.item_id,
        reason=d.reason,
        open=d.outcome is None,
        outcome=enum_to_proto(pb.DispositionOutcome, d.outcome),
        quarantined_quantity=d.quarantined_quantity,
        consumed_before_hold=d.consumed_before_hold,
        opened_by=d.opened_by,
        closed_by=d.closed_by,
        closing_comment=d.closing_comment,
        opened_at=timestamp(d.opened_at),
        closed_at=timestamp(d.closed_at) if d.closed_at else None,
    )


def _count(c: Count) -> pb.Count:
    reconciled = c.state is not CountState.OPEN
    return pb.Count(
        site_id=c.site_id,
        count_id=c.count_id,
        location_id=c.location_id,
        state=enum_to_proto(pb.CountState, c.state),
        tolerance_percent=c.tolerance_percent,
        lines=[
            pb.CountLine(
                item_id=line.item_id,
                lot_id=line.lot_id,
                counted_quantity=line.counted_quantity,
                book_quantity=line.book_quantity or 0,
                variance=line.variance if reconciled else 0,
                within_tolerance=reconciled and line.within(c.tolerance_percent),
            )
            for line in c.lines
        ],
        opened_by=c.opened_by,
        opened_at=timestamp(c.opened_at),
        closed_at=timestamp(c.closed_at) if c.closed_at else None,
    )


def _threshold(t: Threshold) -> pb.Threshold:
    return pb.Threshold(
        site_id=t.site_id,
        item_id=t.item_id,
        location_id=t.location_id,
        safety_stock=t.safety_stock,
        overstock=t.overstock,
        state=t.state.value,
    )


class StockServicer(stock_pb2_grpc.StockServiceServicer):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self._db = db

    # Master data

    async def CreateWarehouse(
        self, request: pb.CreateWarehouseRequest, context: object
    ) -> pb.CreateWarehouseResponse:
        warehouse = await service.create_warehouse(
            self._db,
            commands.CreateWarehouse(
                request.request_id, request.site_id, request.warehouse_id, request.name
            ),
        )
        return pb.CreateWarehouseResponse(warehouse=_warehouse(warehouse))

    async def CreateLocation(
        self, request: pb.CreateLocationRequest, context: object
    ) -> pb.CreateLocationResponse:
        location = await service.create_location(
            self._db,
            commands.CreateLocation(
                request.request_id,
                request.site_id,
                request.location_id,
                request.warehouse_id,
                required_enum(pb.LocationKind, LocationKind, request.kind, "kind"),
            ),
        )
        return pb.CreateLocationResponse(location=_location(location))

    async def ListLocations(
        self, request: pb.ListLocationsRequest, context: object
    ) -> pb.ListLocationsResponse:
        page = await service.list_locations(
            self._db,
            request.site_id,
            request.warehouse_id,
            enum_from_proto(pb.LocationKind, LocationKind, request.kind, "kind"),
            request.page_size,
            request.page_token,
        )
        return pb.ListLocationsResponse(
            locations=[_location(loc) for loc in page.rows], next_page_token=page.next_page_token
        )

    async def CreateItem(
        self, request: pb.CreateItemRequest, context: object
    ) -> pb.CreateItemResponse:
        item = await service.create_item(
            self._db,
            commands.CreateItem(
                request.request_id, request.site_id, request.item_id, request.unit_of_measure
            ),
        )
        return pb.CreateItemResponse(item=_item(item))

    # Movements

    async def ReceiveStock(
        self, request: pb.ReceiveStockRequest, context: object
    ) -> pb.ReceiveStockResponse:
        posted = await service.receive_stock(
            self._db,
            commands.ReceiveStock(
                request.request_id,
                request.site_id,
                actor(),
                request.location_id,
                request.item_id,
                request.lot_id,
                request.quantity,
                required_enum(pb.ReceiptSource, ReceiptSource, request.source, "source"),
                request.origin_id,
                request.reason,
            ),
        )
        return pb.ReceiveStockResponse(movement=_body(posted.entries))

    async def IssueStock(
        self, request: pb.IssueStockRequest, context: object
    ) -> pb.IssueStockResponse:
        if request.destination == pb.ISSUE_DESTINATION_UNSPECIFIED:
            raise InvalidArgument("destination", "is required: STATION or ORDER")
        if request.destination not in pb.IssueDestination.values():
            raise InvalidArgument("destination", f"unknown value {request.destination}")
        posted = await service.issue_stock(
            self._db,
            commands.IssueStock(
                request.request_id,
                request.site_id,
                actor(),
                request.location_id,
                request.item_id,
                request.lot_id,
                request.quantity,
                request.destination == pb.ISSUE_DESTINATION_STATION,
                request.destination_id,
                request.reason,
            ),
        )
        return pb.IssueStockResponse(movement=_body(posted.entries))

    async def TransferStock(
        self, request: pb.TransferStockRequest, context: object
    ) -> pb.TransferStockResponse:
        posted = await service.transfer_stock(
            self._db,
            commands.TransferStock(
                request.request_id,
                request.site_id,
                actor(),
                request.from_location_id,
                request.to_location_id,
                request.item_id,
                request.lot_id,
                request.quantity,
                request.reason,
            ),
        )
        return pb.TransferStockResponse(movement=_body(posted.entries))

    async def ReturnToSupplier(
        self, request: pb.ReturnToSupplierRequest, context: object
    ) -> pb.ReturnToSupplierResponse:
        posted = await service.return_to_supplier(
            self._db,
            commands.ReturnToSupplier(
                request.request_id,
                request.site_id,
                actor(),
                request.location_id,
                request.item_id,
                request.lot_id,
                request.quantity,
                request.supplier_id,
                request.reason,
            ),
        )
        return pb.ReturnToSupplierResponse(movement=_body(posted.entries))

    async def ScrapStock(
        self, request: pb.ScrapStockRequest, context: object
    ) -> pb.ScrapStockResponse:
        posted = await service.scrap_stock(
            self._db,
            commands.ScrapStock(
                request.request_id,
                request.site_id,
                actor(),
                request.location_id,
                request.item_id,
                request.lot_id,
                request.quantity,
                request.reason,
            ),
        )
        return pb.ScrapStockResponse(movement=_body(posted.entries))

    async def AdjustStock(
        self, request: pb.AdjustStockRequest, context: object
    ) -> pb.AdjustStockResponse:
        posted = await service.adjust_stock(
            self._db,
            commands.AdjustStock(
                request.request_id,
                request.site_id,
                actor(),
                request.location_id,
                request.item_id,
                request.lot_id,
                request.quantity_delta,
                request.reason,
            ),
        )
        return pb.AdjustStockResponse(movement=_body(posted.entries))

    # Quality

    async def GetLot(self, request: pb.GetLotRequest, context: object) -> pb.GetLotResponse:
        found = await service.get_lot(self._db, request.site_id, request.lot_id)
        return pb.GetLotResponse(lot=_lot(found.lot, found.on_hand))

    async def QuarantineLot(
        self, request: pb.QuarantineLotRequest, context: object
    ) -> pb.QuarantineLotResponse:
        result = await service.quarantine_lot(
            self._db,
            commands.QuarantineLot(
                request.request_id, request.site_id, actor(), request.lot_id, request.reason
            ),
        )
        return pb.QuarantineLotResponse(
            lot=_lot(result.lot, result.on_hand), disposition=_disposition(result.disposition)
        )

    async def ReleaseLot(
        self, request: pb.ReleaseLotRequest, context: object
    ) -> pb.ReleaseLotResponse:
        result = await service.release_lot(
            self._db,
            commands.ReleaseLot(
                request.request_id, request.site_id, actor(), request.lot_id, request.comment
            ),
        )
        return pb.ReleaseLotResponse(
            lot=_lot(result.lot, result.on_hand), disposition=_disposition(result.disposition)
        )

    async def GetDisposition(
        self, request: pb.GetDispositionRequest, context: object
    ) -> pb.GetDispositionResponse:
        disposition = await service.get_disposition(
            self._db, request.site_id, request.disposition_id
        )
        return pb.GetDispositionResponse(disposition=_disposition(disposition))

    async def ListDispositions(
        self, request: pb.ListDispositionsRequest, context: object
    ) -> pb.ListDispositionsResponse:
        page = await service.list_dispositions(
            self._db, request.site_id, request.open_only, request.page_size, request.page_token
        )
        return pb.ListDispositionsResponse(
            dispositions=[_disposition(d) for d in page.rows],
            next_page_token=page.next_page_token,
        )

    async def CloseDisposition(
        self, request: pb.CloseDispositionRequest, context: object
    ) -> pb.CloseDispositionResponse:
        result = await service.close_disposition(
            self._db,
            commands.CloseDisposition(
                request.request_id,
                request.site_id,
                actor(),
                request.disposition_id,
                required_enum(pb.DispositionOutcome, Outcome, request.outcome, "outcome"),
                request.scrapped_quantity,
                request.comment,
            ),
        )
        return pb.CloseDispositionResponse(
            lot=_lot(result.lot, result.on_hand),
            disposition=_disposition(result.disposition),
            entries=[_movement(e) for e in result.entries],
        )

    async def TraceLot(self, request: pb.TraceLotRequest, context: object) -> pb.TraceLotResponse:
        if request.direction == pb.TRACE_DIRECTION_UNSPECIFIED:
            raise InvalidArgument("direction", "is required: BACKWARD or FORWARD")
        if request.direction not in pb.TraceDirection.values():
            raise InvalidArgument("direction", f"unknown value {request.direction}")
        found, links = await service.trace_lot(
            self._db,
            request.site_id,
            request.lot_id,
            request.direction == pb.TRACE_DIRECTION_BACKWARD,
            request.max_depth,
        )
        return pb.TraceLotResponse(
            lot=_lot(found.lot, found.on_hand),
            links=[
                pb.TraceLink(
                    lot_id=link.lot_id,
                    item_id=link.item_id,
                    made_lot_id=link.made_lot_id,
                    made_item_id=link.made_item_id,
                    station_id=link.station_id,
                    depth=link.depth,
                )
                for link in links
            ],
        )

    # Cycle counts

    async def OpenCount(
        self, request: pb.OpenCountRequest, context: object
    ) -> pb.OpenCountResponse:
        count = await service.open_count(
            self._db,
            commands.OpenCount(
                request.request_id,
                request.site_id,
                actor(),
                request.count_id,
                request.location_id,
                request.tolerance_percent,
            ),
        )
        return pb.OpenCountResponse(count=_count(count))

    async def RecordCount(
        self, request: pb.RecordCountRequest, context: object
    ) -> pb.RecordCountResponse:
        count = await service.record_count(
            self._db,
            commands.RecordCount(
                request.request_id,
                request.site_id,
                actor(),
                request.count_id,
                request.item_id,
                request.lot_id,
                request.counted_quantity,
            ),
        )
        return pb.RecordCountResponse(count=_count(count))

    async def ReconcileCount(
        self, request: pb.ReconcileCountRequest, context: object
    ) -> pb.ReconcileCountResponse:
        result = await service.reconcile_count(
            self._db,
            commands.ReconcileCount(request.request_id, request.site_id, actor(), request.count_id),
        )
        return pb.ReconcileCountResponse(
            count=_count(result.count), entries=[_movement(e) for e in result.entries]
        )

    async def ApproveCount(
        self, request: pb.ApproveCountRequest, context: object
    ) -> pb.ApproveCountResponse:
        result = await service.approve_count(
            self._db,
            commands.ApproveCount(
                request.request_id,
                request.site_id,
                actor(),
                request.count_id,
                request.comment,
            ),
        )
        return pb.ApproveCountResponse(
            count=_count(result.count), entries=[_movement(e) for e in result.entries]
        )

    async def GetCount(self, request: pb.GetCountRequest, context: object) -> pb.GetCountResponse:
        count = await service.get_count(self._db, request.site_id, request.count_id)
        return pb.GetCountResponse(count=_count(count))

    # Thresholds

    async def SetThreshold(
        self, request: pb.SetThresholdRequest, context: object
    ) -> pb.SetThresholdResponse:
        threshold = await service.set_threshold(
            self._db,
            commands.SetThreshold(
                request.request_id,
                request.site_id,
                request.item_id,
                request.location_id,
                request.safety_stock,
                request.overstock,
            ),
        )
        return pb.SetThresholdResponse(threshold=_threshold(threshold))

    async def ListThresholds(
        self, request: pb.ListThresholdsRequest, context: object
    ) -> pb.ListThresholdsResponse:
        page = await service.list_thresholds(
            self._db, request.site_id, request.item_id, request.page_size, request.page_token
        )
        return pb.ListThresholdsResponse(
            thresholds=[_threshold(t) for t in page.rows], next_page_token=page.next_page_token
        )

    # Queries

    async def GetStockLevels(
        self, request: pb.GetStockLevelsRequest, context: object
    ) -> pb.GetStockLevelsResponse:
        page = await service.get_stock_levels(
            self._db,
            service.StockQuery(
                site_id=request.site_id,
                location_id=request.location_id,
                item_id=request.item_id,
                lot_id=request.lot_id,
                warehouse_id=request.warehouse_id,
                lot_status=enum_from_proto(
                    pb.LotStatus, LotStatus, request.lot_status, "lot_status"
                ),
                include_empty=request.include_empty,
                as_of=read_timestamp("as_of", request),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        return pb.GetStockLevelsResponse(
            levels=[
                pb.StockLevel(
                    site_id=level.site_id,
                    location_id=level.location_id,
                    item_id=level.item_id,
                    lot_id=level.lot_id,
                    on_hand=level.on_hand,
                    lot_status=enum_to_proto(pb.LotStatus, level.lot_status),
                )
                for level in page.rows
            ],
            next_page_token=page.next_page_token,
        )

    async def ListMovements(
        self, request: pb.ListMovementsRequest, context: object
    ) -> pb.ListMovementsResponse:
        page = await service.list_movements(
            self._db,
            request.site_id,
            request.item_id,
            request.location_id,
            request.lot_id,
            read_timestamp("since", request),
            read_timestamp("until", request),
            request.page_size,
            request.page_token,
        )
        return pb.ListMovementsResponse(
            movements=[_movement(e) for e in page.rows], next_page_token=page.next_page_token
        )

    async def ListItemTurnover(
        self, request: pb.ListItemTurnoverRequest, context: object
    ) -> pb.ListItemTurnoverResponse:
        page = await service.list_item_turnover(
            self._db,
            request.site_id,
            request.item_id,
            request.window_days,
            request.page_size,
            request.page_token,
        )
        return pb.ListItemTurnoverResponse(
            items=[
                pb.ItemTurnover(
                    item_id=t.item_id,
                    unit_of_measure=t.unit_of_measure,
                    on_hand=t.on_hand,
                    issued=t.issued,
                    average_on_hand=t.average_on_hand,
                    turnover=t.turnover,
                    annual_turnover=t.annual_turnover,
                    days_of_supply=t.days_of_supply,
                )
                for t in page.items
            ],
            window_start=timestamp(page.window_start),
            window_end=timestamp(page.window_end),
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
