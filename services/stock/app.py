"""The stock service: on-hand per location, item and lot, moved by events."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.stock.metrics import refresh_gauges
from services.stock.service import apply_event
from services.stock.servicer import assemble

SPEC = ServiceSpec(
    name="stock",
    directory=Path(__file__).parent,
    assemble=assemble,
    apply_event=apply_event,
    refresh_gauges=refresh_gauges,
)
