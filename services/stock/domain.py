"""Stock rules as plain Python: what may enter and leave a location."""

import enum
from dataclasses import dataclass

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
