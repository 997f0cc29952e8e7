"""Applying a line layout as `make run` does: the example file, twice, then changed."""

from kanban.orders.v1 import orders_pb2
from kanban.stock.v1 import stock_pb2

from clients.kanbanctl.apply import apply_layout
from clients.kanbanctl.layout import load_layout
from clients.kanbanctl.report import Status
from tests.conftest import new_id
from tests.e2e.conftest import ROOT


async def test_the_example_layout_applies_once_and_a_changed_loop_is_reported(stack):
    layout = load_layout(ROOT / "examples" / "line.yaml")
    site_id = layout["site"]["site_id"] = new_id("layout")
    stations, stock, orders = stack.channels[:3]

    first = await apply_layout(stations, stock, orders, layout)
    assert first.ok
    assert {o.status for o in first.outcomes} == {Status.CREATED}
    again = await apply_layout(stations, stock, orders, layout)
    assert again.ok
    assert {o.status for o in again.outcomes} == {Status.UNCHANGED}

    bins = await stack.stock.ListLocations(
        stock_pb2.ListLocationsRequest(site_id=site_id, warehouse_id="WH1")
    )
    assert [(loc.location_id, loc.kind) for loc in bins.locations] == [
        ("FG-WAREHOUSE", stock_pb2.LOCATION_KIND_WAREHOUSE_BIN),
        ("QA-01", stock_pb2.LOCATION_KIND_QUARANTINE),
        ("RAW-01", stock_pb2.LOCATION_KIND_WAREHOUSE_BIN),
    ]
    # Defining the product as the file does is a no-op: it was defined just so.
    product = await stack.orders.DefineProduct(
        orders_pb2.DefineProductRequest(
            request_id=new_id("r"),
            site_id=site_id,
            item_id="CHASSIS",
            pacemaker_station_id="ASSY",
            container_quantity=10,
            finished_goods_location_id="FG-WAREHOUSE",
        )
    )
    assert product.product.pacemaker_station_id == "ASSY"

    layout["loops"][0]["card_count"] = 9
    resized = await apply_layout(stations, stock, orders, layout)
    assert resized.ok
    assert [(str(o.entity), o.status) for o in resized.outcomes if o.status != "unchanged"] == [
        ("loop BRACKET", Status.RESIZED)
    ]
    assert {o.status for o in (await apply_layout(stations, stock, orders, layout)).outcomes} == {
        Status.UNCHANGED
    }

    layout["loops"][0]["container_quantity"] += 1
    changed = await apply_layout(stations, stock, orders, layout)
    assert not changed.ok
    assert [(str(o.entity), o.status) for o in changed.outcomes if o.status != "unchanged"] == [
        ("loop BRACKET", Status.DIFFERS)
    ]
