"""Bare gRPC servers the benchmark measures our service against.

    python -m tools.bench.bare --database-url URL --port PORT [--schema stations]
    python -m tools.bench.bare --empty --port PORT

The first serves StationsService.ScanCard only (every other method answers
UNIMPLEMENTED): tools.bench.scan_sql run straight through an asyncpg pool, with no
authentication, audit, logging, metrics or idempotency framework. The schema must
be migrated already (start the stations service on the database once).

With --empty it serves one unary method, /kanban.bench.v1.Bench/Empty, that
answers an empty message: what grpc.aio costs per call, with nothing behind it.

Both serve the standard health check, SERVING once ready, and stop on SIGTERM or
SIGINT after the calls in flight.
"""

import argparse
import asyncio
import signal
from datetime import datetime

import asyncpg
import grpc
import uvloop
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core.db import APPLICATION_PREFIX
from tools.bench import scan_sql

EMPTY_SERVICE = "kanban.bench.v1.Bench"
EMPTY_METHOD = "Empty"
EMPTY_PATH = f"/{EMPTY_SERVICE}/{EMPTY_METHOD}"
POOL_SIZE = 16
# How its connections are named, and its column of PostgreSQL's time in the bench.
CLIENT = "bench-bare"
STOP_GRACE_SECONDS = 2.0


async def open_pool(database_url: str, schema: str, size: int = POOL_SIZE) -> asyncpg.Pool:
    """Every connection opened up front, pinned to the schema, and handed on as it is
    on release: asyncpg's default reset costs a round trip per scan."""
    return await asyncpg.create_pool(
        database_url,
        min_size=size,
        max_size=size,
        server_settings={"search_path": schema, "application_name": APPLICATION_PREFIX + CLIENT},
        reset=_keep_session,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo: scans leave no session state behind (as services.core.db)."""


class BareStations(stations_pb2_grpc.StationsServiceServicer):  # type: ignore[misc]
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ScanCard(
        self, request: pb.ScanCardRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScanCardResponse:
        try:
            async with self._pool.acquire() as conn:
                done = await scan_sql.scan(
                    conn,
                    request.site_id,
                    request.station_id,
                    request.card_code,
                    request.request_id,
                )
        except scan_sql.Refusal as refusal:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(refusal))
        return scan_response(done)


def scan_response(done: scan_sql.ScanResult) -> pb.ScanCardResponse:
    """What the real service answers: the card as the scan left it and its new signal."""
    scanned_at = _timestamp(done.scanned_at)
    return pb.ScanCardResponse(
        card=pb.Card(
            site_id=done.site_id,
            card_code=done.card_code,
            loop_id=done.loop_id,
            state=pb.CARD_STATE_EMPTY,
            updated_at=scanned_at,
        ),
        signal=pb.Signal(
            site_id=done.site_id,
            station_id=done.supplier_station_id,
            sequence=done.sequence,
            loop_id=done.loop_id,
            card_code=done.card_code,
            item_id=done.item_id,
            quantity=done.container_quantity,
            state=pb.SIGNAL_STATE_OPEN,
            raised_at=scanned_at,
        ),
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def _empty(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def empty_handler() -> grpc.GenericRpcHandler:
    # No (de)serializers: the handler gets and returns the raw bytes.
    return grpc.method_handlers_generic_handler(
        EMPTY_SERVICE, {EMPTY_METHOD: grpc.unary_unary_rpc_method_handler(_empty)}
    )


async def start_server(port: int, pool: asyncpg.Pool | None) -> tuple[grpc.aio.Server, int]:
    """The scan server on `pool`, or the empty-call server without one, and the port it
    listens on (port 0 picks one)."""
    server = grpc.aio.server()
    if pool is None:
        server.add_generic_rpc_handlers((empty_handler(),))
    else:
        stations_pb2_grpc.add_StationsServiceServicer_to_server(BareStations(pool), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"[::]:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, bound


async def serve(port: int, database_url: str | None, schema: str) -> None:
    pool = await open_pool(database_url, schema) if database_url else None
    server, bound = await start_server(port, pool)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"serving on port {bound}", flush=True)
    await stopping.wait()
    await server.stop(STOP_GRACE_SECONDS)
    if pool is not None:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.bare", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", help="PostgreSQL with the stations schema migrated")
    parser.add_argument("--schema", default="stations")
    parser.add_argument("--empty", action="store_true", help="serve the empty call instead")
    args = parser.parse_args()
    if not args.empty and not args.database_url:
        parser.error("--database-url is required unless --empty")
    database_url = None if args.empty else args.database_url
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port, database_url, args.schema))


if __name__ == "__main__":
    main()
