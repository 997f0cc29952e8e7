"""The facts services tell each other, as plain dataclasses.

Each mirrors a payload of `kanban.events.v1.Event` field for field; the outbox
stores them, the relay sends them, receivers get them back as these classes.
"""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LoopDefined:
    loop_id: str
    item_id: str
    location_id: str
    cap_units: int
    opening_lot_id: str
    opening_units: int


@dataclass(frozen=True)
class CardEmptied:
    loop_id: str
    card_code: str
    item_id: str
    location_id: str
    lot_id: str
    quantity: int
    consumer_station_id: str


@dataclass(frozen=True)
class CardFilled:
    loop_id: str
    card_code: str
    item_id: str
    location_id: str
    lot_id: str
    quantity: int
    supplier_station_id: str


@dataclass(frozen=True)
class ReleasedInstruction:
    instruction_id: str
    quantity: int


@dataclass(frozen=True)
class OrderReleased:
    erp_order_id: str
    item_id: str
    pacemaker_station_id: str
    location_id: str
    due_time: datetime
    priority: int
    instructions: list[ReleasedInstruction]
    order_quantity: int


@dataclass(frozen=True)
class OrderReduced:
    erp_order_id: str
    quantity: int


@dataclass(frozen=True)
class InstructionCompleted:
    erp_order_id: str
    instruction_id: str
    item_id: str
    location_id: str
    lot_id: str
    quantity: int
    station_id: str


Payload = (
    LoopDefined | CardEmptied | CardFilled | OrderReleased | OrderReduced | InstructionCompleted
)

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.__name__: cls
    for cls in (
        LoopDefined,
        CardEmptied,
        CardFilled,
        OrderReleased,
        OrderReduced,
        InstructionCompleted,
    )
}
