"""`make run`: PostgreSQL, the four services, the example line, and how to try it."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.config import EMBEDDED_DATA_DIR
from services.core.db import start_embedded_postgres
from services.devstack.layout import apply_layout, load_layout

ROOT = Path(__file__).resolve().parents[2]
LOGS = Path(os.environ.get("KANBAN_LOG_DIR", ROOT / "var"))
SERVICES = ("stations", "stock", "orders", "alerts")
GRPC_BASE = int(os.environ.get("KANBAN_GRPC_BASE_PORT", "50051"))
METRICS_BASE = int(os.environ.get("KANBAN_METRICS_BASE_PORT", "9461"))
EXAMPLE_LINE = ROOT / "examples" / "line.yaml"
STARTUP_SECONDS = 60


def grpc_port(service: str) -> int:
    return GRPC_BASE + SERVICES.index(service)


def metrics_port(service: str) -> int:
    return METRICS_BASE + SERVICES.index(service)


def service_env(database_url: str, service: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=database_url)
    env["KANBAN_GRPC_PORT"] = str(grpc_port(service))
    env["KANBAN_METRICS_PORT"] = str(metrics_port(service))
    for peer in SERVICES:
        env[f"KANBAN_{peer.upper()}_ADDR"] = f"localhost:{grpc_port(peer)}"
    return env


def start(database_url: str, service: str) -> subprocess.Popen[bytes]:
    with open(LOGS / f"{service}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=service_env(database_url, service),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def wait_until_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            await asyncio.sleep(0.2)


async def prepare(layout: dict[str, Any]) -> list[str]:
    """Waits for every service, then loads the example line."""
    async with asyncio.timeout(STARTUP_SECONDS):
        await asyncio.gather(*(wait_until_serving(f"localhost:{grpc_port(s)}") for s in SERVICES))
    async with (
        grpc.aio.insecure_channel(f"localhost:{grpc_port('stations')}") as stations,
        grpc.aio.insecure_channel(f"localhost:{grpc_port('stock')}") as stock,
        grpc.aio.insecure_channel(f"localhost:{grpc_port('orders')}") as orders,
    ):
        return await apply_layout(stations, stock, orders, layout)


def banner(database_url: str, loops: list[str]) -> str:
    rows = "\n".join(
        f"  {s:<9} grpc localhost:{grpc_port(s)}"
        f"   metrics http://localhost:{metrics_port(s)}/metrics"
        for s in SERVICES
    )
    stations = f"localhost:{grpc_port('stations')}"
    scan = '{"request_id":"try-1","site_id":"PLANT1","station_id":"WELD","card_code":"BRACKET-001"}'
    return f"""
Kanban is running.
{rows}
  database  {database_url}
  logs      {LOGS}/<service>.log
  example   site PLANT1: STAMP -> WELD -> ASSY, loops {", ".join(loops)}

Try it from another terminal (README.md has the whole walk-through):
  .venv/bin/grpcurl -plaintext -d '{{"site_id":"PLANT1","station_id":"STAMP"}}' \\
      {stations} kanban.stations.v1.StationsService/WatchSignals
  .venv/bin/grpcurl -plaintext -d '{scan}' \\
      {stations} kanban.stations.v1.StationsService/ScanCard
  .venv/bin/python examples/erp_client.py create ORD-1001 --item CHASSIS --quantity 30 \\
      --due 2030-01-01T08:00:00Z --release

Ctrl-C stops everything."""


def main() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL") or start_embedded_postgres(EMBEDDED_DATA_DIR)
    # SIGTERM stops us like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    children = {s: start(database_url, s) for s in SERVICES}
    try:
        loops = asyncio.run(prepare(load_layout(EXAMPLE_LINE)))
        print(banner(database_url, loops), flush=True)
        while True:
            exited = [s for s, child in children.items() if child.poll() is not None]
            if exited:
                raise SystemExit(f"{', '.join(exited)} exited; see {LOGS}/<service>.log")
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            child.terminate()
        for name, child in children.items():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop within 30 s; killed it", flush=True)
                child.kill()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
