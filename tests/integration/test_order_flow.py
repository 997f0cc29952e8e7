"""Orders and stations together, in-process: a cut reaches the pacemaker's terminal."""

import time
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2
from kanban.orders.v1 import orders_pb2

from tests.conftest import new_id
from tests.integration.test_instructions import next_instruction, next_withdrawal
from tests.integration.test_watch_signals import Terminal


async def chassis_order(
    stack, site_id: str, erp_order_id: str, quantity: int, priority: int = 0
) -> None:
    """The product CHASSIS made at ASSY in containers of 10, and an order of it due
    tomorrow (not yet released)."""
    await stack.orders.DefineProduct(
        orders_pb2.DefineProductRequest(
            request_id=new_id("r"),
            site_id=site_id,
            item_id="CHASSIS",
            pacemaker_station_id="ASSY",
            container_quantity=10,
            finished_goods_location_id="FG",
        )
    )
    due = timestamp_pb2.Timestamp()
    due.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    await stack.orders.CreateOrder(
        orders_pb2.CreateOrderRequest(
            request_id=new_id("r"),
            site_id=site_id,
            erp_order_id=erp_order_id,
            item_id="CHASSIS",
            quantity=quantity,
            due_time=due,
            priority=priority,
        )
    )


async def test_a_cut_withdraws_the_instruction_from_the_terminal_at_once(stack, line):
    site = line.site_id
    await chassis_order(stack, site, "SO-9", 40, priority=1)
    terminal = Terminal(stack.stations, site, "ASSY")
    try:
        await stack.orders.ReleaseOrder(
            orders_pb2.ReleaseOrderRequest(
                request_id=new_id("r"), site_id=site, erp_order_id="SO-9"
            )
        )
        queued = [await next_instruction(terminal) for _ in range(4)]
        assert [i.instruction_id for i in queued] == [f"SO-9-{n:04d}" for n in range(1, 5)]

        cut_at = time.perf_counter()
        await stack.orders.ChangeOrderQuantity(
            orders_pb2.ChangeOrderQuantityRequest(
                request_id=new_id("r"), site_id=site, erp_order_id="SO-9", quantity=20
            )
        )
        first = await next_withdrawal(terminal)
        second = await next_withdrawal(terminal)
        took_ms = (time.perf_counter() - cut_at) * 1000
    finally:
        terminal.disconnect()
    assert {first.instruction_id, second.instruction_id} == {"SO-9-0003", "SO-9-0004"}
    print(f"\ncut to withdrawal on the terminal: {took_ms:.1f} ms")
