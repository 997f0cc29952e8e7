"""The benchmark splits PostgreSQL's time by client, from the backends of our
connections (tools/bench/usage.py), and counts a service's worker processes with it."""

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE

import pytest

from tools.bench import usage


async def test_our_connections_backends_are_found_and_named_by_client(stack, database_url):
    clients = await usage.postgres_clients(database_url)
    assert {"stations", "stations-relay", "stock", "alerts"} <= set(clients.values())
    measured = usage.Usage({}, None, clients)
    before = measured.client_cpu()
    assert set(before) == set(clients)  # each backend is a process of this machine
    split = measured.by_client(before, measured.client_cpu(), postgres=None)
    assert {"pg stations", "pg stations-relay"} <= set(split)
    assert all(seconds >= 0 for seconds in split.values())


# A process whose worker burns half a second of CPU, then says so and waits.
PARENT_WITH_WORKER = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", '''
import time
end = time.process_time() + 0.5
while time.process_time() < end:
    pass
print("burnt", flush=True)
time.sleep(600)
'''], stdout=subprocess.PIPE)
print(worker.stdout.readline().decode().strip(), worker.pid, flush=True)
try:
    worker.wait()
finally:
    worker.kill()
"""


async def test_a_services_cpu_and_memory_include_its_worker_processes():
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT_WITH_WORKER, stdout=PIPE
    )
    assert parent.stdout is not None
    said, worker = (await asyncio.wait_for(parent.stdout.readline(), 60)).decode().split()
    try:
        assert said == "burnt"
        measured = usage.Usage({"service": parent.pid}, None)

        # /proc counts in ticks (a hundredth of a second here): a little under 0.5 s.
        assert measured.cpu()["service"] - usage.cpu_seconds(parent.pid) >= 0.4
        assert measured.peak_rss_mib()["service"] == pytest.approx(
            usage.peak_rss_mib(parent.pid) + usage.peak_rss_mib(int(worker))
        )
    finally:
        os.kill(int(worker), signal.SIGKILL)
        parent.kill()
        await parent.wait()
