"""`make run`'s program: starts the stack, loads the example line, stops on SIGTERM."""

import asyncio
import os
import random
import socket
import sys
from pathlib import Path

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core import client
from tests.conftest import refused
from tests.e2e.conftest import ROOT

READY_LINE = "Ctrl-C stops everything."


def free_block(size: int) -> int:
    """A first port such that it and the next size-1 ports are all free now."""
    rng = random.Random()
    while True:
        base = rng.randrange(20000, 40000)
        try:
            sockets = [socket.create_server(("", base + n)) for n in range(size)]
        except OSError:
            continue
        for sock in sockets:
            sock.close()
        return base


async def run_devstack(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.devstack",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    printed: list[str] = []
    async with asyncio.timeout(120):
        while READY_LINE not in "".join(printed):
            line = (await process.stdout.readline()).decode()
            assert line, "devstack exited early:\n" + "".join(printed)
            printed.append(line)
    return process, "".join(printed)


async def stop(process: asyncio.subprocess.Process, log_dir: Path) -> str:
    process.terminate()
    assert process.stdout is not None
    rest = (await asyncio.wait_for(process.stdout.read(), 60)).decode()
    logs = service_logs(log_dir)
    assert await process.wait() == 0, rest + logs
    assert "did not stop" not in rest, rest + logs
    return rest


def service_logs(log_dir: Path) -> str:
    return "".join(f"\n{p.name}:\n{p.read_text()[-3000:]}" for p in log_dir.glob("*.log"))


def development_tokens(log_dir: Path) -> dict[str, str]:
    """What `make run` wrote for `source var/dev-tokens.env`."""
    lines = (log_dir / "dev-tokens.env").read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("localhost", port)) != 0


async def test_make_run_starts_the_line_and_a_second_run_keeps_its_state(
    database_url: str, tmp_path: Path
):
    grpc_base, metrics_base = free_block(4), free_block(4)
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        KANBAN_GRPC_BASE_PORT=str(grpc_base),
        KANBAN_METRICS_BASE_PORT=str(metrics_base),
        KANBAN_LOG_DIR=str(tmp_path),
    )
    process, banner = await run_devstack(env)
    try:
        assert f"stations  grpc localhost:{grpc_base}" in banner
        assert "loops BRACKET, FRAME" in banner
        tokens = development_tokens(tmp_path)
        async with client.channel(f"localhost:{grpc_base}") as anonymous:
            refusal = await refused(
                stations_pb2_grpc.StationsServiceStub(anonymous).GetBoard(
                    pb.GetBoardRequest(site_id="PLANT1")
                )
            )
            assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
        async with client.channel(f"localhost:{grpc_base}", tokens["KANBAN_WELD_TOKEN"]) as channel:
            stub = stations_pb2_grpc.StationsServiceStub(channel)
            scanned = await stub.ScanCard(
                pb.ScanCardRequest(
                    request_id="e2e-scan",
                    site_id="PLANT1",
                    station_id="WELD",
                    card_code="BRACKET-001",
                )
            )
            assert scanned.signal.station_id == "STAMP"
    finally:
        assert "Stopped." in await stop(process, tmp_path)
    assert all(port_is_closed(grpc_base + n) for n in range(4))

    # Again, on the same database: the layout applies as a no-op, state is kept,
    # and the last run's development tokens no longer work.
    process, _ = await run_devstack(env)
    try:
        async with client.channel(f"localhost:{grpc_base}", tokens["KANBAN_TOKEN"]) as stale:
            refusal = await refused(
                stations_pb2_grpc.StationsServiceStub(stale).GetBoard(
                    pb.GetBoardRequest(site_id="PLANT1")
                )
            )
            assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
        token = development_tokens(tmp_path)["KANBAN_TOKEN"]
        async with client.channel(f"localhost:{grpc_base}", token) as channel:
            stub = stations_pb2_grpc.StationsServiceStub(channel)
            loop = await stub.GetLoop(pb.GetLoopRequest(site_id="PLANT1", loop_id="BRACKET"))
        assert [c.state for c in loop.cards] == [pb.CARD_STATE_EMPTY] + [pb.CARD_STATE_FULL] * 3
    finally:
        await stop(process, tmp_path)
