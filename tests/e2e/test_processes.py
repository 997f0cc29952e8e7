"""Each service as its own process: metrics Prometheus accepts, JSON logs, SIGTERM."""

import asyncio
import json
import shutil
import urllib.request
from asyncio.subprocess import PIPE, STDOUT

import grpc
from kanban.stations.v1 import stations_pb2_grpc

from tests.conftest import Line, new_id, refused
from tests.e2e.conftest import Launcher, open_channel


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


async def promtool_check(text: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await checked.communicate(text.encode())
    assert checked.returncode == 0, output.decode()
    return output.decode()


async def test_every_service_runs_logs_json_and_stops_cleanly_on_sigterm(launcher: Launcher):
    services = await launcher.start_line()
    stock, orders, stations = services["stock"], services["orders"], services["stations"]
    others = [orders, await launcher.start("alerts")]
    async with open_channel(stations.address) as channel:
        line = await Line(stations_pb2_grpc.StationsServiceStub(channel), new_id("site")).create()
        await line.scan("WELD", "P-001")
        refusal = await refused(line.scan("WELD", "P-001", request_id="logged-refusal"))
        assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION

    # Every service's /metrics passes promtool, with the RPC metrics on it.
    for service in (stations, stock, *others):
        text = await asyncio.to_thread(scrape, service.metrics_port)
        await promtool_check(text)
        assert "grpc_server_handled_total{" in text, service.name  # health checks count too
    assert "kanban_signals_raised_total{" in await asyncio.to_thread(scrape, stations.metrics_port)

    # SIGTERM: each exits by itself, with status 0, after saying so.
    for service in (stations, stock, *others):
        assert service.process is not None
        service.process.terminate()
        assert await asyncio.wait_for(service.process.wait(), 30) == 0

    lines = [json.loads(row) for row in stations.log_path.read_text().splitlines()]
    refused_line = next(row for row in lines if row.get("request_id") == "logged-refusal")
    assert refused_line["event"] == "rpc_refused"
    assert refused_line["rpc"] == "kanban.stations.v1.StationsService/ScanCard"
    assert refused_line["peer"] and refused_line["service"] == "stations"
    assert [row["event"] for row in lines][-2:] == ["service_stopping", "service_stopped"]
