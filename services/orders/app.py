"""The orders service: the ERP's orders, released to the line as production instructions."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.orders.metrics import refresh_gauges
from services.orders.permissions import PERMISSIONS
from services.orders.service import DESTINATIONS, apply_event
from services.orders.servicer import assemble

SPEC = ServiceSpec(
    name="orders",
    directory=Path(__file__).parent,
    assemble=assemble,
    permissions=PERMISSIONS,
    destinations=DESTINATIONS,
    apply_event=apply_event,
    refresh_gauges=refresh_gauges,
)
