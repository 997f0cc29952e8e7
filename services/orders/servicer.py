"""gRPC face of the orders service: translates messages, nothing more."""

from collections.abc import AsyncIterator

from kanban.orders.v1 import orders_pb2 as pb
from kanban.orders.v1 import orders_pb2_grpc

from services.core.config import Settings
from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.notify import Notifications
from services.core.protobuf import read_timestamp, timestamp
from services.core.server import Components
from services.orders import commands, service, storage
from services.orders.domain import Order, OrderState, Product

_STATES = {
    OrderState.OPEN: pb.ORDER_STATE_OPEN,
    OrderState.RELEASED: pb.ORDER_STATE_RELEASED,
    OrderState.COMPLETED: pb.ORDER_STATE_COMPLETED,
    OrderState.CANCELLED: pb.ORDER_STATE_CANCELLED,
}
_STATE_FILTERS: dict[int, OrderState | None] = {
    pb.ORDER_STATE_UNSPECIFIED: None,
    **{value: state for state, value in _STATES.items()},
}


def _state_filter(value: int) -> OrderState | None:
    if value not in _STATE_FILTERS:
        raise InvalidArgument("state", f"unknown order state {value}")
    return _STATE_FILTERS[value]


def _product(product: Product) -> pb.Product:
    return pb.Product(
        site_id=product.site_id,
        item_id=product.item_id,
        pacemaker_station_id=product.pacemaker_station_id,
        container_quantity=product.container_quantity,
        finished_goods_location_id=product.finished_goods_location_id,
    )


def _order(order: Order) -> pb.Order:
    return pb.Order(
        site_id=order.site_id,
        erp_order_id=order.erp_order_id,
        item_id=order.item_id,
        quantity=order.quantity,
        made_quantity=order.made_quantity,
        due_time=timestamp(order.due_time),
        priority=order.priority,
        state=_STATES[order.state],
        created_at=timestamp(order.created_at),
        updated_at=timestamp(order.updated_at),
        cancel_reason=order.cancel_reason,
    )


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):  # type: ignore[misc]
    def __init__(self, db: Database, notifications: Notifications, settings: Settings) -> None:
        self._db = db
        self._notifications = notifications
        self._settings = settings

    async def DefineProduct(
        self, request: pb.DefineProductRequest, context: object
    ) -> pb.DefineProductResponse:
        cmd = commands.DefineProduct(
            request_id=request.request_id,
            site_id=request.site_id,
            item_id=request.item_id,
            pacemaker_station_id=request.pacemaker_station_id,
            container_quantity=request.container_quantity,
            finished_goods_location_id=request.finished_goods_location_id,
        )
        return pb.DefineProductResponse(
            product=_product(await service.define_product(self._db, cmd))
        )

    async def CreateOrder(
        self, request: pb.CreateOrderRequest, context: object
    ) -> pb.CreateOrderResponse:
        cmd = commands.CreateOrder(
            request_id=request.request_id,
            site_id=request.site_id,
            erp_order_id=request.erp_order_id,
            item_id=request.item_id,
            quantity=request.quantity,
            due_time=read_timestamp("due_time", request),
            priority=request.priority,
        )
        return pb.CreateOrderResponse(order=_order(await service.create_order(self._db, cmd)))

    async def GetOrder(self, request: pb.GetOrderRequest, context: object) -> pb.GetOrderResponse:
        order = await service.get_order(self._db, request.site_id, request.erp_order_id)
        return pb.GetOrderResponse(order=_order(order))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: object
    ) -> pb.ListOrdersResponse:
        query = commands.ListOrders(
            site_id=request.site_id,
            state=_state_filter(request.state),
            item_id=request.item_id,
            due_after=read_timestamp("due_after", request),
            due_before=read_timestamp("due_before", request),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        page = await service.list_orders(self._db, query)
        return pb.ListOrdersResponse(
            orders=[_order(o) for o in page.orders], next_page_token=page.next_page_token
        )

    async def ReleaseOrder(
        self, request: pb.ReleaseOrderRequest, context: object
    ) -> pb.ReleaseOrderResponse:
        cmd = commands.ReleaseOrder(request.request_id, request.site_id, request.erp_order_id)
        return pb.ReleaseOrderResponse(order=_order(await service.release_order(self._db, cmd)))

    async def ChangeOrderQuantity(
        self, request: pb.ChangeOrderQuantityRequest, context: object
    ) -> pb.ChangeOrderQuantityResponse:
        cmd = commands.ChangeOrderQuantity(
            request.request_id, request.site_id, request.erp_order_id, request.quantity
        )
        order = await service.change_order_quantity(self._db, cmd)
        return pb.ChangeOrderQuantityResponse(order=_order(order))

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: object
    ) -> pb.CancelOrderResponse:
        cmd = commands.CancelOrder(
            request.request_id, request.site_id, request.erp_order_id, request.reason
        )
        return pb.CancelOrderResponse(order=_order(await service.cancel_order(self._db, cmd)))

    async def WatchOrders(
        self, request: pb.WatchOrdersRequest, context: object
    ) -> AsyncIterator[pb.WatchOrdersResponse]:
        updates = service.watch_orders(
            self._db,
            self._notifications,
            request.site_id,
            request.after_sequence,
            self._settings.heartbeat_seconds,
        )
        async for update in updates:
            if isinstance(update, storage.OrderUpdate):
                yield pb.WatchOrdersResponse(
                    update=pb.OrderUpdate(sequence=update.sequence, order=_order(update.order))
                )
            else:
                yield pb.WatchOrdersResponse(
                    heartbeat=pb.Heartbeat(
                        sent_at=timestamp(update.sent_at), last_sequence=update.last_sequence
                    )
                )


def assemble(db: Database, settings: Settings) -> Components:
    notifications = Notifications(settings.database_url, storage.UPDATES_CHANNEL)
    return Components(
        servicers=[
            (
                orders_pb2_grpc.add_OrdersServiceServicer_to_server,
                OrdersServicer(db, notifications, settings),
            ),
        ],
        service_names=[
            pb.DESCRIPTOR.services_by_name["OrdersService"].full_name,
        ],
        background=[notifications.run()],
        on_stop=[notifications.close],
    )
