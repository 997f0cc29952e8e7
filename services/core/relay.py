"""Delivers outbox events to other services, in order, until acknowledged.

One relay per destination runs at a time across all replicas, so each destination
receives events in the order they were committed: the relay that sends holds the
destination's advisory lock on a connection of its own for as long as it lives. The
others wait to take it over; PostgreSQL lets it go when that connection ends,
however its process died. Delivery is at least once; receivers drop duplicates by
event id.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
import grpc
import structlog
from kanban.events.v1 import events_pb2, events_pb2_grpc

from services.core import client, codec, event_codec, metrics
from services.core.db import APPLICATION_PREFIX
from services.core.events import PAYLOAD_TYPES
from services.core.notify import Notifications
from services.core.outbox import CHANNEL_PREFIX

log = structlog.get_logger()

BATCH_SIZE = 200
MAX_BACKOFF_SECONDS = 5.0
# gRPC's own reconnect backoff grows to two minutes; after a long outage of the
# destination, delivery should resume within seconds of its return.
_RECONNECT = [("grpc.max_reconnect_backoff_ms", int(MAX_BACKOFF_SECONDS * 1000))]


class Relay:
    def __init__(
        self,
        schema: str,
        url: str,
        source: str,
        peers: dict[str, str],
        *,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        token: str = "",
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        # The relay reads and marks its outbox on connections of its own, not the pool.
        self._schema = schema
        self._url = url
        self._source = source
        self._peers = peers
        self._poll_seconds = poll_seconds
        self._timeout_seconds = timeout_seconds
        # The receivers let only the services deliver events.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        # TLS to the peers when set (tls.channel_credentials); plaintext otherwise.
        self._credentials = credentials
        self._notifications = Notifications(url, CHANNEL_PREFIX + schema)

    async def run(self) -> None:
        """Runs until cancelled: one delivery loop per destination, woken by NOTIFY."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._notifications.run())
            for destination, address in self._peers.items():
                tasks.create_task(self._deliver_forever(destination, address))

    async def _deliver_forever(self, destination: str, address: str) -> None:
        backoff = 0.1
        async with client.channel(
            address, credentials=self._credentials, options=_RECONNECT
        ) as channel:
            stub = events_pb2_grpc.EventSinkServiceStub(channel)
            with self._notifications.subscribe("") as wake:
                while True:
                    try:
                        async with self._sender(destination) as conn:
                            while True:
                                wake.clear()
                                sent = await self.deliver_batch(conn, destination, stub)
                                backoff = 0.1
                                if sent < BATCH_SIZE:
                                    with contextlib.suppress(TimeoutError):
                                        await asyncio.wait_for(wake.wait(), self._poll_seconds)
                    except (
                        grpc.RpcError,
                        OSError,
                        asyncpg.PostgresError,
                        # The connection died under the batch, e.g. a PostgreSQL restart.
                        asyncpg.InterfaceError,
                        # The session was ended while the connection sat idle (the
                        # server's notice came in before the socket closed): the next
                        # statement finds the protocol in the wrong state.
                        asyncpg.InternalClientError,
                    ) as error:
                        metrics.OUTBOX_FAILURES.labels(destination).inc()
                        log.warning("relay_failed", destination=destination, error=str(error))
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    @contextlib.asynccontextmanager
    async def _sender(self, destination: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection that holds the destination's lock, once no other relay does."""
        conn = await asyncpg.connect(
            self._url,
            server_settings={
                "search_path": self._schema,
                "application_name": f"{APPLICATION_PREFIX}{self._schema}-relay",
                # A delivered mark lost with the last moments before a crash of
                # PostgreSQL only sends those events again, and receivers drop
                # duplicates: the mark need not wait for the disk.
                "synchronous_commit": "off",
                # Planned for the outbox as it is at each batch. Kept plans were made
                # in a fresh database's first seconds, when a table scan was the cheap
                # way to mark a batch, and stayed so until autovacuum analysed the
                # grown table: at a quarter of the benchmark's load the relay took
                # 35 % of PostgreSQL's time.
                "plan_cache_mode": "force_custom_plan",
            },
        )
        try:
            # Waits in PostgreSQL while another relay holds it: granted when that
            # relay's session ends.
            await conn.execute(
                "SELECT pg_advisory_lock(hashtext($1))", f"relay:{self._schema}:{destination}"
            )
            yield conn
        finally:
            # Cut, not closed politely: the lock goes with the session either way.
            conn.terminate()

    async def deliver_batch(
        self,
        conn: asyncpg.Connection,
        destination: str,
        stub: events_pb2_grpc.EventSinkServiceStub,
    ) -> int:
        """Sends the oldest undelivered events; marks them delivered once acknowledged.

        `conn` holds the destination's lock, so no transaction is needed: no other
        relay touches these rows, and a crash between the send and the mark only
        sends them again. Two round trips per batch."""
        rows = await conn.fetch(
            """SELECT id, event_id, site_id, event_type, payload, occurred_at FROM outbox
               WHERE destination = $1 AND delivered_at IS NULL ORDER BY id LIMIT $2""",
            destination,
            BATCH_SIZE,
        )
        if not rows:
            return 0
        request = events_pb2.DeliverEventsRequest(events=[self._to_proto(r) for r in rows])
        await stub.DeliverEvents(request, timeout=self._timeout_seconds, metadata=self._metadata)
        await conn.execute(
            "UPDATE outbox SET delivered_at = now() WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
        )
        metrics.OUTBOX_DELIVERED.labels(destination).inc(len(rows))
        return len(rows)

    def _to_proto(self, row: asyncpg.Record) -> events_pb2.Event:
        payload = codec.from_plain(PAYLOAD_TYPES[row["event_type"]], json.loads(row["payload"]))
        return event_codec.to_proto(
            str(row["event_id"]), row["site_id"], self._source, row["occurred_at"], payload
        )
