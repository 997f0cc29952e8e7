"""The stations service: kanban loops, cards and the signals that pull production."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.stations.service import DESTINATIONS
from services.stations.servicer import assemble

SPEC = ServiceSpec(
    name="stations", directory=Path(__file__).parent, assemble=assemble, destinations=DESTINATIONS
)
