"""Who may call what: bearer tokens, roles, and the permission every RPC declares.

A token is `kbn_<token id>_<secret>`; the database keeps only its SHA-256. Each
service lists its RPCs with the roles they need in its `permissions.py`; the
platform adds its own (event delivery, audit, health, reflection). An RPC not
listed is refused: the check fails closed.
"""

import contextvars
import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.core.db import Database

TOKEN_PREFIX = "kbn_"
# A revoked token stops working within this many seconds on every replica.
CACHE_SECONDS = 5.0


class Role(enum.Enum):
    OPERATOR = "operator"
    PLANNER = "planner"
    WAREHOUSE = "warehouse"
    QUALITY = "quality"
    PURCHASING = "purchasing"
    ERP = "erp"
    ADMIN = "admin"
    # The services themselves, delivering events to each other.
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, its roles and, for an operator, its station."""

    name: str
    roles: frozenset[Role]
    site_id: str = ""
    station_id: str = ""

    @property
    def role_names(self) -> list[str]:
        return sorted(r.value for r in self.roles)


@dataclass(frozen=True)
class Permission:
    roles: frozenset[Role]
    # For an operator: the request field naming the station, which must be the
    # token's own (and the request's site_id the token's site).
    station_field: str = ""
    # Health checks: Kubernetes probes carry no token.
    public: bool = False

    def allows(self, principal: Principal, request: Any) -> bool:
        granted = principal.roles & self.roles
        if self.public:
            return True
        if not granted:
            return False
        if granted != {Role.OPERATOR}:
            return True  # another role grants it outright
        # Requests without a site (reflection) are not about a site.
        site_id = getattr(request, "site_id", None)
        if principal.site_id and site_id is not None and site_id != principal.site_id:
            return False
        if self.station_field:
            return bool(getattr(request, self.station_field, "") == principal.station_id)
        return True


def allow(*roles: Role, station_field: str = "") -> Permission:
    return Permission(frozenset(roles), station_field)


def for_service(service: str, methods: dict[str, Permission]) -> dict[str, Permission]:
    """A service's permissions keyed by full method name, as gRPC names the call."""
    return {f"/{service}/{method}": permission for method, permission in methods.items()}


PUBLIC = Permission(frozenset(), public=True)
EVERY_ROLE = frozenset(Role) - {Role.SERVICE}

# Set by the interceptor for the call being served.
CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)
CURRENT_RPC: contextvars.ContextVar[str] = contextvars.ContextVar("rpc", default="")


def principal() -> Principal:
    return CURRENT.get() or Principal("anonymous", frozenset())


def actor() -> str:
    """The caller's name, for the records that say who did what."""
    return principal().name


# Tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh (token id, token): the id names it in lists; the token is shown once."""
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(24)}"


AUTH_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS auth;
CREATE TABLE IF NOT EXISTS auth.tokens (
    token_id    text PRIMARY KEY,
    name        text NOT NULL,
    roles       text[] NOT NULL,
    site_id     text NOT NULL DEFAULT '',
    station_id  text NOT NULL DEFAULT '',
    token_hash  text NOT NULL,
    -- Issued by `make run` for a laptop; a production service refuses to start
    -- while any is valid.
    development boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
"""


async def ensure_schema(conn: asyncpg.Connection) -> None:
    """Tokens live in one `auth` schema every service reads."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('migrate:auth'))")
        await conn.execute(AUTH_SCHEMA)


@dataclass
class TokenStore:
    """Looks tokens up, with a short cache so a call costs no query."""

    db: Database
    _cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)

    async def principal(self, token: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached and cached[0] > now:
            return cached[1]
        found = await self._lookup(token)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: a flood of bad tokens cannot grow it forever
        self._cache[token] = (now + CACHE_SECONDS, found)
        return found

    async def _lookup(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        token_id = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
        async with self.db.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT name, roles, site_id, station_id, token_hash FROM auth.tokens
                   WHERE token_id = $1 AND revoked_at IS NULL""",
                token_id,
            )
        if row is None or not hmac.compare_digest(row["token_hash"], hash_token(token)):
            return None
        return Principal(
            row["name"],
            frozenset(Role(r) for r in row["roles"]),
            row["site_id"],
            row["station_id"],
        )


async def development_tokens(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM auth.tokens WHERE development AND revoked_at IS NULL"
    )
    return int(value)


def bearer(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """The token of an `authorization: Bearer <token>` header, or ''."""
    for key, value in metadata:
        if key == "authorization" and str(value).startswith("Bearer "):
            return str(value)[len("Bearer ") :].strip()
    return ""
