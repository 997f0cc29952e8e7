"""The line the stateful property test (test_invariants.py) drives, as the test
believes it to be: loops and cards, open signals, lots on hold, warehouse stock,
orders and instructions; what each request should answer; and the tally the run
reports. Plain Python: the test compares it with what the services say."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kanban.orders.v1 import orders_pb2
from kanban.stations.v1 import stations_pb2 as pb

from tests.conftest import Refusal

OK = "OK"
CONTAINER = 10
PRODUCT_CONTAINER = 10
PRODUCT = "CHASSIS"
RAW = "RAW"
BINS = ("BIN-A", "BIN-B")
QUARANTINE_AREA = "QA"


def refusal(reason: str) -> str:
    return f"FAILED_PRECONDITION {reason}"


def outcome(answer: Any) -> str:
    """What a call came to, as the model predicts it: OK, or the status code and what
    a program acts on (the ErrorInfo reason, or the field at fault)."""
    if not isinstance(answer, Refusal):
        return OK
    detail = answer.reason or ",".join(answer.fields)
    return f"{answer.code.name} {detail}".strip()


def audit_result(result: str) -> str:
    """An audit log result as far as the test can predict it: a FAILED_PRECONDITION
    with its reason, anything else by its status code alone."""
    return result if result.startswith(("OK", "FAILED_PRECONDITION")) else result.split()[0]


@dataclass
class CardModel:
    code: str
    loop_id: str
    state: int
    lot: str = ""
    quantity: int = 0
    # Signals raised for this card so far: one per time it was emptied or added.
    signals: int = 0


@dataclass
class LoopModel:
    loop_id: str
    item_id: str
    supplier: str
    consumer: str
    location: str
    container_quantity: int
    # What the last resize asked for; the loop shrinks to it as cards come back.
    target: int
    # Cards the loop ever had, retired ones too: new codes follow theirs.
    numbered: int

    def code(self, number: int) -> str:
        return f"{self.loop_id}-{number:03d}"


@dataclass
class OrderModel:
    erp_order_id: str
    quantity: int
    state: int = orders_pb2.ORDER_STATE_OPEN
    made: int = 0

    @property
    def closed(self) -> bool:
        return self.state in (orders_pb2.ORDER_STATE_COMPLETED, orders_pb2.ORDER_STATE_CANCELLED)


@dataclass
class CountModel:
    count_id: str
    location: str
    tolerance_percent: float
    state: str = "OPEN"
    # (lot) -> counted quantity, None until counted. RAW only.
    lines: dict[str, int | None] = field(default_factory=dict)
    # What ApproveCount will post, per lot: fixed when the count was reconciled.
    variances: dict[str, int] = field(default_factory=dict)


class LineModel:
    """One example's site. Changes only from answers the services gave, after the
    test compared them with what this model predicted."""

    def __init__(self) -> None:
        self.loops: dict[str, LoopModel] = {}
        self.cards: dict[str, CardModel] = {}
        # Per supplier station: card code -> sequence of its OPEN signal.
        self.open_signals: dict[str, dict[str, int]] = {"STAMP": {}, "WELD": {}}
        # Lots on hold, as stations knows them (the test waits for the hold to arrive).
        self.held: set[str] = set()
        # Lots scrapped: nothing may be received into them any more.
        self.written_off: set[str] = set()
        # Lots quarantined in stock, and the disposition that holds each.
        self.dispositions: dict[str, str] = {}
        self.raw: Counter[tuple[str, str]] = Counter()
        self.raw_lots: set[str] = set()
        self.counts: dict[str, CountModel] = {}
        self.orders: dict[str, OrderModel] = {}
        self.serial = 0

    def new_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    # Loops and cards

    def add_loop(self, loop: LoopModel, cards: int) -> None:
        self.loops[loop.loop_id] = loop
        for number in range(1, cards + 1):
            code = loop.code(number)
            self.cards[code] = CardModel(
                code, loop.loop_id, pb.CARD_STATE_FULL, f"{loop.loop_id}-OPENING", CONTAINER
            )

    def cards_of(self, loop_id: str) -> list[CardModel]:
        return [c for c in self.cards.values() if c.loop_id == loop_id]

    def card_count(self, loop_id: str) -> int:
        """Cards in the loop: retired ones do not count."""
        return sum(c.state != pb.CARD_STATE_RETIRED for c in self.cards_of(loop_id))

    def to_retire(self, loop_id: str) -> int:
        return self.card_count(loop_id) - self.loops[loop_id].target

    def waiting(self, loop_id: str) -> list[CardModel]:
        """EMPTY cards whose signal no one started, newest signal first: those a
        smaller loop retires at once."""
        supplier = self.loops[loop_id].supplier
        found = [c for c in self.cards_of(loop_id) if c.code in self.open_signals[supplier]]
        return sorted(found, key=lambda c: -self.open_signals[supplier][c.code])

    def expect_scan(self, code: str, station: str) -> str:
        card = self.cards[code]
        if station != self.loops[card.loop_id].consumer:
            return refusal("WRONG_STATION")
        if card.state != pb.CARD_STATE_FULL:
            return refusal("INVALID_CARD_STATE")
        if card.lot in self.held:
            return refusal("LOT_QUARANTINED")
        return OK

    def scanned(self, reply: Any) -> None:
        """A scan emptied the card: it asked its supplier again, or retired."""
        card = self.cards[reply.card.card_code]
        loop = self.loops[card.loop_id]
        card.lot, card.quantity = "", 0
        if reply.HasField("signal"):
            card.state = pb.CARD_STATE_EMPTY
            card.signals += 1
            self.open_signals[loop.supplier][card.code] = reply.signal.sequence
        else:
            card.state = pb.CARD_STATE_RETIRED

    def expect_start(self, station: str, code: str) -> tuple[str, str]:
        """The outcome and the card a StartSignal should start: the named one, or the
        one behind the station's oldest open signal."""
        if not code:
            waiting = self.open_signals[station]
            if not waiting:
                return refusal("NO_OPEN_SIGNAL"), ""
            return OK, min(waiting, key=waiting.__getitem__)
        card = self.cards[code]
        if station != self.loops[card.loop_id].supplier:
            return refusal("WRONG_STATION"), code
        if card.state != pb.CARD_STATE_EMPTY:
            return refusal("INVALID_CARD_STATE"), code
        return OK, code

    def started(self, reply: Any) -> None:
        card = self.cards[reply.card.card_code]
        card.state = pb.CARD_STATE_IN_PROCESS
        del self.open_signals[self.loops[card.loop_id].supplier][card.code]

    def expect_complete(self, code: str, station: str, quantity: int) -> str:
        card = self.cards[code]
        loop = self.loops[card.loop_id]
        if station != loop.supplier:
            return refusal("WRONG_STATION")
        if card.state != pb.CARD_STATE_IN_PROCESS or quantity > loop.container_quantity:
            return refusal("OVERPRODUCTION_BLOCKED")
        return OK

    def completed(self, reply: Any) -> None:
        card = self.cards[reply.card.card_code]
        card.state, card.lot, card.quantity = (
            pb.CARD_STATE_FULL,
            reply.card.lot_id,
            reply.card.quantity,
        )

    def expect_resize(self, loop_id: str, count: int) -> tuple[list[str], list[str]]:
        """The codes of the cards a resize adds and of those it retires at once."""
        loop = self.loops[loop_id]
        present = self.card_count(loop_id)
        if count >= present:
            return [
                loop.code(n) for n in range(loop.numbered + 1, loop.numbered + 1 + count - present)
            ], []
        return [], [c.code for c in self.waiting(loop_id)[: present - count]]

    def resized(self, loop_id: str, count: int, reply: Any) -> None:
        loop = self.loops[loop_id]
        loop.target = count
        for card in reply.retired_cards:
            self.retire_waiting(card.card_code)
        sequences = {s.card_code: s.sequence for s in reply.signals}
        for added in reply.added_cards:
            loop.numbered += 1
            self.cards[added.card_code] = CardModel(
                added.card_code, loop_id, pb.CARD_STATE_EMPTY, signals=1
            )
            self.open_signals[loop.supplier][added.card_code] = sequences[added.card_code]

    def retire_waiting(self, code: str) -> None:
        card = self.cards[code]
        card.state = pb.CARD_STATE_RETIRED
        del self.open_signals[self.loops[card.loop_id].supplier][code]

    def full_cards_of_lot(self, lot: str) -> list[CardModel]:
        return [c for c in self.cards.values() if c.state == pb.CARD_STATE_FULL and c.lot == lot]

    # Warehouse stock (item RAW in the bins and the quarantine area)

    def expect_take(self, lot: str, location: str, quantity: int, into_quarantine: bool) -> str:
        if lot in self.dispositions and not into_quarantine:
            return refusal("LOT_QUARANTINED")
        if quantity > self.raw[(location, lot)]:
            return refusal("INSUFFICIENT_STOCK")
        return OK

    def expect_receipt(self, lot: str) -> str:
        return refusal("LOT_WRITTEN_OFF") if lot in self.written_off else OK

    def expect_quarantine(self, lot: str) -> str:
        if lot in self.dispositions:
            return refusal("LOT_QUARANTINED")
        if lot in self.written_off:
            return refusal("LOT_WRITTEN_OFF")
        return OK

    def expect_release(self, lot: str) -> str:
        return OK if lot in self.dispositions else refusal("LOT_NOT_QUARANTINED")

    # Orders

    def expect_release_order(self, order: OrderModel) -> str:
        return refusal("ORDER_CLOSED") if order.closed else OK

    def expect_change_order(self, order: OrderModel, quantity: int) -> str:
        if order.closed:
            return refusal("ORDER_CLOSED")
        if quantity < order.made:
            return refusal("QUANTITY_BELOW_MADE")
        return OK

    def order_made(self, erp_order_id: str, quantity: int) -> None:
        """The pacemaker completed an instruction: it counts whatever the order's state."""
        order = self.orders[erp_order_id]
        order.made += quantity
        if not order.closed and order.made >= order.quantity:
            order.state = orders_pb2.ORDER_STATE_COMPLETED


@dataclass
class Tally:
    """What the run did, summed over every example."""

    examples: int = 0
    steps: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    # Of those, the ones answered OK (the rest were refused).
    accepted: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    resizes: int = 0

    def line(self, seed: int, database: str, violations: int) -> str:
        def listed(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        by_rpc = ", ".join(f"{rpc} {self.accepted[rpc]}/{n}" for rpc, n in sorted(self.ops.items()))
        return (
            f"examples={self.examples} steps={self.steps} ops={sum(self.ops.values())} "
            f"(by rpc, OK/sent: {by_rpc}); refusals by reason: {listed(self.refusals)}; "
            f"faults injected: {listed(self.faults)}; "
            f"invariant checks={sum(self.checks.values())} ({listed(self.checks)}); "
            f"loop resizes={self.resizes}; violations={violations}; seed={seed} database={database}"
        )
