"""Production beyond what was pulled is refused, counted, and changes nothing."""

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from prometheus_client import REGISTRY

from tests.conftest import cards_by_lot, refused


def blocked(site_id: str, loop_id: str = "P", station_id: str = "STAMP") -> float:
    value = REGISTRY.get_sample_value(
        "kanban_overproduction_blocked_total",
        {"site_id": site_id, "station_id": station_id, "loop_id": loop_id},
    )
    return value or 0.0


async def test_completing_a_card_that_was_never_started_is_refused(stack, line):
    before = await line.cards("P")

    refusal = await refused_complete(line, "P-001", 500)

    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.reason == "OVERPRODUCTION_BLOCKED"
    assert refusal.metadata["card_state"] == "FULL"
    assert await line.cards("P") == before
    assert blocked(line.site_id) == 1


async def test_completing_an_emptied_but_unstarted_card_is_refused(stack, line):
    await line.scan("WELD", "P-001")

    refusal = await refused_complete(line, "P-001", 500)

    assert refusal.reason == "OVERPRODUCTION_BLOCKED"
    assert refusal.metadata["card_state"] == "EMPTY"
    assert (await line.cards("P"))[0].state == pb.CARD_STATE_EMPTY


async def test_more_than_the_container_quantity_is_refused_and_nothing_enters_stock(stack, line):
    await line.scan("WELD", "P-001")
    await line.start("STAMP")

    refusal = await refused_complete(line, "P-001", 501)

    assert refusal.reason == "OVERPRODUCTION_BLOCKED"
    assert refusal.metadata["container_quantity"] == "500"
    assert (await line.cards("P"))[0].state == pb.CARD_STATE_IN_PROCESS
    assert blocked(line.site_id) == 1
    # The card can still be completed within its container.
    await line.complete("STAMP", "P-001", "LOT-OK", 500)
    assert cards_by_lot(await line.cards("P"))["LOT-OK"] == 500


async def test_completing_twice_is_refused_the_second_time(stack, line):
    await line.scan("WELD", "P-001")
    await line.start("STAMP")
    await line.complete("STAMP", "P-001", "LOT-1", 500)

    refusal = await refused_complete(line, "P-001", 500, lot="LOT-2")

    assert refusal.reason == "OVERPRODUCTION_BLOCKED"
    assert cards_by_lot(await line.cards("P")) == {"P-OPENING": 1000, "LOT-1": 500}


async def refused_complete(line, card: str, quantity: int, lot: str = "LOT-X"):
    return await refused(line.complete("STAMP", card, lot, quantity))
