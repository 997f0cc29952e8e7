"""Applying a line layout: the example file, twice, then changed."""

import grpc
from kanban.orders.v1 import orders_pb2

from services.devstack.layout import apply_layout, load_layout
from tests.conftest import new_id
from tests.e2e.conftest import ROOT


async def test_the_example_layout_applies_once_and_a_changed_loop_is_refused(stack):
    layout = load_layout(ROOT / "examples" / "line.yaml")
    layout["site"]["site_id"] = new_id("layout")
    stations, orders = stack.channels[0], stack.channels[2]

    assert await apply_layout(stations, orders, layout) == ["BRACKET", "FRAME"]
    assert await apply_layout(stations, orders, layout) == ["BRACKET", "FRAME"]
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
        await apply_layout(stations, orders, layout)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    else:
        raise AssertionError("a changed loop was applied")
