"""Every event payload survives the trip through kanban.events.v1.Event."""

import uuid
from datetime import UTC, datetime

import pytest

from services.core import event_codec
from services.core.errors import InvalidArgument
from services.core.events import (
    PAYLOAD_TYPES,
    CardEmptied,
    CardFilled,
    CardRetired,
    CardStarted,
    CountClosed,
    CountVarianceFlagged,
    InstructionCompleted,
    ItemDefined,
    LoopDefined,
    LoopResized,
    LotQuarantined,
    LotReleased,
    LotWrittenOff,
    OrderReduced,
    OrderReleased,
    OverproductionBlocked,
    ReleasedInstruction,
    StockThresholdCrossed,
)

NOW = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)
PAYLOADS = [
    ItemDefined("PART", "kg"),
    LoopDefined("L", "PART", "SM", 1500, "L-OPENING", 1500),
    LoopDefined("L", "PART", "SM", 1500, "", 0, "STAMP", "WELD", 500, ["L-001", "L-002"]),
    LoopResized("L", "PART", "SM", 2500, 5, 5, ["L-004", "L-005"], [], "demand up"),
    LoopResized("L", "PART", "SM", 1000, 2, 1, [], ["L-005"]),
    CardRetired("L", "L-004", "PART", "SM", 500),
    CardStarted("L", "L-001", "STAMP"),
    OverproductionBlocked("STAMP", "L-001", "", 600, "600 units exceed 500"),
    CountClosed("C-1", "BIN-1"),
    CardEmptied("L", "L-001", "PART", "SM", "LOT-1", 500, "WELD"),
    CardEmptied("L", "L-002", "PART", "SM", "LOT-1", 500, "", written_off=True),
    CardFilled("L", "L-001", "PART", "SM", "LOT-2", 480, "STAMP"),
    CardFilled("L", "L-001", "PART", "SM", "LOT-2", 480, "STAMP", started_at=NOW),
    OrderReleased(
        "SO-1",
        "CHASSIS",
        "ASSY",
        "FG",
        NOW,
        7,
        [ReleasedInstruction("SO-1-0001", 10), ReleasedInstruction("SO-1-0002", 5)],
        15,
    ),
    OrderReduced("SO-1", 0),
    InstructionCompleted("SO-1", "SO-1-0001", "CHASSIS", "FG", "FG-LOT", 10, "ASSY", NOW),
    LotQuarantined("LOT-1", "PART", "burrs on the edge", "D-1"),
    LotReleased("LOT-1", "PART"),
    LotWrittenOff("LOT-1", "PART", "SCRAP"),
    CountVarianceFlagged("C-1", "BIN-1", "PART", "LOT-1", 100, 90, 2.5),
    StockThresholdCrossed("PART", "", "BELOW_SAFETY_STOCK", 90, 100, 1000),
]


def test_every_payload_type_is_covered():
    assert {type(p).__name__ for p in PAYLOADS} == set(PAYLOAD_TYPES)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_a_payload_round_trips(payload):
    event_id = str(uuid.uuid4())

    received = event_codec.from_proto(event_codec.to_proto(event_id, "S1", "x", NOW, payload))

    assert received.payload == payload
    assert (received.event_id, received.site_id, received.occurred_at) == (event_id, "S1", NOW)


def test_an_event_id_that_is_no_uuid_is_refused():
    message = event_codec.to_proto("not-a-uuid", "S1", "x", NOW, OrderReduced("SO", 1))
    with pytest.raises(InvalidArgument) as refused:
        event_codec.from_proto(message)
    assert refused.value.field == "events.event_id"
