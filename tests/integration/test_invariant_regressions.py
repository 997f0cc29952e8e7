"""What the stateful property test (test_invariants.py) found, pinned down as plain
examples: they fail on the code before each fix, every time."""

import asyncio

from kanban.orders.v1 import orders_pb2
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

from tests.conftest import eventually, new_id
from tests.integration.test_order_flow import chassis_order
from tests.integration.test_resize import resize
from tests.integration.test_watch_signals import Terminal
from tests.stock_site import StockSite


async def sent_until_heartbeat(terminal: Terminal) -> list[pb.WatchSignalsResponse]:
    """What a terminal is sent until the stream has nothing more for it."""
    messages: list[pb.WatchSignalsResponse] = []
    while True:
        message = await asyncio.wait_for(terminal.messages.get(), 30)
        if message.HasField("heartbeat"):
            return messages
        messages.append(message)


async def test_a_terminal_away_while_an_order_is_cut_and_cancelled_drops_every_instruction(
    stack, line
):
    site = line.site_id
    await chassis_order(stack, site, "SO-1", 30)
    terminal = Terminal(stack.stations, site, "ASSY")
    await stack.orders.ReleaseOrder(
        orders_pb2.ReleaseOrderRequest(request_id=new_id("r"), site_id=site, erp_order_id="SO-1")
    )
    queued = [m.instruction for m in await sent_until_heartbeat(terminal)]
    terminal.disconnect()
    assert [i.instruction_id for i in queued] == ["SO-1-0001", "SO-1-0002", "SO-1-0003"]

    # While the terminal is away the customer cuts the order to 15 (SO-1-0003 is
    # withdrawn, SO-1-0002 shrinks to 5 and is announced again), then cancels it.
    await stack.orders.ChangeOrderQuantity(
        orders_pb2.ChangeOrderQuantityRequest(
            request_id=new_id("r"), site_id=site, erp_order_id="SO-1", quantity=15
        )
    )
    await stack.orders.CancelOrder(
        orders_pb2.CancelOrderRequest(request_id=new_id("r"), site_id=site, erp_order_id="SO-1")
    )

    async def cancelled() -> bool:
        found = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=site))
        return not any(s.open_instructions for s in found.stations)

    assert await eventually(cancelled)
    back = Terminal(stack.stations, site, "ASSY", after=max(i.sequence for i in queued))
    try:
        withdrawn = {m.withdrawal.instruction_id for m in await sent_until_heartbeat(back)}
    finally:
        back.disconnect()
    # It had all three on its queue: it must drop all three, SO-1-0002 included.
    assert withdrawn == {"SO-1-0001", "SO-1-0002", "SO-1-0003"}


async def test_a_terminal_is_not_told_to_drop_signals_it_was_never_sent(stack, line):
    # Two new cards ask stamping for containers, and retire before anyone started
    # them (or watched): their signals are withdrawn.
    await resize(line, "P", 5)
    await resize(line, "P", 3)

    terminal = Terminal(stack.stations, line.site_id, "STAMP")
    try:
        assert await sent_until_heartbeat(terminal) == []
    finally:
        terminal.disconnect()


async def test_one_new_lot_received_at_two_docks_at_once(stack):
    site = await StockSite(stack.stock, new_id("site")).create()
    receipts = await asyncio.gather(
        site.receive("LOT-SPLIT", 40, location="BIN-A"),
        site.receive("LOT-SPLIT", 60, location="BIN-B"),
    )

    assert [r.movement.entries[0].quantity for r in receipts] == [40, 60]
    assert await site.levels() == {("BIN-A", "LOT-SPLIT"): 40, ("BIN-B", "LOT-SPLIT"): 60}
    lot = await site.lot("LOT-SPLIT")
    assert lot.status == stock_pb2.LOT_STATUS_AVAILABLE
