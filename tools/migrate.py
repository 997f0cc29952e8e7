"""Migrates one service's schema and the shared `auth` schema, then exits.

    python -m tools.migrate stations

The container image's migration entry point: Kubernetes runs it as an init
container, so a pod takes traffic only once its schema is current. Every service
also migrates itself at start under the same advisory locks, so running this
twice, or from several pods at once, is harmless.
"""

import argparse
import asyncio
import importlib

import asyncpg

from services.core import auth
from services.core.db import database_url
from services.core.migrations import migrate
from services.core.server import ServiceSpec

SERVICES = ("stations", "stock", "orders", "alerts")


async def run(service: str) -> list[str]:
    url = database_url(service)
    if not url:
        raise SystemExit(f"set DATABASE_URL (or {service.upper()}_DATABASE_URL)")
    spec: ServiceSpec = importlib.import_module(f"services.{service}.app").SPEC
    conn = await asyncpg.connect(url)
    try:
        applied = await migrate(conn, spec.name, spec.directory)
        await auth.ensure_schema(conn)
    finally:
        await conn.close()
    return applied


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.migrate", description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    args = parser.parse_args(argv)
    applied = asyncio.run(run(args.service))
    print(f"{args.service}: applied {len(applied)} migration(s) {' '.join(applied)}".rstrip())


if __name__ == "__main__":
    main()
