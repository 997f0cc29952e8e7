"""Kanban loops and cards: the rules, as plain Python with no I/O.

A card goes FULL -> EMPTY (the consumer took the container; a signal is queued
at the supplier) -> IN_PROCESS (the supplier started it) -> FULL (the supplier
completed it with a lot). Because a loop has a fixed number of cards and a
container never holds more than the container quantity, units in the supermarket
plus units in process never exceed the loop's cap.

A container whose lot quality has on hold may not be consumed; if the lot is
written off (scrapped or returned), the container is gone and its card empties.

A planner may resize a loop. New cards start EMPTY and ask their supplier at
once. Fewer cards: EMPTY cards no one started retire at once, then the next cards
to come back empty retire instead of asking again. The cap is always the cards
in the loop times the container quantity, so a full container or one being made
is never thrown away, and the cap is never below what the loop holds.
"""

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.core.errors import FailedPrecondition
from services.core.events import (
    CardEmptied,
    CardFilled,
    CardRetired,
    InstructionCompleted,
    LoopDefined,
    LoopResized,
    ReleasedInstruction,
)

OVERPRODUCTION_BLOCKED = "OVERPRODUCTION_BLOCKED"
WRONG_STATION = "WRONG_STATION"
INVALID_CARD_STATE = "INVALID_CARD_STATE"
NO_OPEN_SIGNAL = "NO_OPEN_SIGNAL"
INSTRUCTION_WITHDRAWN = "INSTRUCTION_WITHDRAWN"
INVALID_INSTRUCTION_STATE = "INVALID_INSTRUCTION_STATE"
NO_OPEN_INSTRUCTION = "NO_OPEN_INSTRUCTION"
LOT_QUARANTINED = "LOT_QUARANTINED"

MAX_CARDS_PER_LOOP = 999


class CardState(enum.Enum):
    FULL = "FULL"
    EMPTY = "EMPTY"
    IN_PROCESS = "IN_PROCESS"
    RETIRED = "RETIRED"


class InstructionState(enum.Enum):
    OPEN = "OPEN"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    WITHDRAWN = "WITHDRAWN"


class SignalState(enum.Enum):
    OPEN = "OPEN"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    WITHDRAWN = "WITHDRAWN"


class LotHoldStatus(enum.Enum):
    HELD = "HELD"
    RELEASED = "RELEASED"
    WRITTEN_OFF = "WRITTEN_OFF"


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
    # Cards in the loop, retired ones not counted.
    card_count: int
    # Cards to retire as they come back empty: the loop was made smaller.
    cards_to_retire: int = 0

    @property
    def cap_units(self) -> int:
        return self.card_count * self.container_quantity

    @property
    def target_card_count(self) -> int:
        return self.card_count - self.cards_to_retire

    def resize(self, target: int, waiting: list["Card"], numbered: int, now: datetime) -> "Resize":
        """Plans a resize to `target` cards. `waiting` are the loop's EMPTY cards whose
        signal no one started, the one to retire first first; `numbered` is how many
        cards the loop ever had: new codes follow theirs."""
        if target >= self.card_count:
            added = [
                Card(
                    site_id=self.site_id,
                    card_code=self.card_code(n),
                    loop_id=self.loop_id,
                    state=CardState.EMPTY,
                    lot_id="",
                    quantity=0,
                    updated_at=now,
                    emptied_at=now,
                )
                for n in range(numbered + 1, numbered + 1 + target - self.card_count)
            ]
            resized = dataclasses.replace(self, card_count=target, cards_to_retire=0)
            return Resize(resized, added, [])
        excess = self.card_count - target
        retired = waiting[:excess]
        for card in retired:
            card.retire(now)
        resized = dataclasses.replace(
            self,
            card_count=self.card_count - len(retired),
            cards_to_retire=excess - len(retired),
        )
        return Resize(resized, [], retired)

    def take_back(self, card: "Card", now: datetime) -> tuple["Loop", CardRetired | None]:
        """A card just emptied. While the loop is being made smaller it retires
        instead of asking its supplier again."""
        if not self.cards_to_retire:
            return self, None
        card.retire(now)
        smaller = dataclasses.replace(
            self, card_count=self.card_count - 1, cards_to_retire=self.cards_to_retire - 1
        )
        return smaller, CardRetired(
            loop_id=self.loop_id,
            card_code=card.card_code,
            item_id=self.item_id,
            location_id=self.supermarket_location_id,
            cap_units=smaller.cap_units,
        )

    @property
    def opening_lot_id(self) -> str:
        """The lot of the containers a loop starts with when its cards start FULL."""
        return f"{self.loop_id}-OPENING"

    def defined(self, initial_state: "CardState") -> LoopDefined:
        """What stock and alerts learn of a new loop: its supermarket's cap, what is
        already in it, and its cards."""
        full = initial_state is CardState.FULL
        return LoopDefined(
            loop_id=self.loop_id,
            item_id=self.item_id,
            location_id=self.supermarket_location_id,
            cap_units=self.cap_units,
            opening_lot_id=self.opening_lot_id if full else "",
            opening_units=self.cap_units if full else 0,
            supplier_station_id=self.supplier_station_id,
            consumer_station_id=self.consumer_station_id,
            container_quantity=self.container_quantity,
            card_codes=self.card_codes(),
        )

    def card_codes(self) -> list[str]:
        return [self.card_code(n) for n in range(1, self.card_count + 1)]

    def card_code(self, number: int) -> str:
        return f"{self.loop_id}-{number:03d}"

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


@dataclass(frozen=True)
class LotHold:
    """Quality froze the lot (stock quarantined it): its containers may not be used."""

    site_id: str
    lot_id: str
    item_id: str
    reason: str
    disposition_id: str
    held_at: datetime


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
    # When the supplier last started it. This and `hold` default to None because
    # stored answers to requests made before they existed lack them.
    started_at: datetime | None = None
    # The hold on the lot in the container while FULL, if quality has one.
    hold: LotHold | None = None

    def scan(self, loop: Loop, station_id: str, now: datetime) -> CardEmptied:
        """The consumer takes the container out of the supermarket."""
        _require_station(station_id, loop.consumer_station_id, f"card {self.card_code}", "consumer")
        self._require_state(CardState.FULL, "scan")
        if self.hold is not None:
            raise FailedPrecondition(
                LOT_QUARANTINED,
                f"lot {self.lot_id} in card {self.card_code} is quarantined: "
                "set this container aside, do not use it",
                {
                    "card_code": self.card_code,
                    "lot_id": self.lot_id,
                    "hold_reason": self.hold.reason,
                },
            )
        return self._empty(loop, station_id, now)

    def write_off(self, loop: Loop, now: datetime) -> CardEmptied:
        """The lot in the container was scrapped or returned to its supplier: the
        container is gone, so the card empties and asks its supplier for another,
        as if it had been consumed. Stock already moved the parts out."""
        self._require_state(CardState.FULL, "write off")
        return self._empty(loop, "", now, written_off=True)

    def _empty(
        self, loop: Loop, consumer_station_id: str, now: datetime, written_off: bool = False
    ) -> CardEmptied:
        emptied = CardEmptied(
            loop_id=loop.loop_id,
            card_code=self.card_code,
            item_id=loop.item_id,
            location_id=loop.supermarket_location_id,
            lot_id=self.lot_id,
            quantity=self.quantity,
            consumer_station_id=consumer_station_id,
            written_off=written_off,
        )
        self.state, self.lot_id, self.quantity, self.hold = CardState.EMPTY, "", 0, None
        self.updated_at = self.emptied_at = now
        return emptied

    def retire(self, now: datetime) -> None:
        """The card leaves its loop, which is being made smaller; only an EMPTY card
        may, so no container is thrown away."""
        self._require_state(CardState.EMPTY, "retire")
        self.state = CardState.RETIRED
        self.updated_at = now

    def start(self, loop: Loop, station_id: str, now: datetime) -> None:
        """The supplier starts making the container this card asks for."""
        _require_station(station_id, loop.supplier_station_id, f"card {self.card_code}", "supplier")
        self._require_state(CardState.EMPTY, "start")
        self.state = CardState.IN_PROCESS
        self.updated_at = self.started_at = now

    def complete(
        self, loop: Loop, station_id: str, lot_id: str, quantity: int, now: datetime
    ) -> CardFilled:
        """The supplier puts the finished container into the supermarket."""
        _require_station(station_id, loop.supplier_station_id, f"card {self.card_code}", "supplier")
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
            started_at=self.started_at,
        )

    def _require_state(self, expected: CardState, action: str) -> None:
        if self.state is not expected:
            raise FailedPrecondition(
                INVALID_CARD_STATE,
                f"cannot {action} card {self.card_code}: it is {self.state.value}, "
                f"not {expected.value}",
                {"card_state": self.state.value, "card_code": self.card_code},
            )


def _require_station(station_id: str, expected: str, what: str, role: str) -> None:
    if station_id != expected:
        raise FailedPrecondition(
            WRONG_STATION,
            f"{what} belongs to {role} station {expected}, not {station_id}",
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
    def raise_for(cls, loop: Loop, card: Card, now: datetime) -> "Signal":
        """The signal, not yet numbered: its station's sequence is taken as it is stored."""
        return cls(
            site_id=loop.site_id,
            station_id=loop.supplier_station_id,
            sequence=0,
            loop_id=loop.loop_id,
            card_code=card.card_code,
            item_id=loop.item_id,
            quantity=loop.container_quantity,
            state=SignalState.OPEN,
            raised_at=now,
        )


@dataclass(frozen=True)
class Resize:
    """A resize: the loop after it, the cards added (EMPTY) and those retired now."""

    loop: Loop
    added: list[Card]
    retired: list[Card]

    def resized(self, reason: str) -> LoopResized:
        return LoopResized(
            loop_id=self.loop.loop_id,
            item_id=self.loop.item_id,
            location_id=self.loop.supermarket_location_id,
            cap_units=self.loop.cap_units,
            card_count=self.loop.card_count,
            target_card_count=self.loop.target_card_count,
            added_card_codes=[c.card_code for c in self.added],
            retired_card_codes=[c.card_code for c in self.retired],
            reason=reason,
        )


def no_open_signal(station_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        NO_OPEN_SIGNAL,
        f"station {station_id} has no open signal: nothing to make, do not produce",
        {"station_id": station_id},
    )


@dataclass
class Instruction:
    """An order's instruction to the pacemaker: make one container of finished goods.

    OPEN -> STARTED -> COMPLETED, or OPEN -> WITHDRAWN when its order shrinks.
    A row lock serialises these, so no instruction is both withdrawn and made.
    """

    site_id: str
    instruction_id: str
    erp_order_id: str
    station_id: str
    item_id: str
    location_id: str
    quantity: int
    due_time: datetime
    priority: int
    state: InstructionState
    sequence: int
    lot_id: str
    made_quantity: int
    # When the pacemaker started it; None before, and for stored answers to
    # requests made before this was recorded.
    started_at: datetime | None = None

    def start(self, station_id: str, now: datetime) -> None:
        _require_station(station_id, self.station_id, self._name, "pacemaker")
        if self.state is InstructionState.WITHDRAWN:
            raise FailedPrecondition(
                INSTRUCTION_WITHDRAWN,
                f"{self._name} was withdrawn: its order no longer needs it; do not produce",
                {"instruction_id": self.instruction_id, "erp_order_id": self.erp_order_id},
            )
        if self.state is not InstructionState.OPEN:
            raise FailedPrecondition(
                INVALID_INSTRUCTION_STATE,
                f"cannot start {self._name}: it is {self.state.value}, not OPEN",
                {"instruction_state": self.state.value, "instruction_id": self.instruction_id},
            )
        self.state, self.started_at = InstructionState.STARTED, now

    def complete(self, station_id: str, lot_id: str, quantity: int) -> InstructionCompleted:
        _require_station(station_id, self.station_id, self._name, "pacemaker")
        if self.state is not InstructionState.STARTED:
            raise FailedPrecondition(
                OVERPRODUCTION_BLOCKED,
                f"{self._name} is {self.state.value}, not STARTED: "
                "no production without a started order instruction",
                {"instruction_state": self.state.value, "instruction_id": self.instruction_id},
            )
        if quantity > self.quantity:
            raise FailedPrecondition(
                OVERPRODUCTION_BLOCKED,
                f"{quantity} units exceed the {self.quantity} of {self._name}; "
                "the excess has no order",
                {
                    "quantity": str(quantity),
                    "instruction_quantity": str(self.quantity),
                    "instruction_id": self.instruction_id,
                },
            )
        self.state, self.lot_id, self.made_quantity = InstructionState.COMPLETED, lot_id, quantity
        return InstructionCompleted(
            erp_order_id=self.erp_order_id,
            instruction_id=self.instruction_id,
            item_id=self.item_id,
            location_id=self.location_id,
            lot_id=lot_id,
            quantity=quantity,
            station_id=station_id,
            started_at=self.started_at,
        )

    @property
    def planned(self) -> int:
        """What this instruction will add to its order: made if done, else its quantity."""
        return {
            InstructionState.OPEN: self.quantity,
            InstructionState.STARTED: self.quantity,
            InstructionState.COMPLETED: self.made_quantity,
            InstructionState.WITHDRAWN: 0,
        }[self.state]

    @property
    def _name(self) -> str:
        return f"instruction {self.instruction_id}"


def fit_release(
    instructions: list[Instruction], released: list[ReleasedInstruction], order_quantity: int
) -> list[tuple[str, int]]:
    """The released instructions (id, quantity) to queue so that the order's plan
    never exceeds its quantity: what is started or made always counts."""
    room = order_quantity - sum(i.planned for i in instructions)
    known = {i.instruction_id for i in instructions}
    queued = []
    for instruction in released:
        if room <= 0:
            break
        if instruction.instruction_id in known:
            continue
        quantity = min(instruction.quantity, room)
        queued.append((instruction.instruction_id, quantity))
        room -= quantity
    return queued


@dataclass(frozen=True)
class Withdrawal:
    """Tells a pacemaker's terminals to drop an instruction they were sent."""

    instruction: Instruction
    sequence: int
    # The sequence the instruction was first announced with: a terminal that saw
    # that one, and not those it was announced with again after a cut, has it too.
    first_sequence: int


@dataclass(frozen=True)
class SignalWithdrawal:
    """Tells a supplier's terminals to drop a signal they were sent: its card retired."""

    signal: Signal
    sequence: int


@dataclass(frozen=True)
class LotHoldNotice:
    """Tells a consumer station's terminals that containers in its supermarket hold
    a lot on hold, so they set them aside before anyone scans one; then, with a
    later sequence, that the hold was lifted: released, or written off (the cards
    are EMPTY and their suppliers were asked for new containers)."""

    site_id: str
    station_id: str
    # The sequence it is sent with: held_sequence while HELD, a later one once lifted.
    sequence: int
    lot_id: str
    item_id: str
    reason: str
    card_codes: list[str]
    status: LotHoldStatus
    held_sequence: int

    @classmethod
    def held(
        cls, hold: LotHold, station_id: str, card_codes: list[str], sequence: int
    ) -> "LotHoldNotice":
        return cls(
            site_id=hold.site_id,
            station_id=station_id,
            sequence=sequence,
            lot_id=hold.lot_id,
            item_id=hold.item_id,
            reason=hold.reason,
            card_codes=card_codes,
            status=LotHoldStatus.HELD,
            held_sequence=sequence,
        )

    def lifted(
        self, status: LotHoldStatus, card_codes: list[str], sequence: int
    ) -> "LotHoldNotice":
        return dataclasses.replace(self, status=status, card_codes=card_codes, sequence=sequence)


# What a station's terminals are sent, each numbered with the station's sequence.
FeedItem = Signal | Instruction | Withdrawal | SignalWithdrawal | LotHoldNotice


def cards_by_consumer(cards: list[Card], loops: Mapping[str, Loop]) -> dict[str, list[str]]:
    """The cards' codes per consumer station of their loops, stations in order: whom
    a hold on the lot in them concerns."""
    codes: dict[str, list[str]] = {}
    for card in sorted(cards, key=lambda c: c.card_code):
        codes.setdefault(loops[card.loop_id].consumer_station_id, []).append(card.card_code)
    return dict(sorted(codes.items()))


@dataclass(frozen=True)
class Reduction:
    withdraw: list[Instruction]
    # An open instruction to make smaller, and its new quantity.
    shrink: tuple[Instruction, int] | None


def plan_reduction(instructions: list[Instruction], quantity: int) -> Reduction:
    """Which open instructions an order that now wants `quantity` no longer needs.

    Started and completed ones always count. Open ones are withdrawn latest
    first while the rest still cover the quantity; the last may shrink instead.
    """
    excess = sum(i.planned for i in instructions) - quantity
    withdraw: list[Instruction] = []
    shrink = None
    for instruction in sorted(instructions, key=lambda i: i.instruction_id, reverse=True):
        if excess <= 0:
            break
        if instruction.state is not InstructionState.OPEN:
            continue
        if instruction.quantity <= excess:
            withdraw.append(instruction)
            excess -= instruction.quantity
        else:
            shrink = (instruction, instruction.quantity - excess)
            excess = 0
    return Reduction(withdraw, shrink)


def no_open_instruction(station_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        NO_OPEN_INSTRUCTION,
        f"station {station_id} has no open production instruction: no order, do not produce",
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
    # FULL cards (counted in full_cards too) whose lot is on hold: set aside.
    quarantined_cards: int

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
    open_instructions: int = 0


@dataclass(frozen=True)
class Board:
    loops: list[LoopStatus]
    stations: list[StationStatus]

    @classmethod
    def of(
        cls,
        loops: list[LoopStatus],
        open_signals: dict[str, int],
        open_instructions: dict[str, int] | None = None,
    ) -> "Board":
        """Adds up each station's loops (its output buffer and what it makes) and orders."""
        open_instructions = open_instructions or {}
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
        for station_id, count in open_instructions.items():
            before = stations.get(station_id, StationStatus(station_id, 0, 0, 0, 0))
            stations[station_id] = dataclasses.replace(before, open_instructions=count)
        return cls(loops=loops, stations=sorted(stations.values(), key=lambda s: s.station_id))
