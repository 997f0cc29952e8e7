"""Applying a line layout: the example file, twice, then changed."""

import grpc
from kanban.orders.v1 import orders_pb2
from kanban.stock.v1 import stock_pb2

from services.devstack.layout import apply_layout, load_layout
from tests.conftest import new_id
from tests.e2e.conftest import ROOT


async def test_the_example_layout_applies_once_and_a_changed_loop_is_refused(stack):
    layout = load_layout(ROOT / "examples" / "line.yaml")
    layout["site"]["site_id"] = new_id("layout")
    stations, stock, orders = stack.channels[:3]

    assert await apply_layout(stations, stock, orders, layout) == ["BRACKET", "FRAME"]
    assert await apply_layout(stations, stock, orders, layout) == ["BRACKET", "FRAME"]
    bins = await stack.stock.ListLocations(
        stock_pb2.ListLocationsRequest(site_id=layout["site"]["site_id"], warehouse_id="WH1")
    )
    assert [(loc.location_id, loc.kind) for loc in bins.locations] == [
        ("FG-WAREHOUSE", stock_pb2.LOCATION_KIND_WAREHOUSE_BIN),
        ("QA-01", stock_pb2.LOCATION_KIND_QUARANTINE),
        ("RAW-01", stock_pb2.LOCATION_KIND_WAREHOUSE_BIN),
    ]
    product = await stack.orders.DefineProduct(
        orders_pb2.DefineProductRequest(
            request_id=new_id("r"),
            site_id=layout["site"]["site_id"],
            item_id="CHASSIS",
            pacemaker_station_id="ASSY",
            container_quantity=10,
            finished_goods_location_id="FG-WAREHOUSE",
        )
    )
    assert product.product.pacemaker_station_id == "ASSY"

    layout["loops"][0]["card_count"] = 9
    try:
        await apply_layout(stations, stock, orders, layout)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    else:
        raise AssertionError("a changed loop was applied")
