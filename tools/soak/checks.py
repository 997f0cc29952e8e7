"""The invariants checked once the load has stopped: each waits (up to DRAIN_SECONDS)
for what is still travelling between the services, then compares."""

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from kanban.orders.v1 import orders_pb2
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

from tools.soak.clients import CALL_TIMEOUT, DRAIN_SECONDS, Follower
from tools.soak.line import FG_LOCATION, PRODUCT_CONTAINER, RAW_LOCATION, Check, Line
from tools.soak.load import check_board


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = DRAIN_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


def in_order(check: Check, follower: Follower, contiguous: bool = False) -> None:
    """Each item once, in sequence order, across reconnects; with `contiguous`, none missed."""
    sequences = follower.sequences()
    for before, after in itertools.pairwise(sequences):
        check.expect(after > before, f"{follower.watching}: sequence {after} after {before}")
    if contiguous:
        check.expect(
            sequences == list(range(1, len(sequences) + 1)),
            f"{follower.watching}: sequences are not 1..{len(sequences)}",
        )


async def check_at_end(
    line: Line, terminals: list[Follower], watchers: list[Follower], admin: Any, wip: Check
) -> list[Check]:
    """The board once more, then every check that needs the load to have stopped."""
    await check_board(admin, line.site_id, wip)
    return [
        await check_terminals(line, terminals),
        await check_cards(line, admin),
        await check_stock(line, admin),
        await check_orders(line),
        await check_watchers(line, watchers),
    ]


async def check_terminals(line: Line, followers: list[Follower]) -> Check:
    """Waits for every terminal to show every signal raised, then checks them all."""
    check = Check(
        "every signal and instruction reached each terminal of its station once, in order"
    )

    instructions = {job.instruction_id for job in line.jobs if job.state not in ("new", "created")}

    def all_shown(terminal: Follower) -> bool:
        at_pacemaker = terminal.watching == line.pacemaker
        return line.raised[terminal.watching] <= set(terminal.sequences("signal")) and (
            not at_pacemaker or instructions <= set(terminal.about("instruction"))
        )

    async def everywhere() -> bool:
        return all(all_shown(terminal) for terminal in followers)

    await eventually(everywhere)
    for terminal in followers:
        in_order(check, terminal)
        raised, got = line.raised[terminal.watching], set(terminal.sequences("signal"))
        check.expect(
            got == raised,
            f"terminal at {terminal.watching}: missed signals {sorted(raised - got)[:10]}, "
            f"unexpected {sorted(got - raised)[:10]}",
        )
        if terminal.watching == line.pacemaker:
            shown = set(terminal.about("instruction"))
            check.expect(
                shown == instructions,
                f"pacemaker terminal: missed instructions {sorted(instructions - shown)[:10]}",
            )
    return check


async def check_watchers(line: Line, followers: list[Follower]) -> Check:
    """Waits for the ERP watchers to see every order made complete, then checks them all."""
    check = Check("every order change reached each ERP watcher once, in order; alerts in order")
    completed = {
        f"{job.order_id} ORDER_STATE_COMPLETED" for job in line.jobs if job.state == "completed"
    }
    erp = [f for f in followers if f.watching == "orders"]

    async def seen() -> bool:
        return all(completed <= set(f.about("update")) for f in erp)

    await eventually(seen)
    for watcher in followers:
        if watcher.watching == "orders":
            in_order(check, watcher, contiguous=True)
            missing = completed - set(watcher.about("update"))
            check.expect(
                not missing, f"an orders watcher did not see {sorted(missing)[:5]} complete"
            )
        else:
            in_order(check, watcher)
    return check


async def check_cards(line: Line, admin: Any) -> Check:
    check = Check("every card is in the state its answers said")
    for loop_id in sorted({card.loop_id for card in line.cards}):
        found = await admin.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id=loop_id))
        for card in found.cards:
            believed = line.cards_by_code[card.card_code].state
            check.expect(
                card.state == believed,
                f"{card.card_code}: {pb.CardState.Name(card.state)}, "
                f"answers said {pb.CardState.Name(believed)}",
            )
    return check


async def stock_levels(stock: Any, site_id: str) -> dict[str, dict[str, int]]:
    """Location -> lot -> on hand, every page."""
    levels: defaultdict[str, dict[str, int]] = defaultdict(dict)
    token = ""
    while True:
        reply = await stock.GetStockLevels(
            stock_pb2.GetStockLevelsRequest(site_id=site_id, page_size=1000, page_token=token),
            timeout=CALL_TIMEOUT,
        )
        for level in reply.levels:
            levels[level.location_id][level.lot_id] = level.on_hand
        if not (token := reply.next_page_token):
            return levels


async def expected_stock(line: Line, admin: Any) -> dict[str, dict[str, int]]:
    """What stock must hold: each supermarket what its FULL cards say, lot by lot; the
    bought material what was received and not issued; finished goods what was made."""
    expected: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for loop_id in sorted({card.loop_id for card in line.cards}):
        found = await admin.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id=loop_id))
        for card in found.cards:
            if card.state == pb.CARD_STATE_FULL:
                held = expected[found.loop.supermarket_location_id]
                held[card.lot_id] = held.get(card.lot_id, 0) + card.quantity
    expected[RAW_LOCATION] = {lot: units for lot, units in line.raw.items() if units}
    expected[FG_LOCATION] = dict(line.made)
    return expected


async def check_stock(line: Line, admin: Any) -> Check:
    """Waits for the events to reach stock, then compares location by location."""
    check = Check("stock equals the cards lot by lot; bought and made stock as moved")
    expected = await expected_stock(line, admin)
    held: dict[str, dict[str, int]] = {}

    async def converged() -> bool:
        nonlocal held
        held = await stock_levels(line.stock, line.site_id)
        return all(held.get(location, {}) == lots for location, lots in expected.items())

    await eventually(converged)
    for location, lots in sorted(expected.items()):
        check.expect(
            held.get(location, {}) == lots,
            f"{location}: stock holds {held.get(location)}, expected {lots}",
        )
    return check


async def check_orders(line: Line) -> Check:
    check = Check("every order made is COMPLETED in orders, with its quantity made")
    completed = [job for job in line.jobs if job.state == "completed"]
    orders: dict[str, Any] = {}

    async def converged() -> bool:
        for job in completed:
            reply = await line.orders.GetOrder(
                orders_pb2.GetOrderRequest(site_id=line.site_id, erp_order_id=job.order_id)
            )
            orders[job.order_id] = reply.order
        return all(o.state == orders_pb2.ORDER_STATE_COMPLETED for o in orders.values())

    await eventually(converged)
    for order in orders.values():
        check.expect(
            order.state == orders_pb2.ORDER_STATE_COMPLETED
            and order.made_quantity == PRODUCT_CONTAINER,
            f"{order.erp_order_id}: {orders_pb2.OrderState.Name(order.state)} "
            f"made {order.made_quantity}",
        )
    return check
