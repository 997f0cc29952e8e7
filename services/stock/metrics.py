"""The stock service's domain metrics."""

from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Gauge, Histogram

from services.core.db import Database
from services.stock import storage
from services.stock.domain import days_of_supply

# Days of supply on the gauges look back this far for the rate of use.
SUPPLY_WINDOW = timedelta(days=30)
SECONDS_PER_DAY = timedelta(days=1).total_seconds()

ON_HAND = Gauge(
    "kanban_stock_on_hand_units",
    "Units on hand, by location, item and the status of their lots.",
    ("site_id", "location_id", "item_id", "lot_status"),
)
SUPPLY = Gauge(
    "kanban_stock_supply_seconds",
    "Days of supply, in seconds: how long the available stock of an item lasts at its "
    "use over the last 30 days (or since it first moved); absent for items not used.",
    ("site_id", "item_id"),
)
MOVEMENTS = Counter(
    "kanban_stock_movements",
    "Stock movements recorded in the ledger, by kind (a transfer counts twice).",
    ("site_id", "kind"),
)
MOVEMENTS_REFUSED = Counter(
    "kanban_stock_movements_refused",
    "Kanban movements refused: a receipt above a supermarket's cap, an issue above on-hand.",
    ("site_id", "location_id", "item_id", "reason"),
)
LOTS_QUARANTINED = Counter(
    "kanban_stock_lots_quarantined", "Lots put on quality hold.", ("site_id",)
)
DISPOSITIONS_CLOSED = Counter(
    "kanban_stock_dispositions_closed",
    "Quality dispositions closed, by outcome.",
    ("site_id", "outcome"),
)
COUNT_VARIANCE = Histogram(
    "kanban_stock_count_variance_units",
    "Absolute difference between counted and book quantity, per counted line.",
    ("site_id",),
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 500, 1000),
)
COUNT_ACCURACY = Gauge(
    "kanban_stock_count_accuracy_ratio",
    "Share of lines of the location's last reconciled count that matched the books.",
    ("site_id", "location_id"),
)
THRESHOLD_CROSSINGS = Counter(
    "kanban_stock_threshold_crossings",
    "Safety-stock and overstock lines crossed, by the state entered.",
    ("site_id", "state"),
)


async def refresh_gauges(db: Database) -> None:
    async with db.pool.acquire() as conn:
        on_hand = await storage.on_hand_by_status(conn)
        use = await storage.use_and_availability(conn, SUPPLY_WINDOW)
    ON_HAND.clear()
    for row in on_hand:
        ON_HAND.labels(row["site_id"], row["location_id"], row["item_id"], row["status"]).set(
            row["on_hand"]
        )
    SUPPLY.clear()
    now = datetime.now(UTC)
    for row in use:
        since = max(now - SUPPLY_WINDOW, row["first_moved_at"])
        days = days_of_supply(row["on_hand"], row["issued"], (now - since) / timedelta(days=1))
        if days is not None:
            SUPPLY.labels(row["site_id"], row["item_id"]).set(days * SECONDS_PER_DAY)
