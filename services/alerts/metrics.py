"""The alerts service's metrics."""

from prometheus_client import Counter, Gauge

from services.alerts import storage
from services.core.db import Database

FIRING = Gauge(
    "kanban_alerts_firing",
    "Alerts not yet resolved (firing or acknowledged), by rule and severity.",
    ("site_id", "rule", "severity"),
)
RAISED = Counter("kanban_alerts_raised", "Alerts fired.", ("site_id", "rule"))
RESOLVED = Counter("kanban_alerts_resolved", "Alerts resolved.", ("site_id", "rule"))
WEBHOOK_FAILURES = Counter(
    "kanban_alert_webhook_failures", "Webhook calls that failed and will be retried."
)
WEBHOOKS_DELIVERED = Counter("kanban_alert_webhooks_delivered", "Webhook calls delivered.")


async def refresh_gauges(db: Database) -> None:
    async with db.pool.acquire() as conn:
        rows = await storage.firing_counts(conn)
    FIRING.clear()
    for row in rows:
        FIRING.labels(row["site_id"], row["rule"], row["severity"]).set(row["open"])
