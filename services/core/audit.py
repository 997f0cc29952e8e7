"""The audit trail: who did what, when, to what, and how it ended.

A mutation's record commits in the same transaction as the change (run_once
writes it); a refused attempt's is written by the interceptor on its own, since
the change it asked for rolled back.
"""

import contextvars
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.core import auth, codec

SUMMARY_CHARS = 2000

# What a service says the target looked like before the change, if it knows.
BEFORE: contextvars.ContextVar[str] = contextvars.ContextVar("audit_before", default="")


def note_before(summary: object) -> None:
    BEFORE.set(_summary(summary))


def _clean(text: str, limit: int = 200) -> str:
    """Refused requests carry anything a caller sent: keep it storable and short."""
    return text.replace("\x00", "\\0")[:limit]


def _summary(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(codec.to_plain(value), default=str)
    return text[:SUMMARY_CHARS]


def target_of(request: Any) -> str:
    """The ids a request names (besides its site and request id): what it is about."""
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    else:
        fields = {f.name: getattr(request, f.name) for f in request.DESCRIPTOR.fields}
    return " ".join(
        f"{name}={value}"
        for name, value in fields.items()
        if value
        and name not in ("site_id", "request_id")
        and (name.endswith("_id") or name.endswith("_code"))
    )[:SUMMARY_CHARS]


# $1 is the site and $6 the request id: idempotency.run_once writes the request's
# answer in the same statement.
INSERT = """INSERT INTO audit_log (site_id, actor, roles, station_id, rpc, request_id, target,
                                   before, after, result)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"""


def values(
    site_id: str, request_id: str, target: str, result: str, after: object = ""
) -> tuple[object, ...]:
    """INSERT's parameters: who (the caller of this RPC) did what, to what, with what result."""
    who = auth.principal()
    return (
        _clean(site_id),
        _clean(who.name),
        who.role_names,
        who.station_id,
        auth.CURRENT_RPC.get(),
        _clean(request_id),
        _clean(target, SUMMARY_CHARS),
        BEFORE.get(),
        _clean(_summary(after), SUMMARY_CHARS) if after else "",
        result,
    )


async def record(
    conn: asyncpg.Connection,
    site_id: str,
    request_id: str,
    target: str,
    result: str,
    after: object = "",
) -> None:
    await conn.execute(INSERT, *values(site_id, request_id, target, result, after))


@dataclass(frozen=True)
class AuditRecord:
    id: int
    site_id: str
    actor: str
    roles: list[str]
    station_id: str
    rpc: str
    request_id: str
    target: str
    before: str
    after: str
    result: str
    at: datetime


async def records(
    conn: asyncpg.Connection,
    site_id: str,
    actor: str,
    rpc: str,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[AuditRecord]:
    rows = await conn.fetch(
        """SELECT * FROM audit_log
           WHERE site_id = $1 AND ($2 = '' OR actor = $2) AND ($3 = '' OR rpc LIKE '%' || $3)
             AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
             AND ($6::bigint IS NULL OR id < $6)
           ORDER BY id DESC LIMIT $7""",
        site_id,
        actor,
        rpc,
        since,
        until,
        before_id,
        limit,
    )
    return [AuditRecord(**dict(r)) for r in rows]
