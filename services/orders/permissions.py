"""Who may call each RPC of the orders service."""

from services.core.auth import Role, allow, for_service

READ_ORDERS = allow(Role.ERP, Role.PLANNER, Role.ADMIN)

PERMISSIONS = for_service(
    "kanban.orders.v1.OrdersService",
    {
        "DefineProduct": allow(Role.PLANNER, Role.ERP),
        "CreateOrder": allow(Role.ERP),
        "ChangeOrderQuantity": allow(Role.ERP),
        "CancelOrder": allow(Role.ERP),
        # The planner releases orders to the line; an ERP may release its own.
        "ReleaseOrder": allow(Role.ERP, Role.PLANNER),
        "GetOrder": READ_ORDERS,
        "ListOrders": READ_ORDERS,
        "WatchOrders": READ_ORDERS,
    },
)
