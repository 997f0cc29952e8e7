"""The stock service: on-hand per location, item and lot, moved by events."""

from pathlib import Path

from services.core.server import ServiceSpec
from services.stock.servicer import mount

SPEC = ServiceSpec(name="stock", directory=Path(__file__).parent, mount=mount)
