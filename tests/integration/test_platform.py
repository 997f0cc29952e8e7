"""What every service gets from the platform: health, reflection, migrations,
metrics that Prometheus accepts, JSON logs, graceful shutdown."""

import asyncio
import shutil
import urllib.request
from asyncio.subprocess import PIPE, STDOUT

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core import metrics
from services.core.migrations import migrate
from services.core.server import Components, ServiceSpec, start_service
from services.stations.app import SPEC as STATIONS
from services.stock.app import SPEC as STOCK
from tests.conftest import Line, eventually, fast_settings, new_schema

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_every_service_reports_health(stack):
    for channel, name in (
        (stack.channels[0], "kanban.stations.v1.StationsService"),
        (stack.channels[1], "kanban.stock.v1.StockService"),
    ):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", name):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == SERVING


async def test_reflection_lists_the_services(stack):
    stub = reflection_pb2_grpc.ServerReflectionStub(stack.channels[0])
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in reply.list_services_response.service}
        break
    assert {
        "kanban.stations.v1.StationsService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


@pytest.mark.parametrize("spec", [STATIONS, STOCK], ids=["stations", "stock"])
async def test_migrations_apply_in_order_once(database_url, spec):
    schema = new_schema("migrate")
    conn = await asyncpg.connect(database_url)
    try:
        first = await migrate(conn, schema, spec.directory)
        second = await migrate(conn, schema, spec.directory)
        recorded = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    assert first[0] == "core/0001_platform.sql"
    assert first == sorted(first, key=lambda v: (not v.startswith("core/"), v))
    assert second == []
    assert sorted(r["version"] for r in recorded) == sorted(first)


async def test_metrics_are_valid_for_prometheus(stack, line):
    await line.scan("WELD", "P-001")
    await line.start("STAMP")
    await line.complete("STAMP", "P-001", "LOT-1", 500)
    await asyncio.sleep(0.5)  # let the gauges refresh
    port = metrics.serve_metrics(0)
    text = await asyncio.to_thread(scrape, f"http://localhost:{port}/metrics")

    for expected in (
        "grpc_server_started_total{",
        'grpc_server_handled_total{grpc_code="OK"',
        "grpc_server_handling_seconds_bucket{",
        f'kanban_loop_wip_units{{consumer_station_id="WELD",loop_id="P",site_id="{line.site_id}"',
        "kanban_loop_cap_units{",
        "kanban_cards{",
        "kanban_signals_raised_total{",
        "kanban_signals_completed_total{",
        "kanban_signal_wait_seconds_bucket{",
        "kanban_card_lead_time_seconds_bucket{",
        "kanban_stock_on_hand_units{",
        f'kanban_stock_movements_total{{kind="ISSUE",site_id="{line.site_id}"}}',
        f'kanban_stock_supply_seconds{{item_id="PART",site_id="{line.site_id}"}}',
        "kanban_outbox_events_delivered_total{",
    ):
        assert expected in text, expected
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: .ci/run installs Debian's prometheus package"
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await checked.communicate(text.encode())
    assert checked.returncode == 0, output.decode()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url) as reply:
        return str(reply.read().decode())


async def test_shutdown_stops_serving_first_and_lets_calls_in_flight_finish(
    stack, line, database_url
):
    replica = await start_service(STATIONS, fast_settings(database_url, peers=stack.peers))
    channel = grpc.aio.insecure_channel(replica.address)
    blocker = await asyncpg.connect(database_url)
    try:
        # Hold the card's row so that a scan through the replica is in flight.
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute(
            "SELECT 1 FROM stations.cards WHERE site_id = $1 AND card_code = 'P-001' FOR UPDATE",
            line.site_id,
        )
        on_replica = Line(stations_pb2_grpc.StationsServiceStub(channel), line.site_id)
        in_flight = asyncio.create_task(on_replica.scan("WELD", "P-001"))
        await asyncio.sleep(0.3)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING

        stopping = asyncio.create_task(replica.stop(grace=10))
        assert (await asyncio.wait_for(watch.read(), 10)).status == NOT_SERVING
        watch.cancel()
        assert not in_flight.done()
        await lock.rollback()

        scanned = await asyncio.wait_for(in_flight, 10)
        assert scanned.card.state == pb.CARD_STATE_EMPTY
        await stopping
    finally:
        await blocker.close()
        await channel.close()


async def test_a_service_whose_background_work_dies_says_it_failed(database_url):
    async def broken() -> None:
        raise RuntimeError("the relay fell over")

    def assemble(db, settings) -> Components:
        return Components(servicers=[], service_names=[], background=[broken()])

    spec = ServiceSpec(name="broken", directory=STOCK.directory, assemble=assemble)
    service = await start_service(spec, fast_settings(database_url))
    try:
        await asyncio.wait_for(service.failed.wait(), 10)
    finally:
        await service.stop(0)


async def test_a_relay_sends_only_while_it_holds_its_destinations_lock(stack, line, database_url):
    """Replicas each run a relay; the one that holds the destination's lock sends, so
    events leave in commit order. When its session ends, however its process died, a
    waiting relay takes over; while another holds the lock, nothing goes."""
    lock = "relay:stations:stock"
    conn = await asyncpg.connect(database_url)
    # Stands in for a relay of another replica: it queues for the lock.
    other = await asyncpg.connect(database_url)

    async def pending() -> int:
        return await conn.fetchval(
            """SELECT count(*) FROM stations.outbox
               WHERE site_id = $1 AND destination = 'stock' AND delivered_at IS NULL""",
            line.site_id,
        )

    try:
        holder = await conn.fetchval(
            """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND objid = hashtext($1)::oid""",
            lock,
        )
        assert holder is not None  # the stack's stations relay
        queued = asyncio.create_task(other.execute("SELECT pg_advisory_lock(hashtext($1))", lock))
        await asyncio.sleep(0.2)
        assert not queued.done()
        # The holder's session ends as if its process had died: the queued one gets it.
        await conn.execute("SELECT pg_terminate_backend($1)", holder)
        await asyncio.wait_for(queued, 10)

        await line.scan("WELD", "P-001")
        waiting = await pending()
        # The relay is woken by the scan's commit, and polls every 0.2 s besides.
        await asyncio.sleep(1.0)
        assert await pending() == waiting > 0
        await other.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)

        async def delivered() -> bool:
            return await pending() == 0

        # The stack's relay connected again, waited for the lock, and sends.
        assert await eventually(delivered)
    finally:
        await other.close()
        await conn.close()
