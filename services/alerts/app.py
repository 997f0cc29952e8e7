"""The alerts service: rules over what the other services report, alerts, webhooks."""

from pathlib import Path

from services.alerts.metrics import refresh_gauges
from services.alerts.permissions import PERMISSIONS
from services.alerts.service import apply_event
from services.alerts.servicer import assemble
from services.core.server import ServiceSpec

SPEC = ServiceSpec(
    name="alerts",
    directory=Path(__file__).parent,
    assemble=assemble,
    permissions=PERMISSIONS,
    apply_event=apply_event,
    refresh_gauges=refresh_gauges,
)
