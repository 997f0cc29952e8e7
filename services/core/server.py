"""The one way to run a service: database, migrations, gRPC server, background work."""

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import structlog
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from kanban.audit.v1 import audit_pb2, audit_pb2_grpc
from kanban.events.v1 import events_pb2, events_pb2_grpc

from services.core import auth, logs, metrics, outbox, tls
from services.core.access import AccessInterceptor
from services.core.audit_servicer import AuditServicer
from services.core.auth import PUBLIC, Permission, Role, allow
from services.core.config import Settings
from services.core.db import Database
from services.core.event_sink import EventSinkServicer
from services.core.inbox import EventHandler
from services.core.interceptors import ObservabilityInterceptor
from services.core.migrations import migrate
from services.core.periodic import every
from services.core.relay import Relay

log = structlog.get_logger()


# A generated add_<Name>Servicer_to_server function and the servicer it adds.
Registration = tuple[Callable[[Any, grpc.aio.Server], None], object]


@dataclass
class Components:
    """What a service brings to its server: servicers, background work, shutdown hooks."""

    servicers: list[Registration]
    # Full names of the gRPC services, for health and reflection.
    service_names: list[str]
    background: list[Coroutine[Any, Any, None]] = field(default_factory=list)
    # Called as shutdown begins: endless streams end, so clients reconnect to
    # another replica instead of holding this one for the whole grace period.
    on_stop: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    # The service's folder: its migrations are under it.
    directory: Path
    # Builds the components; lives in the service's servicer module.
    assemble: Callable[[Database, Settings], Components]
    # Services this one sends events to: a relay delivers its outbox to them.
    destinations: tuple[str, ...] = ()
    # Applies events other services send: an EventSinkService is served for it.
    apply_event: EventHandler | None = None
    # Reads the service's gauges from the database, every gauge_refresh_seconds.
    refresh_gauges: Callable[[Database], Awaitable[None]] | None = None
    # Full method name -> who may call it (the service's permissions.py).
    permissions: Mapping[str, Permission] = field(default_factory=dict)


# What every service serves besides its own RPCs, and who may call it.
PLATFORM_PERMISSIONS: dict[str, Permission] = {
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": allow(*Role),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": allow(*Role),
    "/kanban.events.v1.EventSinkService/DeliverEvents": allow(Role.SERVICE),
    "/kanban.audit.v1.AuditService/ListAuditRecords": allow(Role.PLANNER, Role.ADMIN),
}


def build_server(
    components: Components,
    health_servicer: health.aio.HealthServicer,
    port: int,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The gRPC server with the service's servicers, health and reflection; port 0 picks one.
    TLS only with `credentials`, plaintext without."""
    server = grpc.aio.server(interceptors=[ObservabilityInterceptor(), *interceptors])
    for add_to_server, servicer in components.servicers:
        add_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*components.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if credentials is None:
        return server, server.add_insecure_port(f"[::]:{port}")
    return server, server.add_secure_port(f"[::]:{port}", credentials)


def build_health_server(
    health_servicer: health.aio.HealthServicer, port: int
) -> tuple[grpc.aio.Server, int]:
    """A plaintext server answering health only, for Kubernetes probes, which cannot speak
    TLS. It shares the main server's servicer, so probes see its shutdown too."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, server.add_insecure_port(f"[::]:{port}")


def _with_platform_parts(
    spec: ServiceSpec, components: Components, db: Database, settings: Settings
) -> Components:
    """Adds what the spec asks of the platform: the audit log, the event sink, the gauge
    refresh."""
    components.servicers.append(
        (audit_pb2_grpc.add_AuditServiceServicer_to_server, AuditServicer(db))
    )
    components.service_names.append(audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name)
    if spec.apply_event is not None:
        components.servicers.append(
            (
                events_pb2_grpc.add_EventSinkServiceServicer_to_server,
                EventSinkServicer(db, spec.apply_event),
            )
        )
        components.service_names.append(
            events_pb2.DESCRIPTOR.services_by_name["EventSinkService"].full_name
        )
    if spec.refresh_gauges is not None:
        components.background.append(
            every(settings.gauge_refresh_seconds, partial(spec.refresh_gauges, db))
        )
    return components


class RunningService:
    """A started service. `stop()` is the graceful shutdown SIGTERM triggers."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: Settings,
        db: Database,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        components: Components,
        tasks: list[asyncio.Task[None]],
        health_server: grpc.aio.Server | None = None,
        health_port: int | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.db = db
        self.server = server
        self.port = port
        self.address = f"localhost:{port}"
        self._health = health_servicer
        self._health_server = health_server
        self.health_port = health_port
        self._components = components
        self._tasks = tasks
        # Set when background work (the relay, say) died: the process should exit
        # and be restarted rather than serve on without it.
        self.failed = asyncio.Event()
        for task in tasks:
            task.add_done_callback(self._check_background)

    def _check_background(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failed.set()

    async def stop(self, grace: float | None = None) -> None:
        # Load balancers and probes see NOT_SERVING first; in-flight calls then finish.
        await self._health.enter_graceful_shutdown()
        for hook in self._components.on_stop:
            hook()
        await self.server.stop(self.settings.shutdown_grace_seconds if grace is None else grace)
        # Probes saw NOT_SERVING for the whole grace period; now nothing is left to report.
        if self._health_server is not None:
            await self._health_server.stop(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.db.close()
        log.info("service_stopped", port=self.port)


async def start_service(spec: ServiceSpec, settings: Settings) -> RunningService:
    # Read first: a missing certificate stops the start before anything else happens.
    server_credentials = tls.server_credentials(settings)
    peer_credentials = tls.channel_credentials(settings)
    if settings.production and server_credentials is None:
        # Not refused: a service mesh may terminate TLS in front of the service.
        log.warning("production_without_tls", hint="KANBAN_TLS_CERT_FILE, KANBAN_TLS_KEY_FILE")
    db = await Database.connect(settings.database_url, spec.name)
    async with db.pool.acquire() as conn:
        applied = await migrate(conn, spec.name, spec.directory)
        await auth.ensure_schema(conn)
        if settings.production:
            await _refuse_unsafe_production(conn, settings)
    if applied:
        log.info("migrated", versions=applied)
    components = _with_platform_parts(spec, spec.assemble(db, settings), db, settings)
    health_servicer = health.aio.HealthServicer()
    access = AccessInterceptor(
        {**PLATFORM_PERMISSIONS, **spec.permissions},
        auth.TokenStore(db),
        db,
        enabled=settings.auth_enabled,
    )
    server, port = build_server(
        components, health_servicer, settings.grpc_port, [access], server_credentials
    )
    health_server: grpc.aio.Server | None = None
    health_port = None
    if settings.health_port is not None:
        health_server, health_port = build_health_server(health_servicer, settings.health_port)
    background = list(components.background)
    if spec.destinations:
        missing = [d for d in spec.destinations if d not in settings.peers]
        if missing:
            raise SystemExit(f"{spec.name}: set KANBAN_<NAME>_ADDR for {', '.join(missing)}")
        peers = {d: settings.peers[d] for d in spec.destinations}
        relay = Relay(
            db.schema,
            settings.database_url,
            spec.name,
            peers,
            poll_seconds=settings.relay_poll_seconds,
            token=settings.service_token,
            credentials=peer_credentials,
        )
        background.append(relay.run())
        kept_for = timedelta(seconds=settings.outbox_retention_seconds)
        background.append(every(settings.outbox_prune_seconds, partial(outbox.prune, db, kept_for)))
    tasks = [asyncio.create_task(_logged(c)) for c in background]
    await server.start()
    if health_server is not None:
        await health_server.start()
    for name in components.service_names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "service_started",
        grpc_port=port,
        tls=server_credentials is not None,
        mutual_tls=bool(settings.tls_client_ca_file),
        health_port=health_port,
    )
    return RunningService(
        spec,
        settings,
        db,
        server,
        port,
        health_servicer,
        components,
        tasks,
        health_server,
        health_port,
    )


async def _refuse_unsafe_production(conn: asyncpg.Connection, settings: Settings) -> None:
    if not settings.auth_enabled:
        raise SystemExit("production: refusing to start with authentication off (KANBAN_AUTH)")
    if count := await auth.development_tokens(conn):
        raise SystemExit(
            f"production: refusing to start while {count} development token(s) are valid; "
            "revoke them (python -m services.core.tokens revoke --development)"
        )


async def _logged(work: Coroutine[Any, Any, None]) -> None:
    """Background work runs until cancelled; if it dies, say so loudly."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background_task_failed")
        raise


def main(spec: ServiceSpec) -> None:
    """Entry point of `python -m services.<name>`."""
    settings = Settings.from_env(spec.name)
    logs.configure(spec.name, settings.log_level)
    # uvloop's event loop makes each RPC's socket and database work cheaper.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(spec, settings))


async def _serve(spec: ServiceSpec, settings: Settings) -> None:
    if settings.metrics_port is not None:
        port = metrics.serve_metrics(settings.metrics_port)
        log.info("metrics_listening", metrics_port=port)
    service = await start_service(spec, settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    waits = [asyncio.create_task(e.wait()) for e in (stopping, service.failed)]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    log.info("service_stopping", background_failed=service.failed.is_set())
    await service.stop()
    if service.failed.is_set():
        raise SystemExit(1)
