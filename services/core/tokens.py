"""The admin command for bearer tokens: issue, list, revoke.

    python -m services.core.tokens issue --name terminal-weld-1 --role operator \\
        --site PLANT1 --station WELD
    python -m services.core.tokens issue --name erp-sap --role erp
    python -m services.core.tokens list
    python -m services.core.tokens revoke --name terminal-weld-1

It talks to the database (DATABASE_URL, else the embedded one of `make run`):
whoever runs it is the admin. A token is printed once; only its hash is kept.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence

import asyncpg

from services.core import auth
from services.core.auth import Role
from services.core.config import EMBEDDED_DATA_DIR
from services.core.db import database_url, start_embedded_postgres
from services.core.validation import optional_id, require_text


async def issue(
    conn: asyncpg.Connection,
    name: str,
    roles: Sequence[Role],
    site_id: str = "",
    station_id: str = "",
    *,
    development: bool = False,
) -> str:
    """Stores a new token's hash; returns the token, which is not kept."""
    require_text("name", name)
    optional_id("site_id", site_id)
    optional_id("station_id", station_id)
    if Role.OPERATOR in roles and not (site_id and station_id):
        raise SystemExit("an operator token is bound to one station: give --site and --station")
    token_id, token = auth.new_token()
    await conn.execute(
        """INSERT INTO auth.tokens (token_id, name, roles, site_id, station_id, token_hash,
                                    development)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        token_id,
        name,
        sorted(r.value for r in roles),
        site_id,
        station_id,
        auth.hash_token(token),
        development,
    )
    return token


async def revoke(conn: asyncpg.Connection, name: str, token_id: str, development: bool) -> int:
    result: str = await conn.execute(
        """UPDATE auth.tokens SET revoked_at = now()
           WHERE revoked_at IS NULL AND (name = $1 OR token_id = $2 OR ($3 AND development))""",
        name,
        token_id,
        development,
    )
    return int(result.split()[-1])


async def _main(args: argparse.Namespace) -> None:
    url = database_url("") or start_embedded_postgres(EMBEDDED_DATA_DIR)
    conn = await asyncpg.connect(url)
    try:
        await auth.ensure_schema(conn)
        if args.command == "issue":
            roles = [Role(r) for r in args.role]
            print(await issue(conn, args.name, roles, args.site, args.station))
        elif args.command == "revoke":
            if not (args.name or args.token_id or args.development):
                raise SystemExit("say which: --name, --token-id or --development")
            count = await revoke(conn, args.name, args.token_id, args.development)
            print(f"revoked {count} token(s); they stop working within {auth.CACHE_SECONDS:g} s")
        else:
            rows = await conn.fetch(
                """SELECT token_id, name, roles, site_id, station_id, development, created_at,
                          revoked_at FROM auth.tokens ORDER BY created_at"""
            )
            for r in rows:
                state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "valid"
                where = f" {r['site_id']}/{r['station_id']}" if r["station_id"] else ""
                dev = " (development)" if r["development"] else ""
                print(f"{r['token_id']}  {r['name']}  {','.join(r['roles'])}{where}  {state}{dev}")
    finally:
        await conn.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.core.tokens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    issuing = commands.add_parser("issue", help="issue a token and print it (once)")
    issuing.add_argument("--name", required=True, help="who or what holds it")
    issuing.add_argument("--role", required=True, action="append", choices=[r.value for r in Role])
    issuing.add_argument("--site", default="", help="an operator's site")
    issuing.add_argument("--station", default="", help="an operator's station")
    revoking = commands.add_parser("revoke", help="revoke tokens")
    revoking.add_argument("--name", default="")
    revoking.add_argument("--token-id", default="")
    revoking.add_argument("--development", action="store_true", help="every development token")
    commands.add_parser("list", help="list tokens (never the tokens themselves)")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
