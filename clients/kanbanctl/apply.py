"""`kanbanctl apply`: makes a site what its layout file says, as far as creating
can. It reads what exists first and creates only what is missing, so applying
the same file again changes nothing, not even the audit log. What exists with
other content is reported, never changed: the services have no update RPCs,
except for a loop's number of cards, which ResizeLoop changes safely.
"""

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import grpc
from kanban.orders.v1 import orders_pb2, orders_pb2_grpc
from kanban.stations.v1 import stations_pb2, stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc

from clients.kanbanctl.current import read_current
from clients.kanbanctl.layout import Entity, entities
from clients.kanbanctl.plan import Step, plan
from clients.kanbanctl.report import Outcome, Report, Status, differs

# The create RPC of each kind: the service, the method and its request.
_CREATE = {
    "site": ("stations", "CreateSite", stations_pb2.CreateSiteRequest),
    "station": ("stations", "CreateStation", stations_pb2.CreateStationRequest),
    "item": ("stations", "CreateItem", stations_pb2.CreateItemRequest),
    "loop": ("stations", "CreateLoop", stations_pb2.CreateLoopRequest),
    "warehouse": ("stock", "CreateWarehouse", stock_pb2.CreateWarehouseRequest),
    "location": ("stock", "CreateLocation", stock_pb2.CreateLocationRequest),
    "product": ("orders", "DefineProduct", orders_pb2.DefineProductRequest),
}

# Refusals of one entity (say, a loop naming a station the file lacks): reported
# with it while the rest is applied. Any other error stops the command.
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}


async def apply_layout(
    stations: grpc.aio.Channel,
    stock: grpc.aio.Channel,
    orders: grpc.aio.Channel,
    layout: Mapping[str, Any],
) -> Report:
    """Creates what the layout has and its site lacks; reports on every entity."""
    wanted = entities(layout)
    site_id = wanted[0].key
    current = await read_current(stations, stock, orders, site_id)
    stubs = {
        "stations": stations_pb2_grpc.StationsServiceStub(stations),
        "stock": stock_pb2_grpc.StockServiceStub(stock),
        "orders": orders_pb2_grpc.OrdersServiceStub(orders),
    }
    outcomes = []
    for step in plan(wanted, current):
        if step.entity.kind.name == "loop" and [d.field for d in step.differences] == [
            "card_count"
        ]:
            outcomes.append(await _resize(stubs["stations"], site_id, step))
        elif step.differences:
            outcomes.append(differs(step.entity, ", ".join(map(str, step.differences))))
        elif step.exists:
            outcomes.append(Outcome(step.entity, Status.UNCHANGED))
        else:
            outcomes.append(await _create(stubs, site_id, step.entity))
    return Report(outcomes)


async def _create(stubs: dict[str, Any], site_id: str, entity: Entity) -> Outcome:
    service, rpc, request_type = _CREATE[entity.kind.name]
    fields: dict[str, Any] = {**entity.content, entity.kind.key: entity.key}
    if entity.kind.name == "location":
        fields["kind"] = stock_pb2.LocationKind.Value(f"LOCATION_KIND_{fields['kind']}")
    # Derived from the content: if this create is retried (its answer lost), the
    # service answers it again instead of acting twice.
    request = request_type(request_id=request_id(entity), **{"site_id": site_id, **fields})
    try:
        await getattr(stubs[service], rpc)(request)
    except grpc.aio.AioRpcError as error:
        # It exists after all, with other content (something the reading could not see).
        if error.code() == grpc.StatusCode.ALREADY_EXISTS:
            return differs(entity, error.details() or "")
        if error.code() in _REFUSALS:
            return Outcome(entity, Status.FAILED, f"{error.code().name}: {error.details()}")
        raise
    return Outcome(entity, Status.CREATED)


async def _resize(stations: Any, site_id: str, step: Step) -> Outcome:
    (difference,) = step.differences
    request = stations_pb2.ResizeLoopRequest(
        request_id=request_id(step.entity),
        site_id=site_id,
        loop_id=step.entity.key,
        card_count=int(difference.wanted),
        reason="kanbanctl apply: the layout file changed",
    )
    try:
        await stations.ResizeLoop(request)
    except grpc.aio.AioRpcError as error:
        if error.code() in _REFUSALS:
            return Outcome(step.entity, Status.FAILED, f"{error.code().name}: {error.details()}")
        raise
    return Outcome(step.entity, Status.RESIZED, str(difference))


def request_id(entity: Entity) -> str:
    content = [entity.kind.name, entity.key, dict(entity.content)]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"layout-{entity.kind.name}-{digest[:24]}"
