"""What a site has now, as far as the services can tell.

Loops and locations are listed by their services. The site, stations, items,
warehouses and products have no read RPC: they are read from the audit log of
the service that made them, which records every successful create with the
entity as stored, in the create's own transaction. None of them can change once
made, so any such record says what is there.
"""

import asyncio
import json

import grpc
from kanban.audit.v1 import audit_pb2, audit_pb2_grpc
from kanban.stations.v1 import stations_pb2, stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc

from clients.kanbanctl.layout import ITEM, LOCATION, LOOP, PRODUCT, SITE, STATION, WAREHOUSE, Kind
from clients.kanbanctl.paging import all_pages

Content = dict[str, str | int]
Current = dict[tuple[str, str], Content]


async def read_current(
    stations: grpc.aio.Channel, stock: grpc.aio.Channel, orders: grpc.aio.Channel, site_id: str
) -> Current:
    audited = [
        (SITE, stations, "StationsService/CreateSite"),
        (STATION, stations, "StationsService/CreateStation"),
        (ITEM, stations, "StationsService/CreateItem"),
        (WAREHOUSE, stock, "StockService/CreateWarehouse"),
        (PRODUCT, orders, "OrdersService/DefineProduct"),
    ]
    parts = await asyncio.gather(
        _loops(stations, site_id),
        _locations(stock, site_id),
        *(_created(kind, channel, rpc, site_id) for kind, channel, rpc in audited),
    )
    return {key: content for part in parts for key, content in part.items()}


async def _loops(channel: grpc.aio.Channel, site_id: str) -> Current:
    loops = await all_pages(
        stations_pb2_grpc.StationsServiceStub(channel).ListLoops,
        stations_pb2.ListLoopsRequest(site_id=site_id),
        "loops",
    )
    # A loop being made smaller still counts the cards waiting to retire: the
    # layout says what it is heading for.
    return {
        (LOOP.name, loop.loop_id): {
            **{field: getattr(loop, field) for field in LOOP.fields},
            "card_count": loop.target_card_count,
        }
        for loop in loops
    }


async def _locations(channel: grpc.aio.Channel, site_id: str) -> Current:
    locations = await all_pages(
        stock_pb2_grpc.StockServiceStub(channel).ListLocations,
        stock_pb2.ListLocationsRequest(site_id=site_id),
        "locations",
    )
    return {
        (LOCATION.name, location.location_id): {
            "warehouse_id": location.warehouse_id,
            "kind": stock_pb2.LocationKind.Name(location.kind).removeprefix("LOCATION_KIND_"),
        }
        for location in locations
    }


async def _created(kind: Kind, channel: grpc.aio.Channel, rpc: str, site_id: str) -> Current:
    records = await all_pages(
        audit_pb2_grpc.AuditServiceStub(channel).ListAuditRecords,
        audit_pb2.ListAuditRecordsRequest(site_id=site_id, rpc=rpc),
        "records",
    )
    found: Current = {}
    for record in records:
        stored = _stored(kind, record.after) if record.result == "OK" else None
        if stored is not None:
            key, content = stored
            found[(kind.name, key)] = content
    return found


def _stored(kind: Kind, after: str) -> tuple[str, Content] | None:
    """The entity (its key and content) in an audit record's summary of the answer.
    A summary that cannot be read leaves the entity unknown here: its create RPC
    then says whether it is the same."""
    try:
        summary = json.loads(after)
    except ValueError:
        return None
    if not isinstance(summary, dict) or not isinstance(summary.get(kind.key), str):
        return None
    content: Content = {
        field: value
        for field, type_ in kind.fields.items()
        if isinstance(value := summary.get(field), str | int) and type(value) is type_
    }
    return summary[kind.key], content
