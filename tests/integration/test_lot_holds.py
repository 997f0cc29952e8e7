"""Quality holds from stock at the stations: a container of a held lot is refused,
its consumer station is told, and a written-off one goes back to its supplier."""

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from kanban.events.v1 import events_pb2, events_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from prometheus_client import REGISTRY

from services.core import event_codec
from services.core.events import LotQuarantined, LotReleased, LotWrittenOff, Payload
from tests.conftest import Line, Refusal, new_id, refused
from tests.integration.test_instructions import complete as complete_instruction
from tests.integration.test_instructions import release
from tests.integration.test_instructions import start as start_instruction
from tests.integration.test_watch_signals import Terminal

LOT = "P-OPENING"  # what the line's loop P starts FULL with
REASON = "burrs on the edge"


def from_stock(site_id: str, payload: Payload) -> events_pb2.Event:
    return event_codec.to_proto(str(uuid.uuid4()), site_id, "stock", datetime.now(UTC), payload)


def held(site_id: str, lot: str = LOT) -> events_pb2.Event:
    return from_stock(site_id, LotQuarantined(lot, "PART", REASON, "D-1"))


def released(site_id: str, lot: str = LOT) -> events_pb2.Event:
    return from_stock(site_id, LotReleased(lot, "PART"))


def written_off(site_id: str, lot: str = LOT) -> events_pb2.Event:
    return from_stock(site_id, LotWrittenOff(lot, "PART", "SCRAP"))


async def deliver(stack, *events: events_pb2.Event) -> events_pb2.DeliverEventsResponse:
    sink = events_pb2_grpc.EventSinkServiceStub(stack.channels[0])
    return await sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=list(events)))


async def next_notice(terminal: Terminal, timeout: float = 30) -> pb.LotHoldNotice:
    # One deadline for the lot: heartbeats keep coming while no notice does.
    async with asyncio.timeout(timeout):
        while True:
            message = await terminal.messages.get()
            if message.HasField("lot_hold_notice"):
                return message.lot_hold_notice


def notices_so_far(terminal: Terminal) -> list[pb.LotHoldNotice]:
    found = []
    while not terminal.messages.empty():
        message = terminal.messages.get_nowait()
        if message.HasField("lot_hold_notice"):
            found.append(message.lot_hold_notice)
    return found


async def board(line: Line) -> pb.GetBoardResponse:
    return await line.stub.GetBoard(pb.GetBoardRequest(site_id=line.site_id))


async def loop_status(line: Line, loop_id: str) -> pb.LoopStatus:
    return next(s for s in (await board(line)).loops if s.loop.loop_id == loop_id)


async def open_signals(line: Line, station_id: str) -> int:
    return next(
        (s.open_signals for s in (await board(line)).stations if s.station_id == station_id), 0
    )


async def sent_to_stock(database_url: str, site_id: str, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the events stations enqueued for stock, oldest first."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT payload FROM stations.outbox
               WHERE site_id = $1 AND event_type = $2 AND destination = 'stock' ORDER BY id""",
            site_id,
            event_type,
        )
    finally:
        await conn.close()
    return [json.loads(r["payload"]) for r in rows]


def refusals(site_id: str, station_id: str) -> float:
    labels = {"site_id": site_id, "station_id": station_id, "reason": "LOT_QUARANTINED"}
    return REGISTRY.get_sample_value("kanban_scans_refused_total", labels) or 0.0


async def test_a_container_of_a_held_lot_is_refused_and_nothing_changes(stack, line, database_url):
    await deliver(stack, held(line.site_id))

    refusal = await refused(line.scan("WELD", "P-001"))

    assert (refusal.code, refusal.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "LOT_QUARANTINED",
    )
    assert refusal.metadata == {"card_code": "P-001", "lot_id": LOT, "hold_reason": REASON}
    assert refusal.message == (
        f"lot {LOT} in card P-001 is quarantined: set this container aside, do not use it"
    )
    assert refusals(line.site_id, "WELD") == 1
    cards = await line.cards("P")
    assert [(c.state, c.lot_id, c.lot_quarantined) for c in cards] == [
        (pb.CARD_STATE_FULL, LOT, True)
    ] * 3
    status = await loop_status(line, "P")
    assert (status.full_cards, status.quarantined_cards) == (3, 3)
    assert await open_signals(line, "STAMP") == 0
    assert await sent_to_stock(database_url, line.site_id, "CardEmptied") == []

    # Other lots are not held.
    assert (await line.scan("ASSY", "W-001")).card.state == pb.CARD_STATE_EMPTY
    assert not any(c.lot_quarantined for c in await line.cards("W"))


async def test_a_released_lot_can_be_used_again(stack, line):
    await deliver(stack, held(line.site_id))
    await refused(line.scan("WELD", "P-001", request_id="scan-while-held"))

    await deliver(stack, released(line.site_id))

    card = await line.stub.GetCard(pb.GetCardRequest(site_id=line.site_id, card_code="P-001"))
    assert not card.card.lot_quarantined
    # The refused request changed nothing, so its retry is a first attempt.
    scanned = await line.scan("WELD", "P-001", request_id="scan-while-held")
    assert (scanned.card.state, scanned.signal.station_id) == (pb.CARD_STATE_EMPTY, "STAMP")
    assert (await loop_status(line, "P")).quarantined_cards == 0


async def test_a_written_off_lot_empties_its_cards_and_their_supplier_makes_new_ones(
    stack, line, database_url
):
    await line.scan("WELD", "P-001")  # consumed before the hold: that stands
    stamping = Terminal(stack.stations, line.site_id, "STAMP")
    welding = Terminal(stack.stations, line.site_id, "WELD")
    try:
        await deliver(stack, held(line.site_id))
        assert (await next_notice(welding)).card_codes == ["P-002", "P-003"]

        await deliver(stack, written_off(line.site_id))

        assert [(c.state, c.lot_quarantined) for c in await line.cards("P")] == [
            (pb.CARD_STATE_EMPTY, False)
        ] * 3
        signals = [await stamping.next_signal() for _ in range(3)]
        assert [(s.card_code, s.sequence) for s in signals] == [
            ("P-001", 1),
            ("P-002", 2),
            ("P-003", 3),
        ]
        notice = await next_notice(welding)
        assert (notice.status, notice.card_codes) == (
            pb.LOT_HOLD_STATUS_WRITTEN_OFF,
            ["P-002", "P-003"],
        )
    finally:
        stamping.disconnect()
        welding.disconnect()
    emptied = await sent_to_stock(database_url, line.site_id, "CardEmptied")
    assert [(e["card_code"], e["consumer_station_id"], e["written_off"]) for e in emptied] == [
        ("P-001", "WELD", False),
        ("P-002", "", True),
        ("P-003", "", True),
    ]
    assert all((e["lot_id"], e["quantity"]) == (LOT, 500) for e in emptied)

    # The supplier replaces a written-off container like any consumed one.
    await line.start("STAMP", "P-002")
    filled = await line.complete("STAMP", "P-002", "LOT-NEW", 500)
    assert (filled.card.state, filled.card.lot_quarantined) == (pb.CARD_STATE_FULL, False)
    assert (await line.scan("WELD", "P-002")).card.state == pb.CARD_STATE_EMPTY


async def test_redelivered_lot_events_change_nothing_more(stack, line, database_url):
    hold = held(line.site_id)
    assert (await deliver(stack, hold, hold)).duplicate_count == 1
    # Held again under a new event id: still one hold, told once.
    assert (await deliver(stack, held(line.site_id))).applied_count == 1
    welding = Terminal(stack.stations, line.site_id, "WELD")
    try:
        first = await next_notice(welding)
        await welding.next_heartbeat()
        assert notices_so_far(welding) == []
    finally:
        welding.disconnect()

    write_off = written_off(line.site_id)
    first_reply = await deliver(stack, write_off)
    again = await deliver(stack, write_off, written_off(line.site_id))

    assert (first_reply.applied_count, again.duplicate_count, again.applied_count) == (1, 1, 1)
    assert await open_signals(line, "STAMP") == 3
    emptied = await sent_to_stock(database_url, line.site_id, "CardEmptied")
    assert sorted(e["card_code"] for e in emptied) == ["P-001", "P-002", "P-003"]
    lifted = Terminal(stack.stations, line.site_id, "WELD", after=first.sequence)
    try:
        assert (await next_notice(lifted)).status == pb.LOT_HOLD_STATUS_WRITTEN_OFF
        await lifted.next_heartbeat()
        assert notices_so_far(lifted) == []
    finally:
        lifted.disconnect()


async def test_the_consumer_station_is_told_of_a_hold_and_of_its_release(stack, line):
    welding = Terminal(stack.stations, line.site_id, "WELD")
    assembly = Terminal(stack.stations, line.site_id, "ASSY")
    try:
        await deliver(stack, held(line.site_id))
        notice = await next_notice(welding)
        assert (notice.lot_id, notice.item_id, notice.reason, notice.status) == (
            LOT,
            "PART",
            REASON,
            pb.LOT_HOLD_STATUS_HELD,
        )
        assert (notice.card_codes, notice.sequence) == (["P-001", "P-002", "P-003"], 1)
        # Assembly consumes no container of the lot.
        await assembly.next_heartbeat()
        assert notices_so_far(assembly) == []
    finally:
        welding.disconnect()
        assembly.disconnect()

    # While the hold is in place, a terminal starting afresh gets it; one past it does not.
    fresh = Terminal(stack.stations, line.site_id, "WELD")
    past = Terminal(stack.stations, line.site_id, "WELD", after=notice.sequence)
    try:
        assert await next_notice(fresh) == notice
        heartbeat = await past.next_heartbeat()
        assert (heartbeat.last_sequence, notices_so_far(past)) == (notice.sequence, [])
    finally:
        fresh.disconnect()
        past.disconnect()

    await deliver(stack, released(line.site_id))

    # A terminal that saw the hold learns of the release when it reconnects...
    back = Terminal(stack.stations, line.site_id, "WELD", after=notice.sequence)
    # ...while one that never saw the hold hears of neither.
    newcomer = Terminal(stack.stations, line.site_id, "WELD")
    try:
        release_notice = await next_notice(back)
        assert (release_notice.status, release_notice.sequence) == (
            pb.LOT_HOLD_STATUS_RELEASED,
            notice.sequence + 1,
        )
        assert release_notice.card_codes == ["P-001", "P-002", "P-003"]
        await newcomer.next_heartbeat()
        assert notices_so_far(newcomer) == []
    finally:
        back.disconnect()
        newcomer.disconnect()


async def test_scans_racing_a_hold_either_went_first_or_are_refused(stack, line, database_url):
    """Terminals scan the containers of a lot while quality's hold arrives: each
    scan committed before the hold (its card was not held) or was refused."""
    cards = 40
    await line.create_loop("Q", "PART", "STAMP", "WELD", cards, 10)
    codes = [f"Q-{n:03d}" for n in range(1, cards + 1)]
    scanned: list[str] = []
    refused_codes: list[str] = []
    some_scanned = asyncio.Event()

    async def terminal_scanning(code: str) -> None:
        await asyncio.sleep(random.uniform(0, 0.2))
        try:
            await line.scan("WELD", code)
        except grpc.aio.AioRpcError as error:
            assert Refusal(error).reason == "LOT_QUARANTINED", error
            refused_codes.append(code)
        else:
            scanned.append(code)
            if len(scanned) >= 5:
                some_scanned.set()

    async def quality_holding() -> None:
        await some_scanned.wait()
        await deliver(stack, held(line.site_id, "Q-OPENING"))

    await asyncio.gather(quality_holding(), *(terminal_scanning(code) for code in codes))

    # What the hold found FULL is exactly what was not scanned before it. On a
    # slow machine every scan may win the race: then it found nothing to hold.
    held_codes: list[str] = []
    if set(codes) - set(scanned):
        welding = Terminal(stack.stations, line.site_id, "WELD")
        try:
            held_codes = list((await next_notice(welding)).card_codes)
        finally:
            welding.disconnect()
    assert sorted(held_codes) == sorted(set(codes) - set(scanned))
    assert set(refused_codes) <= set(held_codes)
    states = {c.card_code: c.state for c in await line.cards("Q")}
    assert {code for code, state in states.items() if state == pb.CARD_STATE_EMPTY} == set(scanned)
    # One signal and one event per scan that went through, none for the others.
    assert await open_signals(line, "STAMP") == len(scanned)
    emptied = await sent_to_stock(database_url, line.site_id, "CardEmptied")
    assert sorted(e["card_code"] for e in emptied) == sorted(scanned)

    # From now on every scan of the lot is refused.
    for code in held_codes:
        assert (await refused(line.scan("WELD", code))).reason == "LOT_QUARANTINED"
    assert (await loop_status(line, "Q")).quarantined_cards == len(held_codes)


async def test_stock_learns_when_what_was_made_was_started(stack, line, database_url):
    """Lot genealogy: a container and a finished order container each carry when
    their station started them."""
    await line.scan("WELD", "P-001")
    before = datetime.now(UTC)
    await line.start("STAMP", "P-001")
    after = datetime.now(UTC)
    await line.complete("STAMP", "P-001", "LOT-1", 500)

    (filled,) = await sent_to_stock(database_url, line.site_id, "CardFilled")
    assert before <= datetime.fromisoformat(filled["started_at"]) <= after

    (instruction_id,) = await release(stack, line.site_id, new_id("ORD"), [10])
    before = datetime.now(UTC)
    await start_instruction(line, instruction_id)
    after = datetime.now(UTC)
    await complete_instruction(line, instruction_id, 10)

    (completed,) = await sent_to_stock(database_url, line.site_id, "InstructionCompleted")
    assert before <= datetime.fromisoformat(completed["started_at"]) <= after
