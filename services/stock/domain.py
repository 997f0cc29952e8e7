"""Stock rules as plain Python: what may enter and leave a location."""

import enum
from dataclasses import dataclass

from services.core.events import (
    CardEmptied,
    CardFilled,
    InstructionCompleted,
    LoopDefined,
    Payload,
)

ABOVE_CAP = "ABOVE_CAP"
INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"


class MovementKind(enum.Enum):
    RECEIPT = "RECEIPT"
    ISSUE = "ISSUE"


@dataclass(frozen=True)
class Movement:
    site_id: str
    kind: MovementKind
    location_id: str
    item_id: str
    lot_id: str
    # Always positive; the kind gives the direction.
    quantity: int
    # What caused it, e.g. the card code.
    reference: str

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.kind is MovementKind.RECEIPT else -self.quantity


def movements_caused_by(site_id: str, payload: Payload) -> list[Movement]:
    """The stock movements an event from another service stands for."""
    match payload:
        case LoopDefined() if payload.opening_units:
            return [
                Movement(
                    site_id,
                    MovementKind.RECEIPT,
                    payload.location_id,
                    payload.item_id,
                    payload.opening_lot_id,
                    payload.opening_units,
                    f"loop {payload.loop_id} opening stock",
                )
            ]
        case CardFilled():
            return [
                Movement(
                    site_id,
                    MovementKind.RECEIPT,
                    payload.location_id,
                    payload.item_id,
                    payload.lot_id,
                    payload.quantity,
                    f"card {payload.card_code}",
                )
            ]
        case CardEmptied():
            return [
                Movement(
                    site_id,
                    MovementKind.ISSUE,
                    payload.location_id,
                    payload.item_id,
                    payload.lot_id,
                    payload.quantity,
                    f"card {payload.card_code}",
                )
            ]
        case InstructionCompleted():
            return [
                Movement(
                    site_id,
                    MovementKind.RECEIPT,
                    payload.location_id,
                    payload.item_id,
                    payload.lot_id,
                    payload.quantity,
                    f"order {payload.erp_order_id} instruction {payload.instruction_id}",
                )
            ]
    return []


@dataclass(frozen=True)
class Refusal:
    reason: str
    detail: str


def check_receipt(on_hand_of_item: int, cap_units: int | None, quantity: int) -> Refusal | None:
    """The second guard against over-production: a supermarket never holds more than its cap."""
    if cap_units is not None and on_hand_of_item + quantity > cap_units:
        return Refusal(
            ABOVE_CAP,
            f"receiving {quantity} would bring {on_hand_of_item} up to "
            f"{on_hand_of_item + quantity}, above the cap of {cap_units}",
        )
    return None


def check_issue(on_hand_of_lot: int, quantity: int) -> Refusal | None:
    """Stock never goes negative."""
    if quantity > on_hand_of_lot:
        return Refusal(INSUFFICIENT_STOCK, f"issuing {quantity} but only {on_hand_of_lot} on hand")
    return None


@dataclass(frozen=True)
class StockLevel:
    site_id: str
    location_id: str
    item_id: str
    lot_id: str
    on_hand: int
