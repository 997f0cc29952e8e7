"""The orders service's domain metrics."""

from prometheus_client import Counter, Gauge, Histogram

from services.core.db import Database
from services.orders import storage
from services.orders.domain import OrderState

# Orders take hours to weeks.
_LEAD_TIME_BUCKETS = (
    300,
    900,
    1800,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    16 * 3600,
    86400,
    2 * 86400,
    4 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
)

ORDERS = Gauge("kanban_orders", "Orders by state.", ("site_id", "state"))
OPEN_UNITS = Gauge(
    "kanban_order_open_units",
    "Units still to make for OPEN and RELEASED orders (quantity not yet made).",
    ("site_id", "item_id"),
)
MADE_UNITS = Gauge(
    "kanban_order_made_units",
    "Units the pacemaker completed for orders, all orders of the item together.",
    ("site_id", "item_id"),
)
LEAD_TIME = Histogram(
    "kanban_order_lead_time_seconds",
    "From an order's creation until it is COMPLETED.",
    ("site_id", "item_id"),
    buckets=_LEAD_TIME_BUCKETS,
)
INSTRUCTIONS_RELEASED = Counter(
    "kanban_order_instructions_released",
    "Production instructions (one per container) released to pacemaker stations.",
    ("site_id", "item_id"),
)
COMPLETIONS_IGNORED = Counter(
    "kanban_order_completions_ignored",
    "Instruction completions received that counted for no order, by reason.",
    ("site_id", "reason"),
)


async def refresh_gauges(db: Database) -> None:
    """Gauges come from the database, so every replica reports the same truth."""
    async with db.pool.acquire() as conn:
        totals = await storage.totals(conn)
    by_site: dict[str, dict[OrderState, int]] = {}
    for t in totals:
        counts = by_site.setdefault(t.site_id, dict.fromkeys(OrderState, 0))
        for state, n in t.orders_by_state.items():
            counts[state] += n
        OPEN_UNITS.labels(t.site_id, t.item_id).set(t.open_units)
        MADE_UNITS.labels(t.site_id, t.item_id).set(t.made_units)
    for site_id, counts in by_site.items():
        for state, n in counts.items():
            ORDERS.labels(site_id, state.value).set(n)
