"""Ordered SQL migrations per schema, recorded so that running twice is harmless."""

from pathlib import Path

import asyncpg

PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"


def migration_files(service_dir: Path) -> list[tuple[str, Path]]:
    """The platform's tables first, then the service's own, each in file-name order."""
    files = [("core", p) for p in sorted(PLATFORM_MIGRATIONS.glob("*.sql"))]
    files += [(service_dir.name, p) for p in sorted((service_dir / "migrations").glob("*.sql"))]
    return files


async def migrate(conn: asyncpg.Connection, schema: str, service_dir: Path) -> list[str]:
    """Applies what is missing in `schema`; returns the versions applied now."""
    applied_now = []
    async with conn.transaction():
        # Replicas starting together: one migrates, the others wait and find nothing to do.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for owner, path in migration_files(service_dir):
            version = f"{owner}/{path.name}"
            if version in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now
