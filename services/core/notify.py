"""Wakes waiters in this process when PostgreSQL NOTIFYs a key, from any replica."""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator

import asyncpg
import structlog

log = structlog.get_logger()


class Notifications:
    """One LISTEN connection per process, fanned out to waiters by payload.

    Waiters also poll on their own timeout, so a notification missed while the
    connection was being re-established delays an update but never loses it.
    """

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False

    async def run(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self._url)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("listen_connect_failed", channel=self._channel, error=str(error))
                await asyncio.sleep(1)
                continue
            try:
                await self._listen(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                # Lost between connecting and listening: connect again.
                log.warning("listen_failed", channel=self._channel, error=str(error))
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Returns when the connection is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(self._channel, self._on_notify)
        self._wake_all()  # anything raised while we were not listening
        if not conn.is_closed():  # closed before the listener was added: never told
            await lost.wait()
        log.warning("listen_connection_lost", channel=self._channel)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def close(self) -> None:
        """Tells waiters to finish: the process is shutting down."""
        self.closed = True
        self._wake_all()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]
