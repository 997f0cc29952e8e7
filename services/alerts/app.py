"""The alerts service: receives what the other services report (rules: the alerts issue)."""

from pathlib import Path

from services.alerts.service import apply_event
from services.alerts.servicer import assemble
from services.core.server import ServiceSpec

SPEC = ServiceSpec(
    name="alerts", directory=Path(__file__).parent, assemble=assemble, apply_event=apply_event
)
