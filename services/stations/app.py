"""The stations service: kanban loops, cards and the signals that pull production."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.stations.metrics import refresh_gauges
from services.stations.permissions import PERMISSIONS
from services.stations.service import DESTINATIONS, apply_event
from services.stations.servicer import assemble

SPEC = ServiceSpec(
    name="stations",
    directory=Path(__file__).parent,
    assemble=assemble,
    permissions=PERMISSIONS,
    destinations=DESTINATIONS,
    apply_event=apply_event,
    refresh_gauges=refresh_gauges,
)
