"""The services as child processes on free ports: what the end-to-end tests kill and
start again, and what the soak (`make soak`) loads for minutes."""

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
# A client sees a restarted service within a fraction of a second, not after
# gRPC's default reconnect backoff (1 s, growing to 2 minutes).
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


# Listening ports come from below Linux's ephemeral range (32768-60999): a port
# from inside it can be taken by any outgoing connection between the moment it is
# chosen and the moment its service binds it, or while a killed service restarts.
_LISTEN_PORTS = range(20000, 32768)


# Ports already given to a service: one not started yet is free to bind, and gRPC
# binds with SO_REUSEPORT, so a second service on it would share it without a word.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and not given before, outside the range
    outgoing connections use."""
    while True:
        port = random.choice(_LISTEN_PORTS)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            try:
                # "::" also covers 0.0.0.0, as the services bind it.
                sock.bind(("::", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


def open_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=FAST_RECONNECT)


async def wait_until_serving(
    address: str, timeout: float, alive: Callable[[], bool] = lambda: True
) -> None:
    """Polls the gRPC health check until it says SERVING; raises if `alive()` turns false."""
    async with open_channel(address) as channel, asyncio.timeout(timeout):
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if not alive():
                raise RuntimeError(f"exited before serving on {address}")
            with contextlib.suppress(grpc.RpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.05)


class ServiceProcess:
    """One service run as `python -m services.<name>`, on a port it keeps across restarts.

    `settings` are KANBAN_* variables for it; none is inherited from our environment,
    so a developer's shell cannot change what a test or the soak runs.
    """

    def __init__(
        self,
        name: str,
        database_url: str,
        log_dir: Path,
        settings: Mapping[str, str],
        peers: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.address = f"localhost:{self.port}"
        self.metrics_port = free_port()
        self.log_dir = log_dir
        self.env = self._environment(database_url, settings, peers or {})
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    def _environment(
        self, database_url: str, settings: Mapping[str, str], peers: Mapping[str, str]
    ) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("KANBAN_") or k.endswith("_DATABASE_URL"))
        }
        env.update(
            settings,
            DATABASE_URL=database_url,
            KANBAN_GRPC_PORT=str(self.port),
            KANBAN_METRICS_PORT=str(self.metrics_port),
        )
        for peer, address in peers.items():
            env[f"KANBAN_{peer.upper()}_ADDR"] = address
        return env

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def _new_log(self) -> BinaryIO:
        return open(self.log_path, "wb")

    async def start(self) -> "ServiceProcess":
        """Starts the process and returns once its health check says SERVING."""
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        with self._new_log() as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{self.name}",
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            await wait_until_serving(self.address, STARTUP_SECONDS, lambda: self.running)
        except (RuntimeError, TimeoutError) as error:
            await self.kill()
            raise RuntimeError(f"{self.name} did not start: {error}\n{self.log_tail()}") from None
        return self

    async def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight work is simply lost."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.kills += 1

    async def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it takes too long."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            await self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Launcher:
    """Starts services with the same settings; `close` stops every one of them."""

    def __init__(self, database_url: str, log_dir: Path, settings: Mapping[str, str]) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.settings = settings
        self.services: list[ServiceProcess] = []

    def _process(
        self, name: str, peers: Mapping[str, str] | None, port: int | None = None
    ) -> ServiceProcess:
        service = ServiceProcess(name, self.database_url, self.log_dir, self.settings, peers, port)
        self.services.append(service)
        return service

    async def start(self, name: str, peers: Mapping[str, str] | None = None) -> ServiceProcess:
        return await self._process(name, peers).start()

    async def start_line(self) -> dict[str, ServiceProcess]:
        """Alerts, stock, orders and stations, each knowing where the others listen.

        Stations and the services it exchanges events with send each other events,
        so every port is chosen before any starts.
        """
        names = ("alerts", "stock", "orders", "stations")
        ports = {name: free_port() for name in names}
        peers = {name: f"localhost:{port}" for name, port in ports.items()}
        return {name: await self._process(name, peers, ports[name]).start() for name in names}

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.services), return_exceptions=True)
