"""The alerts service (placeholder: health, reflection and metrics only)."""

from pathlib import Path

from services.alerts.servicer import assemble
from services.core.server import ServiceSpec

SPEC = ServiceSpec(name="alerts", directory=Path(__file__).parent, assemble=assemble)
