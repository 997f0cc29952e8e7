"""PostgreSQL access: one asyncpg pool per service, pinned to its schema."""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

Connection = asyncpg.Connection


def database_url(service: str) -> str | None:
    """`<SERVICE>_DATABASE_URL` if set, else `DATABASE_URL`, else None (embedded)."""
    return os.environ.get(f"{service.upper()}_DATABASE_URL") or os.environ.get("DATABASE_URL")


# Embedded servers this process holds; pgserver stops one when its last holder exits.
_embedded: dict[Path, object] = {}


def start_embedded_postgres(data_dir: Path) -> str:
    """Starts (or joins) the `pgserver` PostgreSQL with its data in data_dir.

    It listens on a Unix socket inside data_dir only, and stops when the last
    process that started or joined it exits.
    """
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = _embedded.setdefault(data_dir, pgserver.get_server(data_dir))
    return str(server.get_uri())  # type: ignore[attr-defined]


# Each connection names itself in pg_stat_activity: kanban-<schema> for a pool,
# kanban-<schema>-relay for a relay. The benchmark splits PostgreSQL's time by them.
APPLICATION_PREFIX = "kanban-"


class Database:
    """A pool whose every connection works in `schema`. Create it inside the loop."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    @classmethod
    async def connect(cls, url: str, schema: str, *, max_size: int = 10) -> "Database":
        await ensure_schema(url, schema)
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=max_size,
            server_settings={
                "search_path": schema,
                "application_name": APPLICATION_PREFIX + schema,
            },
            reset=_keep_session,
        )
        return cls(pool, schema)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def close(self, timeout: float = 5.0) -> None:
        """Closes the pool; connections still busy after `timeout` are cut."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            self.pool.terminate()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Hands a released connection on as it is, sparing a round trip per acquire.

    asyncpg's default reset (UNLISTEN, RESET ALL, advisory unlock) undoes session
    state, and the services keep none on pooled connections: settings come with the
    connection, transactions and their locks end before release (asyncpg rolls back
    one left open), and LISTEN has connections of its own.
    """


async def ensure_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await conn.close()
