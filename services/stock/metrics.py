"""The stock service's domain metrics."""

from prometheus_client import Counter, Gauge

from services.core.db import Database
from services.stock import storage

ON_HAND = Gauge(
    "kanban_stock_on_hand_units",
    "Units on hand, by location and item.",
    ("site_id", "location_id", "item_id"),
)
MOVEMENTS = Counter(
    "kanban_stock_movements",
    "Stock movements recorded.",
    ("site_id", "kind"),
)
MOVEMENTS_REFUSED = Counter(
    "kanban_stock_movements_refused",
    "Movements refused: a receipt above a supermarket's cap, an issue above on-hand.",
    ("site_id", "location_id", "item_id", "reason"),
)


async def refresh_gauges(db: Database) -> None:
    async with db.pool.acquire() as conn:
        for row in await storage.on_hand_totals(conn):
            ON_HAND.labels(row["site_id"], row["location_id"], row["item_id"]).set(row["on_hand"])
