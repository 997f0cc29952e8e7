"""The orders service (placeholder: health, reflection and metrics only)."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.orders.servicer import assemble

SPEC = ServiceSpec(name="orders", directory=Path(__file__).parent, assemble=assemble)
