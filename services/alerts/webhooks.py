"""Outgoing webhooks, for plants that want alerts in e-mail or chat: each alert
change is POSTed as JSON to every configured URL, retried with growing pauses
until the receiver answers 2xx. Deliveries are rows written with the change, so
a crash loses none."""

import asyncio
import urllib.error
import urllib.request

from services.alerts import metrics as m
from services.alerts import storage
from services.core.db import Database

BATCH = 10
TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4, ... 300."""
    return float(min(MAX_BACKOFF_SECONDS, 2 ** min(attempts, 16)))


def _post(url: str, body: str) -> None:
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS):
        pass  # urlopen raises on anything but 2xx/3xx


async def deliver_due(db: Database) -> None:
    """Sends what is due; rows stay locked while sent, so replicas send each once."""
    async with db.transaction() as conn:
        for row in await storage.due_webhooks(conn, BATCH):
            try:
                await asyncio.to_thread(_post, row["url"], row["body"])
            except (OSError, urllib.error.URLError) as error:
                await storage.webhook_failed(conn, row["id"], str(error), backoff(row["attempts"]))
                m.WEBHOOK_FAILURES.inc()
            else:
                await storage.webhook_delivered(conn, row["id"])
                m.WEBHOOKS_DELIVERED.inc()
