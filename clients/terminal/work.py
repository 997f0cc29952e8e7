"""What a station's terminal knows of its work, from the WatchSignals stream and
from what it did itself. Plain Python, no I/O.

The stream sends each station item (signal, instruction, withdrawal of either,
lot hold notice) with a sequence number; `cursor` is the highest one applied, and a
terminal that reconnects with it misses nothing and gets nothing twice.
"""

from collections.abc import Mapping
from typing import Any

from kanban.stations.v1 import stations_pb2 as pb

# Generated messages are untyped for mypy (see pyproject.toml); these names say
# which message a value is.
Signal = Any
Instruction = Any
LotHoldNotice = Any
WatchSignalsResponse = Any


class StationWork:
    def __init__(self) -> None:
        self.cursor = 0
        # Open signals by card: a card has at most one open signal, so a newer
        # one for the same card means the older was started elsewhere meanwhile.
        self._signals: dict[str, Signal] = {}
        # Open instructions by id; announced again when their order shrinks.
        self._instructions: dict[str, Instruction] = {}
        # Instructions this terminal started and has not completed.
        self._started: dict[str, Instruction] = {}
        # Holds in place, by lot.
        self._holds: dict[str, LotHoldNotice] = {}

    def apply(self, message: WatchSignalsResponse) -> bool:
        """Takes in one stream message; False if it changed nothing (a heartbeat)."""
        kind = message.WhichOneof("message")
        if kind in (None, "heartbeat"):
            # A heartbeat's last_sequence is not a cursor: it may count items
            # committed after the read the stream is about to send, so resuming
            # from it could skip them.
            return False
        item = getattr(message, kind)
        self.cursor = max(self.cursor, item.sequence)
        if kind == "signal":
            self._signals[item.card_code] = item
        elif kind == "instruction":
            self._instructions[item.instruction_id] = item
        elif kind == "withdrawal":
            self._instructions.pop(item.instruction_id, None)
        elif kind == "signal_withdrawal":
            # The card retired (its loop was made smaller): nothing to make for it.
            held = self._signals.get(item.card_code)
            if held is not None and held.sequence == item.signal_sequence:
                del self._signals[item.card_code]
        elif item.status == pb.LOT_HOLD_STATUS_HELD:
            self._holds[item.lot_id] = item
        else:
            # Released: use the containers again; written off: they are gone.
            self._holds.pop(item.lot_id, None)
        return True

    def queue(self) -> list[Signal | Instruction]:
        """Open work, most urgent first. The protos have no emergency flag, so:
        instructions first (customer orders with due times), earliest due, then
        highest priority, as StartInstruction picks; then signals oldest first,
        as StartSignal picks."""
        instructions = sorted(
            self._instructions.values(),
            key=lambda i: (i.due_time.seconds, i.due_time.nanos, -i.priority, i.sequence),
        )
        signals = sorted(self._signals.values(), key=lambda s: s.sequence)
        return [*instructions, *signals]

    def holds(self) -> list[LotHoldNotice]:
        return sorted(self._holds.values(), key=lambda h: h.sequence)

    def started_instructions(self) -> list[Instruction]:
        return list(self._started.values())

    def instruction(self, code: str) -> Instruction | None:
        """The open or started instruction with this id, if the terminal knows it."""
        return self._started.get(code) or self._instructions.get(code)

    def signal_started(self, card_code: str) -> None:
        self._signals.pop(card_code, None)

    def instruction_started(self, instruction: Instruction) -> None:
        self._instructions.pop(instruction.instruction_id, None)
        self._started[instruction.instruction_id] = instruction

    def instruction_completed(self, instruction_id: str) -> None:
        self._started.pop(instruction_id, None)

    def forget_started_elsewhere(self, card_states: Mapping[str, int], as_of: int) -> None:
        """Drops signals another terminal of the station started: the stream does
        not announce starts. `card_states` must have been read after the cursor
        was `as_of`, so only signals raised by then are judged: a card read before
        a newer signal of it would look started."""
        for card_code, signal in list(self._signals.items()):
            state = card_states.get(card_code, pb.CARD_STATE_EMPTY)
            if signal.sequence <= as_of and state != pb.CARD_STATE_EMPTY:
                del self._signals[card_code]
