"""The end-to-end tests' services: real processes on free ports
(services/devstack/processes.py), to be killed with SIGKILL and started again."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.devstack.processes import ROOT, Launcher, ServiceProcess, open_channel
from tests.conftest import fresh_database

# What the e2e tests import from here.
__all__ = ["ROOT", "Launcher", "ServiceProcess", "open_channel"]

SETTINGS = {
    "KANBAN_HEARTBEAT_SECONDS": "0.5",
    "KANBAN_SHUTDOWN_GRACE_SECONDS": "1",
    "KANBAN_LOG_LEVEL": "INFO",
    # The line's analysis gauges within a second of the data, for the dashboards' test.
    "KANBAN_ANALYSIS_REFRESH_SECONDS": "1",
    # These tests kill processes; tests/integration/test_access.py covers tokens.
    "KANBAN_AUTH": "off",
}


@pytest.fixture(scope="session")
async def database_url(database_url: str) -> str:
    """A database of their own on the test server.

    Replicas of stations share its outbox: the in-process stations of
    tests/integration would otherwise relay these tests' events to its own stock,
    and the tests would not see what they kill.
    """
    return await fresh_database(database_url)


@pytest.fixture
async def launcher(database_url: str, tmp_path: Path) -> AsyncIterator[Launcher]:
    running = Launcher(database_url, tmp_path, SETTINGS)
    try:
        yield running
    finally:
        await running.close()
