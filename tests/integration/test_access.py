"""Who may do what: tokens, roles, the permission of every RPC, and the audit trail,
on the services running with authentication on (in a database of their own)."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kanban.alerts.v1 import alerts_pb2
from kanban.audit.v1 import audit_pb2, audit_pb2_grpc
from kanban.events.v1 import events_pb2
from kanban.orders.v1 import orders_pb2
from kanban.stations.v1 import stations_pb2, stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc

from services.alerts.app import SPEC as ALERTS
from services.core import auth, client, tokens
from services.core.auth import Principal, Role
from services.core.server import PLATFORM_PERMISSIONS, start_service
from services.orders.app import SPEC as ORDERS
from services.stations.app import SPEC as STATIONS
from services.stock.app import SPEC as STOCK
from tests.conftest import (
    Line,
    Stack,
    eventually,
    fast_settings,
    fresh_database,
    new_id,
    refused,
    start_stack,
)

SPECS = {"stations": STATIONS, "stock": STOCK, "orders": ORDERS, "alerts": ALERTS}
# The services' own RPCs, and what the platform serves in every one of them.
MODULES = {"stations": stations_pb2, "stock": stock_pb2, "orders": orders_pb2, "alerts": alerts_pb2}
PLATFORM_MODULES = (events_pb2, audit_pb2)
SITE = "ACCESS-PLANT"
STATION = "WELD"


@dataclass
class Secured:
    """The four services with authentication on, and a token per role."""

    stack: Stack
    url: str
    tokens: dict[Role, str]


async def issue(url: str, name: str, roles: list[Role], station: str = "", **kw: Any) -> str:
    conn = await asyncpg.connect(url)
    try:
        await auth.ensure_schema(conn)
        return await tokens.issue(conn, name, roles, SITE if station else "", station, **kw)
    finally:
        await conn.close()


def principal_of(role: Role) -> Principal:
    if role is Role.OPERATOR:
        return Principal("terminal", frozenset([role]), SITE, STATION)
    return Principal(role.value, frozenset([role]))


@pytest.fixture(scope="module")
async def secured(database_url: str) -> AsyncIterator[Secured]:
    url = await fresh_database(database_url)
    issued = {
        role: await issue(url, principal_of(role).name, [role], principal_of(role).station_id)
        for role in Role
    }
    stack = await start_stack(url, auth_enabled=True, service_token=issued[Role.SERVICE])
    async with client.channel(stack.peers["stations"], issued[Role.PLANNER]) as channel:
        await Line(stations_pb2_grpc.StationsServiceStub(channel), SITE).create(cards=3)
    yield Secured(stack, url, issued)
    await stack.close()


@dataclass(frozen=True)
class Rpc:
    service: str
    method: str  # the full name, as the permissions say it
    descriptor: Any
    request_type: Any
    response_type: Any


def every_rpc() -> Iterator[Rpc]:
    for service, module in MODULES.items():
        for owner in (module, *PLATFORM_MODULES):
            for grpc_service in owner.DESCRIPTOR.services_by_name.values():
                for m in grpc_service.methods:
                    yield Rpc(
                        service,
                        f"/{grpc_service.full_name}/{m.name}",
                        m,
                        getattr(owner, m.input_type.name),
                        getattr(owner, m.output_type.name),
                    )


RPCS = list(every_rpc())


def test_every_rpc_declares_who_may_call_it():
    for spec in SPECS.values():
        declared = {**PLATFORM_PERMISSIONS, **spec.permissions}
        served = {r.method for r in RPCS if r.service == spec.name}
        assert served - declared.keys() == set(), f"{spec.name}: RPCs with no permission"
        own = {m for m in spec.permissions}
        assert own <= served, f"{spec.name}: permissions for RPCs that do not exist"


async def call(channel: grpc.aio.Channel, rpc: Rpc, request: Any) -> grpc.StatusCode:
    """The status a call ends with (a stream that is allowed is read once, then left)."""
    serializers = dict(
        request_serializer=rpc.request_type.SerializeToString,
        response_deserializer=rpc.response_type.FromString,
    )
    try:
        if rpc.descriptor.server_streaming:
            stream = channel.unary_stream(rpc.method, **serializers)(request, timeout=10)
            await stream.read()
            stream.cancel()
        else:
            await channel.unary_unary(rpc.method, **serializers)(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def request_for(rpc: Rpc, station: str) -> Any:
    """A request at the test site, at a station when it names one; mostly incomplete, so an
    allowed call ends in INVALID_ARGUMENT or NOT_FOUND and changes nothing."""
    fields = rpc.request_type.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {"site_id": SITE} if "site_id" in fields else {}
    if "station_id" in fields:
        values["station_id"] = station
    if "request_id" in fields:
        values["request_id"] = new_id("matrix")
    return rpc.request_type(**values)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
async def test_every_rpc_with_every_role_is_allowed_or_denied_as_declared(secured, role):
    denied = grpc.StatusCode.PERMISSION_DENIED
    principal = principal_of(role)
    mistakes = []
    for rpc in RPCS:
        permission = {**PLATFORM_PERMISSIONS, **SPECS[rpc.service].permissions}[rpc.method]
        # At its own station, and (for an operator, whose station matters) at another.
        for station in (STATION, "STAMP"):
            request = request_for(rpc, station)
            async with client.channel(secured.stack.peers[rpc.service], secured.tokens[role]) as ch:
                code = await call(ch, rpc, request)
            if (
                permission.allows(principal, request) == (code == denied)
                or code is grpc.StatusCode.UNAUTHENTICATED
            ):
                mistakes.append(f"{rpc.method} at {station}: {code.name}")
    assert mistakes == [], f"{role.value}: " + "; ".join(mistakes)


# What the roles mean, said once more by hand: the declarations must agree.
FACTS = [
    (Role.OPERATOR, "/kanban.stations.v1.StationsService/ScanCard", STATION, True),
    (Role.OPERATOR, "/kanban.stations.v1.StationsService/ScanCard", "STAMP", False),
    (Role.OPERATOR, "/kanban.stations.v1.StationsService/WatchSignals", "STAMP", False),
    (Role.OPERATOR, "/kanban.stations.v1.StationsService/CreateLoop", STATION, False),
    (Role.PLANNER, "/kanban.stations.v1.StationsService/CreateLoop", STATION, True),
    (Role.PLANNER, "/kanban.stations.v1.StationsService/ScanCard", STATION, False),
    (Role.PLANNER, "/kanban.orders.v1.OrdersService/ReleaseOrder", STATION, True),
    (Role.ERP, "/kanban.orders.v1.OrdersService/CreateOrder", STATION, True),
    (Role.ERP, "/kanban.stations.v1.StationsService/ScanCard", STATION, False),
    (Role.WAREHOUSE, "/kanban.stock.v1.StockService/IssueStock", STATION, True),
    (Role.WAREHOUSE, "/kanban.stock.v1.StockService/QuarantineLot", STATION, False),
    (Role.QUALITY, "/kanban.stock.v1.StockService/QuarantineLot", STATION, True),
    (Role.QUALITY, "/kanban.stock.v1.StockService/IssueStock", STATION, False),
    (Role.PURCHASING, "/kanban.stock.v1.StockService/GetStockLevels", STATION, True),
    (Role.PURCHASING, "/kanban.stock.v1.StockService/ReceiveStock", STATION, False),
    (Role.ADMIN, "/kanban.audit.v1.AuditService/ListAuditRecords", STATION, True),
    (Role.ADMIN, "/kanban.stations.v1.StationsService/ScanCard", STATION, False),
    (Role.OPERATOR, "/kanban.audit.v1.AuditService/ListAuditRecords", STATION, False),
    (Role.ADMIN, "/kanban.events.v1.EventSinkService/DeliverEvents", STATION, False),
    (Role.SERVICE, "/kanban.events.v1.EventSinkService/DeliverEvents", STATION, True),
]


@pytest.mark.parametrize(("role", "method", "station", "allowed"), FACTS)
def test_the_roles_mean_what_they_say(role, method, station, allowed):
    rpc = next(r for r in RPCS if r.method == method)
    permission = {**PLATFORM_PERMISSIONS, **SPECS[rpc.service].permissions}[method]

    assert permission.allows(principal_of(role), request_for(rpc, station)) is allowed


async def card_state(secured: Secured, card: str) -> int:
    token = secured.tokens[Role.PLANNER]
    async with client.channel(secured.stack.peers["stations"], token) as channel:
        reply = await stations_pb2_grpc.StationsServiceStub(channel).GetCard(
            stations_pb2.GetCardRequest(site_id=SITE, card_code=card)
        )
    return int(reply.card.state)


async def scan(secured: Secured, token: str, station: str, card: str, request_id: str = ""):
    async with client.channel(secured.stack.peers["stations"], token) as channel:
        return await stations_pb2_grpc.StationsServiceStub(channel).ScanCard(
            stations_pb2.ScanCardRequest(
                request_id=request_id or new_id("r"),
                site_id=SITE,
                station_id=station,
                card_code=card,
            )
        )


async def audit_records(secured: Secured, service: str = "stations", **filters) -> list[Any]:
    token = secured.tokens[Role.PLANNER]
    async with client.channel(secured.stack.peers[service], token) as channel:
        found, page = [], ""
        while True:
            reply = await audit_pb2_grpc.AuditServiceStub(channel).ListAuditRecords(
                audit_pb2.ListAuditRecordsRequest(
                    site_id=SITE, page_size=2, page_token=page, **filters
                )
            )
            found += reply.records
            if not (page := reply.next_page_token):
                return found


@pytest.mark.parametrize("token", ["", "kbn_nope_nope", "Bearer", "x" * 500])
async def test_no_valid_token_is_unauthenticated_and_changes_nothing(secured, token):
    before = await card_state(secured, "W-003")
    request_id = new_id("anon")

    refusal = await refused(scan(secured, token, "ASSY", "W-003", request_id))

    assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
    assert refusal.message == "a valid bearer token is required"
    assert refusal.reason == "" and refusal.metadata == {}
    assert await card_state(secured, "W-003") == before
    (record,) = [
        r for r in await audit_records(secured, rpc="ScanCard") if r.request_id == request_id
    ]
    assert (record.actor, record.result) == ("unauthenticated", "UNAUTHENTICATED")


async def test_an_operator_acts_only_at_its_station_and_the_refusal_is_audited(secured):
    request_id = new_id("elsewhere")

    refusal = await refused(
        scan(secured, secured.tokens[Role.OPERATOR], "ASSY", "W-002", request_id)
    )

    assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
    assert refusal.message == "this token may not do that"
    assert await card_state(secured, "W-002") == stations_pb2.CARD_STATE_FULL
    (record,) = [r for r in await audit_records(secured) if r.request_id == request_id]
    assert (record.actor, list(record.roles), record.station_id, record.result) == (
        "terminal",
        ["operator"],
        STATION,
        "PERMISSION_DENIED",
    )
    assert record.target == "station_id=ASSY card_code=W-002"


async def test_a_change_is_audited_with_who_what_and_the_outcome(secured):
    request_id = new_id("scan")

    await scan(secured, secured.tokens[Role.OPERATOR], STATION, "P-001", request_id)
    again = await refused(scan(secured, secured.tokens[Role.OPERATOR], STATION, "P-001"))

    records = {r.request_id: r for r in await audit_records(secured, rpc="ScanCard")}
    done = records[request_id]
    assert (done.actor, done.station_id, done.result) == ("terminal", STATION, "OK")
    assert done.rpc == "/kanban.stations.v1.StationsService/ScanCard"
    assert done.target == "station_id=WELD card_code=P-001"
    assert '"state": "EMPTY"' in done.after
    assert done.before and '"state": "FULL"' in done.before
    assert again.reason == "INVALID_CARD_STATE"
    refused_again = [r for r in records.values() if r.result.startswith("FAILED_PRECONDITION")]
    assert refused_again and refused_again[-1].result == "FAILED_PRECONDITION INVALID_CARD_STATE"


async def test_the_audit_log_cannot_be_altered(secured):
    conn = await asyncpg.connect(secured.url)
    try:
        for statement in (
            "UPDATE stations.audit_log SET actor = 'x'",
            "DELETE FROM stations.audit_log",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_services_deliver_events_with_their_token(secured):
    """The scan's event reached stock through stations' relay, which presents the
    services' token; anybody else is refused at the event sink."""
    await scan(secured, secured.tokens[Role.OPERATOR], STATION, "P-002")

    async def moved() -> bool:
        async with client.channel(secured.stack.peers["stock"], secured.tokens[Role.PLANNER]) as ch:
            reply = await stock_pb2_grpc.StockServiceStub(ch).ListMovements(
                stock_pb2.ListMovementsRequest(site_id=SITE, location_id="SM-P")
            )
        return any(m.reference == "card P-002" for m in reply.movements)

    assert await eventually(moved)
    (sink,) = [r for r in RPCS if r.method.endswith("DeliverEvents") and r.service == "stock"]
    async with client.channel(secured.stack.peers["stock"], secured.tokens[Role.ADMIN]) as ch:
        assert (
            await call(ch, sink, events_pb2.DeliverEventsRequest())
            == grpc.StatusCode.PERMISSION_DENIED
        )


async def test_a_revoked_token_stops_working(secured):
    token = await issue(secured.url, "temp", [Role.PLANNER])
    async with client.channel(secured.stack.peers["stations"], token) as channel:
        board = stations_pb2.GetBoardRequest(site_id=SITE)
        stub = stations_pb2_grpc.StationsServiceStub(channel)
        await stub.GetBoard(board)
        conn = await asyncpg.connect(secured.url)
        try:
            assert await tokens.revoke(conn, "temp", "", False) == 1
        finally:
            await conn.close()

        async def rejected() -> bool:
            try:
                await stub.GetBoard(board)
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        assert await eventually(rejected, timeout=auth.CACHE_SECONDS * 4)


async def test_health_needs_no_token(secured):
    async with client.channel(secured.stack.peers["orders"]) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_production_refuses_to_start_unsafe(secured):
    settings = fast_settings(secured.url, production=True, peers=secured.stack.peers)
    with pytest.raises(SystemExit, match="authentication off"):
        await start_service(ORDERS, replace(settings, auth_enabled=False))
    dev = await issue(secured.url, "laptop", [Role.ADMIN], development=True)
    with pytest.raises(SystemExit, match="development token"):
        await start_service(ORDERS, replace(settings, auth_enabled=True))
    conn = await asyncpg.connect(secured.url)
    try:
        await tokens.revoke(conn, "", dev[len("kbn_") :].split("_")[0], False)
    finally:
        await conn.close()
    running = await start_service(ORDERS, replace(settings, auth_enabled=True))
    await running.stop(0.5)


async def test_bad_audit_queries_name_the_field(secured):
    async with client.channel(secured.stack.peers["stock"], secured.tokens[Role.ADMIN]) as ch:
        stub = audit_pb2_grpc.AuditServiceStub(ch)
        for request, field in [
            (audit_pb2.ListAuditRecordsRequest(site_id=""), "site_id"),
            (audit_pb2.ListAuditRecordsRequest(site_id=SITE, page_token="x"), "page_token"),
            (audit_pb2.ListAuditRecordsRequest(site_id=SITE, page_size=-1), "page_size"),
            (audit_pb2.ListAuditRecordsRequest(site_id=SITE, actor="a\x00b"), "actor"),
        ]:
            refusal = await refused(stub.ListAuditRecords(request))
            assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
            assert refusal.fields == [field]
