"""Applies a line layout (sites, stations, items, loops, warehouses and their
locations, products) from YAML through gRPC.

Request ids are derived from each entry's content, so applying the same file
again returns the first answers and changes nothing.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
import yaml
from kanban.orders.v1 import orders_pb2, orders_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc


def _request_id(kind: str, entry: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([kind, entry], sort_keys=True).encode()).hexdigest()
    return f"layout-{kind}-{digest[:24]}"


def load_layout(path: Path) -> dict[str, Any]:
    layout: dict[str, Any] = yaml.safe_load(path.read_text())
    return layout


async def apply_layout(
    stations: grpc.aio.Channel,
    stock: grpc.aio.Channel,
    orders: grpc.aio.Channel,
    layout: dict[str, Any],
) -> list[str]:
    """Creates what the layout describes; returns the loop ids."""
    stub = stations_pb2_grpc.StationsServiceStub(stations)
    site = layout["site"]
    site_id = site["site_id"]
    await stub.CreateSite(pb.CreateSiteRequest(request_id=_request_id("site", site), **site))
    for station in layout["stations"]:
        await stub.CreateStation(
            pb.CreateStationRequest(
                request_id=_request_id("station", station), site_id=site_id, **station
            )
        )
    for item in layout["items"]:
        await stub.CreateItem(
            pb.CreateItemRequest(request_id=_request_id("item", item), site_id=site_id, **item)
        )
    for loop in layout["loops"]:
        await stub.CreateLoop(
            pb.CreateLoopRequest(request_id=_request_id("loop", loop), site_id=site_id, **loop)
        )
    warehouses = stock_pb2_grpc.StockServiceStub(stock)
    for warehouse in layout.get("warehouses", []):
        await warehouses.CreateWarehouse(
            stock_pb2.CreateWarehouseRequest(
                request_id=_request_id("warehouse", warehouse), site_id=site_id, **warehouse
            )
        )
    for location in layout.get("locations", []):
        kind = stock_pb2.LocationKind.Value(f"LOCATION_KIND_{location['kind']}")
        await warehouses.CreateLocation(
            stock_pb2.CreateLocationRequest(
                request_id=_request_id("location", location),
                site_id=site_id,
                **{**location, "kind": kind},
            )
        )
    products = orders_pb2_grpc.OrdersServiceStub(orders)
    for product in layout.get("products", []):
        await products.DefineProduct(
            orders_pb2.DefineProductRequest(
                request_id=_request_id("product", product), site_id=site_id, **product
            )
        )
    return [loop["loop_id"] for loop in layout["loops"]]
