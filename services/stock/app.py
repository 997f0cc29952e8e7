"""The stock service: warehouses, the movement ledger, lots, quality holds, counts."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.stock.metrics import refresh_gauges
from services.stock.permissions import PERMISSIONS
from services.stock.service import STATIONS_AND_ALERTS, apply_event
from services.stock.servicer import assemble

SPEC = ServiceSpec(
    name="stock",
    directory=Path(__file__).parent,
    assemble=assemble,
    permissions=PERMISSIONS,
    apply_event=apply_event,
    destinations=STATIONS_AND_ALERTS,
    refresh_gauges=refresh_gauges,
)
