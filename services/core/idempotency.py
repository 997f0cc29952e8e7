"""Mutations run once per request id: a retry gets the first answer back.

The request id is claimed in the same transaction as the change, so a crash
either keeps both or neither, and two copies of one request racing each other
serialise on the claim.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import asyncpg

from services.core import audit, codec
from services.core.db import Database
from services.core.errors import InvalidArgument

R = TypeVar("R")


class Command(Protocol):
    @property
    def site_id(self) -> str: ...

    @property
    def request_id(self) -> str: ...


def fingerprint(command: Any) -> str:
    content = {k: v for k, v in codec.to_plain(command).items() if k != "request_id"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


async def run_once(
    db: Database,
    command: Command,
    result_type: type[R],
    action: Callable[[asyncpg.Connection], Awaitable[R]],
) -> R:
    rpc = type(command).__name__
    print_ = fingerprint(command)
    async with db.transaction() as conn:
        claimed = await conn.fetchval(
            """INSERT INTO request_log (site_id, request_id, rpc, fingerprint)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            command.site_id,
            command.request_id,
            rpc,
            print_,
        )
        if not claimed:
            return await _first_answer(conn, command, rpc, print_, result_type)
        result = await action(conn)
        # Who did it commits with what was done, and with the answer a retry gets:
        # one statement, one round trip.
        await conn.execute(
            f"""WITH answered AS (
                    UPDATE request_log SET response = $11 WHERE site_id = $1 AND request_id = $6)
                {audit.INSERT}""",
            *audit.values(
                command.site_id, command.request_id, audit.target_of(command), "OK", result
            ),
            codec.dumps(result),
        )
        return result


async def _first_answer(
    conn: asyncpg.Connection, command: Command, rpc: str, print_: str, result_type: type[R]
) -> R:
    row = await conn.fetchrow(
        "SELECT rpc, fingerprint, response FROM request_log WHERE site_id = $1 AND request_id = $2",
        command.site_id,
        command.request_id,
    )
    if row["rpc"] != rpc or row["fingerprint"] != print_:
        raise InvalidArgument(
            "request_id", f"was already used for a different request ({row['rpc']})"
        )
    return codec.from_plain(result_type, json.loads(row["response"]))
