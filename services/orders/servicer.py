"""gRPC face of the orders service. Until its issue lands it serves health only."""

from services.core.config import Settings
from services.core.db import Database
from services.core.server import Components


def assemble(db: Database, settings: Settings) -> Components:
    return Components(servicers=[], service_names=[])
