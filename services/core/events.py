"""The facts services tell each other, as plain dataclasses.

Each mirrors a payload of `kanban.events.v1.Event` field for field; the outbox
stores them, the relay sends them, receivers get them back as these classes.
"""

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ItemDefined:
    """An item exists, counted in this unit; stock keeps its own copy."""

    item_id: str
    unit_of_measure: str


@dataclass(frozen=True)
class LoopDefined:
    loop_id: str
    item_id: str
    location_id: str
    cap_units: int
    opening_lot_id: str
    opening_units: int
    # For the alerts service, which follows every card (empty for older events).
    supplier_station_id: str = ""
    consumer_station_id: str = ""
    container_quantity: int = 0
    card_codes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoopResized:
    """A planner changed the number of cards of a loop; cap_units is the cap now."""

    loop_id: str
    item_id: str
    location_id: str
    cap_units: int
    card_count: int
    target_card_count: int
    added_card_codes: list[str] = field(default_factory=list)
    retired_card_codes: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass(frozen=True)
class CardRetired:
    """The consumer emptied a card of a loop being made smaller: it left the loop
    instead of raising a signal. cap_units is the cap now."""

    loop_id: str
    card_code: str
    item_id: str
    location_id: str
    cap_units: int


@dataclass(frozen=True)
class CardEmptied:
    loop_id: str
    card_code: str
    item_id: str
    location_id: str
    lot_id: str
    quantity: int
    consumer_station_id: str
    # The lot was scrapped or returned in stock: the card goes back to its supplier
    # for a replacement, and stock has already moved the parts out.
    written_off: bool = False


@dataclass(frozen=True)
class CardStarted:
    """The supplier started making the container a card asks for."""

    loop_id: str
    card_code: str
    supplier_station_id: str


@dataclass(frozen=True)
class CardFilled:
    loop_id: str
    card_code: str
    item_id: str
    location_id: str
    lot_id: str
    quantity: int
    supplier_station_id: str
    # When the supplier started the container: lots consumed at its station from
    # then on (and the lot in use then) went into this lot.
    started_at: datetime | None = None


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
    started_at: datetime | None = None


@dataclass(frozen=True)
class OverproductionBlocked:
    """A station tried to make what no card or instruction asked for, and was refused."""

    station_id: str
    # The card, or the order instruction, the attempt named.
    card_code: str
    instruction_id: str
    quantity: int
    detail: str


@dataclass(frozen=True)
class LotQuarantined:
    """Quality froze a lot: it may not be consumed, issued or moved out of quarantine."""

    lot_id: str
    item_id: str
    reason: str
    disposition_id: str


@dataclass(frozen=True)
class LotReleased:
    """The lot is usable again (released as is, or reworked)."""

    lot_id: str
    item_id: str


@dataclass(frozen=True)
class LotWrittenOff:
    """A quarantined lot was scrapped or returned to its supplier: it is gone."""

    lot_id: str
    item_id: str
    # "SCRAP" or "RETURN_TO_SUPPLIER".
    outcome: str


@dataclass(frozen=True)
class CountVarianceFlagged:
    """A cycle count found more difference than its tolerance; it waits for approval."""

    count_id: str
    location_id: str
    item_id: str
    lot_id: str
    book_quantity: int
    counted_quantity: int
    tolerance_percent: float


@dataclass(frozen=True)
class CountClosed:
    """A cycle count is booked (within tolerance, or its variances approved)."""

    count_id: str
    location_id: str


@dataclass(frozen=True)
class StockThresholdCrossed:
    """On-hand of an item (at a location, or at the whole site when location_id is
    empty) crossed its safety stock or overstock line, or came back between them."""

    item_id: str
    location_id: str
    # "BELOW_SAFETY_STOCK", "ABOVE_OVERSTOCK" or "NORMAL".
    state: str
    on_hand: int
    safety_stock: int
    overstock: int


Payload = (
    ItemDefined
    | LoopDefined
    | LoopResized
    | CardRetired
    | CardEmptied
    | CardStarted
    | CardFilled
    | OverproductionBlocked
    | OrderReleased
    | OrderReduced
    | InstructionCompleted
    | LotQuarantined
    | LotReleased
    | LotWrittenOff
    | CountVarianceFlagged
    | CountClosed
    | StockThresholdCrossed
)

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.__name__: cls
    for cls in (
        ItemDefined,
        LoopDefined,
        LoopResized,
        CardRetired,
        CardEmptied,
        CardStarted,
        CardFilled,
        OverproductionBlocked,
        OrderReleased,
        OrderReduced,
        InstructionCompleted,
        LotQuarantined,
        LotReleased,
        LotWrittenOff,
        CountVarianceFlagged,
        CountClosed,
        StockThresholdCrossed,
    )
}
