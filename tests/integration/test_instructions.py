"""Orders' production instructions at the pacemaker, through stations' event sink."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from kanban.events.v1 import events_pb2, events_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb

from tests.conftest import eventually, new_id, refused, stock_by_lot
from tests.integration.test_watch_signals import Terminal

SOON = datetime.now(UTC) + timedelta(days=1)


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def event(site_id: str, **payload) -> events_pb2.Event:
    return events_pb2.Event(
        event_id=str(uuid.uuid4()),
        site_id=site_id,
        source="orders",
        occurred_at=stamp(datetime.now(UTC)),
        **payload,
    )


async def release(
    stack,
    site_id: str,
    order: str,
    quantities: list[int],
    *,
    due: datetime = SOON,
    priority: int = 0,
    first: int = 1,
    station: str = "ASSY",
    order_quantity: int | None = None,
) -> list[str]:
    ids = [f"{order}-{n:04d}" for n in range(first, first + len(quantities))]
    released = events_pb2.OrderReleased(
        erp_order_id=order,
        item_id="CHASSIS",
        pacemaker_station_id=station,
        location_id="FG",
        due_time=stamp(due),
        priority=priority,
        instructions=[
            events_pb2.ReleasedInstruction(instruction_id=i, quantity=q)
            for i, q in zip(ids, quantities, strict=True)
        ],
        order_quantity=sum(quantities) if order_quantity is None else order_quantity,
    )
    await sink(stack).DeliverEvents(
        events_pb2.DeliverEventsRequest(events=[event(site_id, order_released=released)])
    )
    return ids


async def reduce(stack, site_id: str, order: str, quantity: int) -> None:
    reduced = events_pb2.OrderReduced(erp_order_id=order, quantity=quantity)
    await sink(stack).DeliverEvents(
        events_pb2.DeliverEventsRequest(events=[event(site_id, order_reduced=reduced)])
    )


def sink(stack) -> events_pb2_grpc.EventSinkServiceStub:
    return events_pb2_grpc.EventSinkServiceStub(stack.channels[0])


async def start(line, instruction_id: str = "", station: str = "ASSY"):
    return await line.stub.StartInstruction(
        pb.StartInstructionRequest(
            request_id=new_id("r"),
            site_id=line.site_id,
            station_id=station,
            instruction_id=instruction_id,
        )
    )


async def complete(
    line,
    instruction_id: str,
    quantity: int,
    lot: str = "FG-LOT",
    station: str = "ASSY",
    request_id: str | None = None,
):
    return await line.stub.CompleteInstruction(
        pb.CompleteInstructionRequest(
            request_id=request_id or new_id("r"),
            site_id=line.site_id,
            station_id=station,
            instruction_id=instruction_id,
            lot_id=lot,
            quantity=quantity,
        )
    )


async def instruction_states(database_url: str, site_id: str) -> dict[str, tuple[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT instruction_id, state, quantity FROM stations.instructions
               WHERE site_id = $1 ORDER BY instruction_id""",
            site_id,
        )
    finally:
        await conn.close()
    return {r["instruction_id"]: (r["state"], r["quantity"]) for r in rows}


async def test_released_instructions_reach_the_pacemakers_terminal(stack, line):
    terminal = Terminal(stack.stations, line.site_id, "ASSY")
    try:
        ids = await release(stack, line.site_id, "ORD-1", [10, 10, 5])
        got = [await next_instruction(terminal) for _ in ids]
        assert [(i.instruction_id, i.quantity) for i in got] == list(
            zip(ids, [10, 10, 5], strict=True)
        )
        assert all(i.state == pb.INSTRUCTION_STATE_OPEN and i.erp_order_id == "ORD-1" for i in got)
        board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=line.site_id))
        assy = next(s for s in board.stations if s.station_id == "ASSY")
        assert assy.open_instructions == 3
    finally:
        terminal.disconnect()


async def next_instruction(terminal: Terminal, timeout: float = 30) -> pb.Instruction:
    while True:
        message = await asyncio.wait_for(terminal.messages.get(), timeout)
        if message.HasField("instruction"):
            return message.instruction


async def next_withdrawal(terminal: Terminal, timeout: float = 30) -> pb.Withdrawal:
    while True:
        message = await asyncio.wait_for(terminal.messages.get(), timeout)
        if message.HasField("withdrawal"):
            return message.withdrawal


async def test_the_most_urgent_instruction_starts_first(stack, line):
    await release(stack, line.site_id, "LATE", [1], due=SOON + timedelta(days=2))
    await release(stack, line.site_id, "LOW", [1], due=SOON, priority=1)
    await release(stack, line.site_id, "HIGH", [1], due=SOON, priority=9)

    order = [(await start(line)).instruction.erp_order_id for _ in range(3)]

    assert order == ["HIGH", "LOW", "LATE"]
    refusal = await refused(start(line))
    assert refusal.reason == "NO_OPEN_INSTRUCTION"


async def test_completing_makes_finished_goods_and_nothing_more(stack, line):
    (first, second) = await release(stack, line.site_id, "ORD-2", [10, 10])

    never_started = await refused(complete(line, first, 10))
    assert (never_started.reason, never_started.metadata["instruction_state"]) == (
        "OVERPRODUCTION_BLOCKED",
        "OPEN",
    )
    await start(line, first)
    too_many = await refused(complete(line, first, 11))
    assert too_many.reason == "OVERPRODUCTION_BLOCKED"
    done = await complete(line, first, 10, lot="FG-1", request_id="fg-once")
    assert await complete(line, first, 10, lot="FG-1", request_id="fg-once") == done
    assert (done.instruction.state, done.instruction.made_quantity) == (
        pb.INSTRUCTION_STATE_COMPLETED,
        10,
    )
    again = await refused(complete(line, first, 10, lot="FG-2"))
    assert again.reason == "OVERPRODUCTION_BLOCKED"

    held = await eventually(lambda: stock_by_lot(stack.stock, line.site_id, "FG"))
    assert held == {"FG-1": 10}
    wrong_station = await refused(start(line, second, station="WELD"))
    assert wrong_station.reason == "WRONG_STATION"


async def test_a_reduction_withdraws_open_instructions_latest_first(stack, line, database_url):
    terminal = Terminal(stack.stations, line.site_id, "ASSY")
    try:
        ids = await release(stack, line.site_id, "ORD-3", [100] * 8)  # 800
        for _ in ids:
            await next_instruction(terminal)
        await start(line, ids[0])

        await reduce(stack, line.site_id, "ORD-3", 650)

        # 100 started + 6 x 100 open = 700 >= 650: the 8th goes, the 7th shrinks to 50.
        withdrawn = await next_withdrawal(terminal)
        assert withdrawn.instruction_id == ids[7]
        shrunk = await next_instruction(terminal)
        assert (shrunk.instruction_id, shrunk.quantity) == (ids[6], 50)
        states = await instruction_states(database_url, line.site_id)
        assert states[ids[0]] == ("STARTED", 100)
        assert states[ids[7]] == ("WITHDRAWN", 100)
        assert sum(q for s, q in states.values() if s != "WITHDRAWN") == 650

        refusal = await refused(start(line, ids[7]))
        assert refusal.reason == "INSTRUCTION_WITHDRAWN"

        await reduce(stack, line.site_id, "ORD-3", 0)  # cancelled
        states = await instruction_states(database_url, line.site_id)
        assert {i for i, (s, _) in states.items() if s != "WITHDRAWN"} == {ids[0]}
        # The started one finishes and counts.
        assert (await complete(line, ids[0], 100)).instruction.made_quantity == 100
    finally:
        terminal.disconnect()


async def test_a_terminal_that_never_saw_an_instruction_gets_no_withdrawal(stack, line):
    ids = await release(stack, line.site_id, "ORD-4", [5, 5])
    await reduce(stack, line.site_id, "ORD-4", 5)

    terminal = Terminal(stack.stations, line.site_id, "ASSY")
    try:
        assert (await next_instruction(terminal)).instruction_id == ids[0]
        await terminal.next_heartbeat()
        assert all(not m.HasField("withdrawal") for m in drain(terminal))
    finally:
        terminal.disconnect()


def drain(terminal: Terminal) -> list[pb.WatchSignalsResponse]:
    found = []
    while not terminal.messages.empty():
        found.append(terminal.messages.get_nowait())
    return found


@pytest.mark.parametrize("wanted", [0, 15], ids=["cancel", "cut-to-15"])
async def test_a_cut_racing_terminals_never_withdraws_a_started_instruction(
    stack, line, database_url, wanted
):
    ids = await release(stack, line.site_id, "ORD-5", [1] * 30)
    started: list[str] = []
    some_started = asyncio.Event()

    async def terminal_starting() -> None:
        for _ in range(10):
            try:
                started.append((await start(line)).instruction.instruction_id)
                if len(started) >= 3:
                    some_started.set()
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    async def cancel_mid_way() -> None:
        await some_started.wait()
        await reduce(stack, line.site_id, "ORD-5", wanted)

    await asyncio.gather(*(terminal_starting() for _ in range(4)), cancel_mid_way())

    states = await instruction_states(database_url, line.site_id)
    withdrawn = {i for i, (s, _) in states.items() if s == "WITHDRAWN"}
    assert len(started) == len(set(started))
    assert {i for i, (s, _) in states.items() if s == "STARTED"} == set(started)
    assert not withdrawn & set(started)
    # What is still planned is what the order wants, or what was already under way.
    assert len(ids) - len(withdrawn) == max(wanted, len(started))
    assert 3 <= len(started) < 30, "the cut did not race the terminals"
    print(f"\nwanted {wanted}: {len(started)} started, {len(withdrawn)} withdrawn, none both")


async def test_an_order_for_an_unknown_pacemaker_is_acknowledged_and_queued_nowhere(
    stack, line, database_url
):
    await release(stack, line.site_id, "ORD-6", [1], station="NOWHERE")
    assert await instruction_states(database_url, line.site_id) == {}


async def test_bad_instruction_requests_name_the_field(stack, line):
    for call, field in (
        (start(line, "bad id"), "instruction_id"),
        (complete(line, "X-0001", 0), "quantity"),
        (complete(line, "X-0001", 1, lot=""), "lot_id"),
        (complete(line, "", 1), "instruction_id"),
    ):
        refusal = await refused(call)
        assert (refusal.code, refusal.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    unknown = await refused(complete(line, "X-0001", 1))
    assert unknown.code == grpc.StatusCode.NOT_FOUND


async def test_a_raise_after_a_cut_never_plans_more_than_the_order(stack, line, database_url):
    ids = await release(stack, line.site_id, "ORD-7", [100] * 8)  # 800
    for instruction_id in ids[:7]:
        await start(line, instruction_id)
    await reduce(stack, line.site_id, "ORD-7", 600)  # 700 already started: the 8th goes

    # Raised to 750: orders releases one more container, but 700 are under way.
    extra = await release(stack, line.site_id, "ORD-7", [100], first=9, order_quantity=750)

    states = await instruction_states(database_url, line.site_id)
    assert states[extra[0]] == ("OPEN", 50)
    assert sum(q for s, q in states.values() if s != "WITHDRAWN") == 750
