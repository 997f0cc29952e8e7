"""Kanban loops and cards: the rules, as plain Python with no I/O.

A card goes FULL -> EMPTY (the consumer took the container; a signal is queued
at the supplier) -> IN_PROCESS (the supplier started it) -> FULL (the supplier
completed it with a lot). Because a loop has a fixed number of cards and a
container never holds more than the container quantity, units in the supermarket
plus units in process never exceed the loop's cap.
"""

import enum
from dataclasses import dataclass
from datetime import datetime

from services.core.errors import FailedPrecondition
from services.core.events import CardEmptied, CardFilled, LoopDefined

OVERPRODUCTION_BLOCKED = "OVERPRODUCTION_BLOCKED"
WRONG_STATION = "WRONG_STATION"
INVALID_CARD_STATE = "INVALID_CARD_STATE"
NO_OPEN_SIGNAL = "NO_OPEN_SIGNAL"

MAX_CARDS_PER_LOOP = 999


class CardState(enum.Enum):
    FULL = "FULL"
    EMPTY = "EMPTY"
    IN_PROCESS = "IN_PROCESS"


class SignalState(enum.Enum):
    OPEN = "OPEN"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Site:
    site_id: str
    name: str


@dataclass(frozen=True)
class Station:
    site_id: str
    station_id: str
    name: str


@dataclass(frozen=True)
class Item:
    site_id: str
    item_id: str
    description: str
    unit_of_measure: str


@dataclass(frozen=True)
class Loop:
    site_id: str
    loop_id: str
    item_id: str
    supplier_station_id: str
    consumer_station_id: str
    supermarket_location_id: str
    container_quantity: int
    card_count: int

    @property
    def cap_units(self) -> int:
        return self.card_count * self.container_quantity

    @property
    def opening_lot_id(self) -> str:
        """The lot of the containers a loop starts with when its cards start FULL."""
        return f"{self.loop_id}-OPENING"

    def defined(self, initial_state: "CardState") -> LoopDefined:
        """What stock learns of a new loop: its supermarket's cap and what is already in it."""
        full = initial_state is CardState.FULL
        return LoopDefined(
            loop_id=self.loop_id,
            item_id=self.item_id,
            location_id=self.supermarket_location_id,
            cap_units=self.cap_units,
            opening_lot_id=self.opening_lot_id if full else "",
            opening_units=self.cap_units if full else 0,
        )

    def card_codes(self) -> list[str]:
        return [f"{self.loop_id}-{n:03d}" for n in range(1, self.card_count + 1)]

    def new_cards(self, state: CardState, now: datetime) -> list["Card"]:
        full = state is CardState.FULL
        return [
            Card(
                site_id=self.site_id,
                card_code=code,
                loop_id=self.loop_id,
                state=state,
                lot_id=self.opening_lot_id if full else "",
                quantity=self.container_quantity if full else 0,
                updated_at=now,
                emptied_at=None if full else now,
            )
            for code in self.card_codes()
        ]


@dataclass
class Card:
    site_id: str
    card_code: str
    loop_id: str
    state: CardState
    lot_id: str
    quantity: int
    updated_at: datetime
    # When the card last became EMPTY: the start of its replenishment lead time.
    emptied_at: datetime | None

    def scan(self, loop: Loop, station_id: str, now: datetime) -> CardEmptied:
        """The consumer takes the container out of the supermarket."""
        _require_station(station_id, loop.consumer_station_id, "consumer", self)
        self._require_state(CardState.FULL, "scan")
        emptied = CardEmptied(
            loop_id=loop.loop_id,
            card_code=self.card_code,
            item_id=loop.item_id,
            location_id=loop.supermarket_location_id,
            lot_id=self.lot_id,
            quantity=self.quantity,
            consumer_station_id=station_id,
        )
        self.state, self.lot_id, self.quantity = CardState.EMPTY, "", 0
        self.updated_at = self.emptied_at = now
        return emptied

    def start(self, loop: Loop, station_id: str, now: datetime) -> None:
        """The supplier starts making the container this card asks for."""
        _require_station(station_id, loop.supplier_station_id, "supplier", self)
        self._require_state(CardState.EMPTY, "start")
        self.state = CardState.IN_PROCESS
        self.updated_at = now

    def complete(
        self, loop: Loop, station_id: str, lot_id: str, quantity: int, now: datetime
    ) -> CardFilled:
        """The supplier puts the finished container into the supermarket."""
        _require_station(station_id, loop.supplier_station_id, "supplier", self)
        if self.state is not CardState.IN_PROCESS:
            raise FailedPrecondition(
                OVERPRODUCTION_BLOCKED,
                f"card {self.card_code} is {self.state.value}, not IN_PROCESS: "
                "only a started card may be completed; do not produce",
                {"card_state": self.state.value, "card_code": self.card_code},
            )
        if quantity > loop.container_quantity:
            raise FailedPrecondition(
                OVERPRODUCTION_BLOCKED,
                f"{quantity} units exceed the container quantity {loop.container_quantity} "
                f"of loop {loop.loop_id}; the excess may not enter stock",
                {
                    "container_quantity": str(loop.container_quantity),
                    "quantity": str(quantity),
                    "card_code": self.card_code,
                },
            )
        self.state, self.lot_id, self.quantity = CardState.FULL, lot_id, quantity
        self.updated_at = now
        return CardFilled(
            loop_id=loop.loop_id,
            card_code=self.card_code,
            item_id=loop.item_id,
            location_id=loop.supermarket_location_id,
            lot_id=lot_id,
            quantity=quantity,
            supplier_station_id=station_id,
        )

    def _require_state(self, expected: CardState, action: str) -> None:
        if self.state is not expected:
            raise FailedPrecondition(
                INVALID_CARD_STATE,
                f"cannot {action} card {self.card_code}: it is {self.state.value}, "
                f"not {expected.value}",
                {"card_state": self.state.value, "card_code": self.card_code},
            )


def _require_station(station_id: str, expected: str, role: str, card: Card) -> None:
    if station_id != expected:
        raise FailedPrecondition(
            WRONG_STATION,
            f"card {card.card_code} belongs to {role} station {expected}, not {station_id}",
            {"expected_station_id": expected, "station_id": station_id},
        )


@dataclass
class Signal:
    """A production authorization queued at the supplier station."""

    site_id: str
    station_id: str
    sequence: int
    loop_id: str
    card_code: str
    item_id: str
    quantity: int
    state: SignalState
    raised_at: datetime

    @classmethod
    def raise_for(cls, loop: Loop, card: Card, sequence: int, now: datetime) -> "Signal":
        return cls(
            site_id=loop.site_id,
            station_id=loop.supplier_station_id,
            sequence=sequence,
            loop_id=loop.loop_id,
            card_code=card.card_code,
            item_id=loop.item_id,
            quantity=loop.container_quantity,
            state=SignalState.OPEN,
            raised_at=now,
        )


def no_open_signal(station_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        NO_OPEN_SIGNAL,
        f"station {station_id} has no open signal: nothing to make, do not produce",
        {"station_id": station_id},
    )


@dataclass(frozen=True)
class LoopStatus:
    loop: Loop
    full_cards: int
    empty_cards: int
    in_process_cards: int
    units_in_supermarket: int
    units_in_process: int

    @property
    def wip_units(self) -> int:
        return self.units_in_supermarket + self.units_in_process


@dataclass(frozen=True)
class StationStatus:
    station_id: str
    open_signals: int
    in_process_cards: int
    wip_units: int
    cap_units: int


@dataclass(frozen=True)
class Board:
    loops: list[LoopStatus]
    stations: list[StationStatus]

    @classmethod
    def of(cls, loops: list[LoopStatus], open_signals: dict[str, int]) -> "Board":
        """Adds up each supplier station's loops: its output buffer and what it makes."""
        stations: dict[str, StationStatus] = {}
        for status in loops:
            station_id = status.loop.supplier_station_id
            before = stations.get(station_id, StationStatus(station_id, 0, 0, 0, 0))
            stations[station_id] = StationStatus(
                station_id=station_id,
                open_signals=open_signals.get(station_id, 0),
                in_process_cards=before.in_process_cards + status.in_process_cards,
                wip_units=before.wip_units + status.wip_units,
                cap_units=before.cap_units + status.loop.cap_units,
            )
        return cls(loops=loops, stations=sorted(stations.values(), key=lambda s: s.station_id))
