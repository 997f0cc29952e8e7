"""`make run`: PostgreSQL, the four services, the example line, development tokens,
and how to try it."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from clients.kanbanctl.apply import apply_layout
from clients.kanbanctl.layout import load_layout
from services.core import auth, client, tokens
from services.core.auth import Role
from services.core.config import EMBEDDED_DATA_DIR
from services.core.db import start_embedded_postgres
from services.devstack.processes import wait_until_serving

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


# Everything but operating a station: enough to play every part of the walk-through.
DEVELOPER_ROLES = [r for r in Role if r not in (Role.OPERATOR, Role.SERVICE)]


async def issue_development_tokens(database_url: str, layout: dict[str, Any]) -> dict[str, str]:
    """Fresh development tokens for this run (the last run's are revoked): the
    services', a developer's, and one per station of the example line."""
    site_id = layout["site"]["site_id"]
    conn = await asyncpg.connect(database_url)
    try:
        await auth.ensure_schema(conn)
        await tokens.revoke(conn, "", "", development=True)
        issued = {
            "KANBAN_SERVICE_TOKEN": await tokens.issue(
                conn, "services", [Role.SERVICE], development=True
            ),
            "KANBAN_TOKEN": await tokens.issue(
                conn, "developer", DEVELOPER_ROLES, development=True
            ),
        }
        for station in layout["stations"]:
            station_id = station["station_id"]
            issued[f"KANBAN_{station_id}_TOKEN"] = await tokens.issue(
                conn,
                f"terminal-{station_id}",
                [Role.OPERATOR],
                site_id,
                station_id,
                development=True,
            )
    finally:
        await conn.close()
    return issued


def write_token_file(issued: dict[str, str]) -> Path:
    path = LOGS / "dev-tokens.env"
    path.write_text("".join(f"export {name}={token}\n" for name, token in issued.items()))
    path.chmod(0o600)
    return path


def service_env(database_url: str, service: str, service_token: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=database_url, KANBAN_SERVICE_TOKEN=service_token)
    env["KANBAN_GRPC_PORT"] = str(grpc_port(service))
    env["KANBAN_METRICS_PORT"] = str(metrics_port(service))
    for peer in SERVICES:
        env[f"KANBAN_{peer.upper()}_ADDR"] = f"localhost:{grpc_port(peer)}"
    return env


def start(database_url: str, service: str, service_token: str) -> subprocess.Popen[bytes]:
    with open(LOGS / f"{service}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=service_env(database_url, service, service_token),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def prepare(layout: dict[str, Any], token: str) -> list[str]:
    """Waits for every service, then loads the example line."""
    await asyncio.gather(
        *(wait_until_serving(f"localhost:{grpc_port(s)}", STARTUP_SECONDS) for s in SERVICES)
    )
    async with (
        client.channel(f"localhost:{grpc_port('stations')}", token) as stations,
        client.channel(f"localhost:{grpc_port('stock')}", token) as stock,
        client.channel(f"localhost:{grpc_port('orders')}", token) as orders,
    ):
        report = await apply_layout(stations, stock, orders, layout)
    if not report.ok:
        raise SystemExit(f"{EXAMPLE_LINE} does not match the database:\n{report.render()}")
    return [loop["loop_id"] for loop in layout["loops"]]


def banner(database_url: str, loops: list[str], token_file: Path) -> str:
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
  tokens    {token_file}: development tokens for this run (a developer's with every
            role but operator, and one per station's terminal); never in production

Try it from another terminal (README.md has the whole walk-through):
  source {token_file}
  .venv/bin/grpcurl -plaintext -H "authorization: Bearer $KANBAN_STAMP_TOKEN" \\
      -d '{{"site_id":"PLANT1","station_id":"STAMP"}}' \\
      {stations} kanban.stations.v1.StationsService/WatchSignals
  .venv/bin/grpcurl -plaintext -H "authorization: Bearer $KANBAN_WELD_TOKEN" -d '{scan}' \\
      {stations} kanban.stations.v1.StationsService/ScanCard
  .venv/bin/python examples/erp_client.py create ORD-1001 --item CHASSIS --quantity 30 \\
      --due 2030-01-01T08:00:00Z --release

A station's screen, and the line at a glance:
  .venv/bin/kanban-terminal --station WELD
  .venv/bin/kanbanctl board PLANT1

Ctrl-C stops everything."""


def main() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL") or start_embedded_postgres(EMBEDDED_DATA_DIR)
    # SIGTERM stops us like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    layout = load_layout(EXAMPLE_LINE)
    issued = asyncio.run(issue_development_tokens(database_url, layout))
    token_file = write_token_file(issued)
    children = {s: start(database_url, s, issued["KANBAN_SERVICE_TOKEN"]) for s in SERVICES}
    try:
        loops = asyncio.run(prepare(layout, issued["KANBAN_TOKEN"]))
        print(banner(database_url, loops, token_file), flush=True)
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
