"""Stock rules as plain Python: what may enter and leave a location, what a lot's
quality status allows, how counts reconcile and when a threshold is crossed."""

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.core.errors import FailedPrecondition
from services.core.events import (
    CardEmptied,
    CardFilled,
    InstructionCompleted,
    LoopDefined,
    Payload,
)

ABOVE_CAP = "ABOVE_CAP"
INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
LOT_QUARANTINED = "LOT_QUARANTINED"
LOT_NOT_QUARANTINED = "LOT_NOT_QUARANTINED"
LOT_ITEM_MISMATCH = "LOT_ITEM_MISMATCH"
LOT_WRITTEN_OFF = "LOT_WRITTEN_OFF"
DISPOSITION_CLOSED = "DISPOSITION_CLOSED"
INVALID_COUNT_STATE = "INVALID_COUNT_STATE"
COUNT_INCOMPLETE = "COUNT_INCOMPLETE"
KANBAN_LOCATION = "KANBAN_LOCATION"

# Kanban moves have no person behind them: the stations service reported them.
STATIONS_ACTOR = "stations"


class LocationKind(enum.Enum):
    WAREHOUSE_BIN = "WAREHOUSE_BIN"
    SUPERMARKET = "SUPERMARKET"
    LINE_SIDE = "LINE_SIDE"
    QUARANTINE = "QUARANTINE"


class MovementKind(enum.Enum):
    RECEIPT = "RECEIPT"
    ISSUE = "ISSUE"
    TRANSFER = "TRANSFER"
    RETURN_TO_SUPPLIER = "RETURN_TO_SUPPLIER"
    SCRAP = "SCRAP"
    ADJUSTMENT = "ADJUSTMENT"


class LotStatus(enum.Enum):
    AVAILABLE = "AVAILABLE"
    QUARANTINED = "QUARANTINED"
    CONSUMED = "CONSUMED"
    SCRAPPED = "SCRAPPED"
    RETURNED = "RETURNED"


class ReceiptSource(enum.Enum):
    SUPPLIER = "SUPPLIER"
    PRODUCTION = "PRODUCTION"


class Outcome(enum.Enum):
    RELEASE = "RELEASE"
    REWORK = "REWORK"
    SCRAP = "SCRAP"
    RETURN_TO_SUPPLIER = "RETURN_TO_SUPPLIER"


class CountState(enum.Enum):
    OPEN = "OPEN"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    CLOSED = "CLOSED"


class ThresholdState(enum.Enum):
    NORMAL = "NORMAL"
    BELOW_SAFETY_STOCK = "BELOW_SAFETY_STOCK"
    ABOVE_OVERSTOCK = "ABOVE_OVERSTOCK"


@dataclass(frozen=True)
class Warehouse:
    site_id: str
    warehouse_id: str
    name: str


@dataclass(frozen=True)
class Location:
    site_id: str
    location_id: str
    warehouse_id: str
    kind: LocationKind


def require_manual_movement(location: Location) -> None:
    """A supermarket's stock moves with its kanban cards (a scan issues, a completion
    receives); moving it by hand would make the cards and the stock disagree."""
    if location.kind is LocationKind.SUPERMARKET:
        raise FailedPrecondition(
            KANBAN_LOCATION,
            f"{location.location_id} is a kanban supermarket: its stock moves when cards are "
            "scanned and completed (or written off by a quality disposition)",
            {"location_id": location.location_id},
        )


@dataclass(frozen=True)
class Item:
    site_id: str
    item_id: str
    unit_of_measure: str


@dataclass(frozen=True)
class Entry:
    """One line of the ledger: what one movement did to one location."""

    site_id: str
    kind: MovementKind
    location_id: str
    item_id: str
    lot_id: str
    # Signed: receipts add, issues take away.
    quantity: int
    actor: str
    reason: str
    # The supplier, station, order, card or count the movement concerns.
    reference: str
    request_id: str
    occurred_at: datetime
    # Assigned by the ledger when written.
    movement_id: int = 0


@dataclass(frozen=True)
class Lot:
    site_id: str
    lot_id: str
    item_id: str
    status: LotStatus
    source: ReceiptSource
    origin_id: str
    hold_reason: str
    disposition_id: str
    created_at: datetime

    def require_item(self, item_id: str) -> None:
        if item_id != self.item_id:
            raise FailedPrecondition(
                LOT_ITEM_MISMATCH,
                f"lot {self.lot_id} is of item {self.item_id}, not {item_id}",
                {"lot_id": self.lot_id, "lot_item_id": self.item_id},
            )

    def require_can_leave(self, kind: MovementKind, to: Location | None = None) -> None:
        """A quarantined lot may not be issued, consumed or moved, except into quarantine;
        its disposition scraps or returns it."""
        if self.status is not LotStatus.QUARANTINED:
            return
        if to is not None and to.kind is LocationKind.QUARANTINE:
            return
        if kind is MovementKind.ADJUSTMENT:
            return
        raise FailedPrecondition(
            LOT_QUARANTINED,
            f"lot {self.lot_id} is quarantined ({self.hold_reason}): it may only move into a "
            f"quarantine location until quality closes disposition {self.disposition_id}",
            {
                "lot_id": self.lot_id,
                "hold_reason": self.hold_reason,
                "disposition_id": self.disposition_id,
            },
        )

    def require_can_receive(self) -> None:
        if self.status in (LotStatus.SCRAPPED, LotStatus.RETURNED):
            raise FailedPrecondition(
                LOT_WRITTEN_OFF,
                f"lot {self.lot_id} was {self.status.value.lower()}; receive under a new lot id",
                {"lot_id": self.lot_id, "lot_status": self.status.value},
            )

    def after_movement(self, on_hand: int) -> "Lot":
        """Available while any is left; consumed once none is. Holds and write-offs stay."""
        if self.status in (LotStatus.AVAILABLE, LotStatus.CONSUMED):
            status = LotStatus.AVAILABLE if on_hand > 0 else LotStatus.CONSUMED
            return replace(self, status=status)
        return self

    def quarantine(self, reason: str, disposition_id: str) -> "Lot":
        if self.status is LotStatus.QUARANTINED:
            raise FailedPrecondition(
                LOT_QUARANTINED,
                f"lot {self.lot_id} is already quarantined under {self.disposition_id}",
                {"lot_id": self.lot_id, "disposition_id": self.disposition_id},
            )
        if self.status in (LotStatus.SCRAPPED, LotStatus.RETURNED):
            raise FailedPrecondition(
                LOT_WRITTEN_OFF,
                f"lot {self.lot_id} was {self.status.value.lower()}: nothing left to hold",
                {"lot_id": self.lot_id, "lot_status": self.status.value},
            )
        return replace(
            self, status=LotStatus.QUARANTINED, hold_reason=reason, disposition_id=disposition_id
        )

    def settle(self, outcome: Outcome, on_hand: int) -> "Lot":
        """The lot after its disposition closes with this outcome."""
        status = {
            Outcome.SCRAP: LotStatus.SCRAPPED,
            Outcome.RETURN_TO_SUPPLIER: LotStatus.RETURNED,
        }.get(outcome, LotStatus.AVAILABLE if on_hand > 0 else LotStatus.CONSUMED)
        return replace(self, status=status, hold_reason="", disposition_id="")


@dataclass(frozen=True)
class Disposition:
    site_id: str
    disposition_id: str
    lot_id: str
    item_id: str
    reason: str
    outcome: Outcome | None
    quarantined_quantity: int
    consumed_before_hold: int
    opened_by: str
    closed_by: str
    closing_comment: str
    opened_at: datetime
    closed_at: datetime | None

    def close(self, outcome: Outcome, actor: str, comment: str, now: datetime) -> "Disposition":
        if self.outcome is not None:
            raise FailedPrecondition(
                DISPOSITION_CLOSED,
                f"disposition {self.disposition_id} was already closed with {self.outcome.value}",
                {"disposition_id": self.disposition_id, "outcome": self.outcome.value},
            )
        return replace(
            self, outcome=outcome, closed_by=actor, closing_comment=comment, closed_at=now
        )


def require_lot_quarantined(lot: Lot) -> None:
    if lot.status is not LotStatus.QUARANTINED:
        raise FailedPrecondition(
            LOT_NOT_QUARANTINED,
            f"lot {lot.lot_id} is {lot.status.value}, not QUARANTINED",
            {"lot_id": lot.lot_id, "lot_status": lot.status.value},
        )


def check_take(lot_id: str, location_id: str, on_hand: int, quantity: int) -> None:
    """Stock never goes negative."""
    if quantity > on_hand:
        raise FailedPrecondition(
            INSUFFICIENT_STOCK,
            f"{quantity} of lot {lot_id} wanted at {location_id}, only {on_hand} available",
            {"available": str(on_hand), "lot_id": lot_id, "location_id": location_id},
        )


def check_cap(location_id: str, held: int, cap_units: int | None, quantity: int) -> None:
    """The second guard against over-production: a supermarket never holds more than its cap."""
    if cap_units is not None and held + quantity > cap_units:
        raise FailedPrecondition(
            ABOVE_CAP,
            f"receiving {quantity} at {location_id} would bring {held} up to "
            f"{held + quantity}, above the cap of {cap_units}",
            {"cap_units": str(cap_units), "on_hand": str(held), "location_id": location_id},
        )


# Kanban moves reported by the stations service


@dataclass(frozen=True)
class KanbanMove:
    """A movement the stations service reported, with what genealogy learns from it."""

    entry: Entry
    # The station that consumed (issue) or produced (receipt) the lot, if any.
    station_id: str
    started_at: datetime | None = None


def kanban_moves(site_id: str, payload: Payload, occurred_at: datetime) -> list[KanbanMove]:
    """The stock movements an event from the stations service stands for."""

    def entry(kind: MovementKind, location: str, item: str, lot: str, qty: int, ref: str) -> Entry:
        signed = qty if kind is MovementKind.RECEIPT else -qty
        return Entry(
            site_id, kind, location, item, lot, signed, STATIONS_ACTOR, "", ref, "", occurred_at
        )

    match payload:
        case LoopDefined() if payload.opening_units:
            opening = entry(
                MovementKind.RECEIPT,
                payload.location_id,
                payload.item_id,
                payload.opening_lot_id,
                payload.opening_units,
                f"loop {payload.loop_id} opening stock",
            )
            return [KanbanMove(opening, "")]
        case CardFilled():
            filled = entry(
                MovementKind.RECEIPT,
                payload.location_id,
                payload.item_id,
                payload.lot_id,
                payload.quantity,
                f"card {payload.card_code}",
            )
            return [KanbanMove(filled, payload.supplier_station_id, payload.started_at)]
        case CardEmptied() if not payload.written_off:
            emptied = entry(
                MovementKind.ISSUE,
                payload.location_id,
                payload.item_id,
                payload.lot_id,
                payload.quantity,
                f"card {payload.card_code}",
            )
            return [KanbanMove(emptied, payload.consumer_station_id)]
        case InstructionCompleted():
            made = entry(
                MovementKind.RECEIPT,
                payload.location_id,
                payload.item_id,
                payload.lot_id,
                payload.quantity,
                f"order {payload.erp_order_id} instruction {payload.instruction_id}",
            )
            return [KanbanMove(made, payload.station_id, payload.started_at)]
    return []


# Cycle counts


@dataclass(frozen=True)
class CountLine:
    item_id: str
    lot_id: str
    counted_quantity: int | None
    book_quantity: int | None

    @property
    def variance(self) -> int:
        return (self.counted_quantity or 0) - (self.book_quantity or 0)

    def within(self, tolerance_percent: float) -> bool:
        return abs(self.variance) <= (self.book_quantity or 0) * tolerance_percent / 100


@dataclass(frozen=True)
class Count:
    site_id: str
    count_id: str
    location_id: str
    state: CountState
    tolerance_percent: float
    lines: list[CountLine]
    opened_by: str
    opened_at: datetime
    closed_at: datetime | None

    def require_state(self, expected: CountState, action: str) -> None:
        if self.state is not expected:
            raise FailedPrecondition(
                INVALID_COUNT_STATE,
                f"cannot {action} count {self.count_id}: it is {self.state.value}, "
                f"not {expected.value}",
                {"count_id": self.count_id, "count_state": self.state.value},
            )

    def require_all_counted(self) -> None:
        missing = [
            f"{line.item_id}/{line.lot_id}" for line in self.lines if line.counted_quantity is None
        ]
        if missing:
            raise FailedPrecondition(
                COUNT_INCOMPLETE,
                f"count {self.count_id} has lines not yet counted: {', '.join(missing[:10])}",
                {"count_id": self.count_id, "uncounted_lines": str(len(missing))},
            )

    def reconciled(self, books: dict[tuple[str, str], int], now: datetime) -> "Count":
        """Each line against the books; closed at once if every variance is within tolerance."""
        lines = [
            replace(line, book_quantity=books.get((line.item_id, line.lot_id), 0))
            for line in self.lines
        ]
        fits = all(line.within(self.tolerance_percent) for line in lines)
        return replace(
            self,
            lines=lines,
            state=CountState.CLOSED if fits else CountState.AWAITING_APPROVAL,
            closed_at=now if fits else None,
        )

    @property
    def accuracy(self) -> float:
        """Inventory record accuracy: the share of lines whose count matched the books
        within the count's tolerance."""
        if not self.lines:
            return 1.0
        return sum(line.within(self.tolerance_percent) for line in self.lines) / len(self.lines)


# Thresholds


def threshold_state(on_hand: int, safety_stock: int, overstock: int) -> ThresholdState:
    if safety_stock and on_hand < safety_stock:
        return ThresholdState.BELOW_SAFETY_STOCK
    if overstock and on_hand > overstock:
        return ThresholdState.ABOVE_OVERSTOCK
    return ThresholdState.NORMAL


@dataclass(frozen=True)
class Threshold:
    site_id: str
    item_id: str
    location_id: str
    safety_stock: int
    overstock: int
    state: ThresholdState


# Turnover


@dataclass(frozen=True)
class Turnover:
    item_id: str
    unit_of_measure: str
    on_hand: int
    issued: int
    average_on_hand: float
    turnover: float
    annual_turnover: float
    days_of_supply: float | None


def turnover(
    item: Item,
    opening: int,
    changes: list[tuple[datetime, int]],
    issued: int,
    start: datetime,
    end: datetime,
) -> Turnover:
    """Turnover over [start, end) from the on-hand at start and the ledger's changes since,
    in time order. The average on hand is weighted by how long each level lasted. An
    item younger than the window is measured from its first movement."""
    if opening == 0 and changes and changes[0][0] > start:
        start = changes[0][0]
    window = (end - start).total_seconds()
    level, since, area = opening, start, 0.0
    for at, delta in changes:
        area += level * (at - since).total_seconds()
        level, since = level + delta, at
    area += level * (end - since).total_seconds()
    average = area / window if window else float(level)
    rate = issued / average if average else 0.0
    days = window / timedelta(days=1).total_seconds()
    return Turnover(
        item_id=item.item_id,
        unit_of_measure=item.unit_of_measure,
        on_hand=level,
        issued=issued,
        average_on_hand=average,
        turnover=rate,
        annual_turnover=rate * 365 / days if days else 0.0,
        days_of_supply=days_of_supply(level, issued, days),
    )


def days_of_supply(on_hand: int, issued: int, days: float) -> float | None:
    """How long on-hand lasts at the rate `issued` was used over `days`; None without use."""
    daily_use = issued / days if days else 0.0
    return on_hand / daily_use if daily_use else None
