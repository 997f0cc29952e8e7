"""Who may call each RPC of the stock service."""

from services.core.auth import Role, allow, for_service

READ_STOCK = allow(Role.PLANNER, Role.WAREHOUSE, Role.QUALITY, Role.PURCHASING, Role.ADMIN)
MOVE_STOCK = allow(Role.WAREHOUSE)
QUALITY = allow(Role.QUALITY)
MASTER_DATA = allow(Role.WAREHOUSE, Role.ADMIN)

PERMISSIONS = for_service(
    "kanban.stock.v1.StockService",
    {
        "CreateWarehouse": MASTER_DATA,
        "CreateLocation": MASTER_DATA,
        "CreateItem": MASTER_DATA,
        "ListLocations": READ_STOCK,
        "ReceiveStock": MOVE_STOCK,
        "IssueStock": MOVE_STOCK,
        "TransferStock": MOVE_STOCK,
        "ReturnToSupplier": MOVE_STOCK,
        "ScrapStock": MOVE_STOCK,
        "AdjustStock": MOVE_STOCK,
        "GetLot": READ_STOCK,
        "QuarantineLot": QUALITY,
        "ReleaseLot": QUALITY,
        "CloseDisposition": QUALITY,
        "GetDisposition": READ_STOCK,
        "ListDispositions": READ_STOCK,
        "TraceLot": READ_STOCK,
        "OpenCount": MOVE_STOCK,
        "RecordCount": MOVE_STOCK,
        "ReconcileCount": MOVE_STOCK,
        # Booking a variance beyond tolerance: the warehouse lead or the planner.
        "ApproveCount": allow(Role.WAREHOUSE, Role.PLANNER),
        "GetCount": READ_STOCK,
        # Safety stock and overstock lines are the planner's and purchasing's.
        "SetThreshold": allow(Role.PLANNER, Role.PURCHASING),
        "ListThresholds": READ_STOCK,
        "GetStockLevels": READ_STOCK,
        "ListMovements": READ_STOCK,
        "ListItemTurnover": READ_STOCK,
    },
)
