"""What a scanned code asks for, and what a refusal tells the operator. Plain
Python, no I/O."""

import uuid
from datetime import datetime
from enum import Enum

import grpc
from kanban.stations.v1 import stations_pb2 as pb


class Action(Enum):
    SCAN = "scan"
    START = "start"
    COMPLETE = "complete"
    START_INSTRUCTION = "start_instruction"
    COMPLETE_INSTRUCTION = "complete_instruction"


def for_card(station_id: str, card_state: int, supplier: str, consumer: str) -> Action | None:
    """What scanning a card of a loop means at this station; None if the station
    neither supplies nor consumes the loop.

    The service judges whether it is allowed: the consumer's scan of a card that
    is not FULL is still sent, and so is the supplier's scan of a FULL card (as a
    completion), so that the service refuses it as over-production, counts it and
    raises its alert, instead of the terminal hiding the attempt.
    """
    if station_id == consumer:
        return Action.SCAN
    if station_id == supplier:
        return Action.START if card_state == pb.CARD_STATE_EMPTY else Action.COMPLETE
    return None


def for_instruction(state: int) -> Action:
    """At the pacemaker, the instruction id printed on the order's work ticket is
    scanned to start it, and again to complete it."""
    if state == pb.INSTRUCTION_STATE_STARTED:
        return Action.COMPLETE_INSTRUCTION
    return Action.START_INSTRUCTION


def request_id(station_id: str) -> str:
    """A new id per intended change; retries of that change reuse it."""
    return f"{station_id}-{uuid.uuid4().hex}"


def lot_id(code: str, now: datetime) -> str:
    """The lot of one finished container: the card (or instruction) and the second
    it was completed. Unique without any counter, even across terminals and
    restarts: a card cannot complete twice within a second, since a second
    completion needs a scan and a start in between. The code is cut to keep the
    id within the 64 characters ids may have."""
    return f"{code[:48]}-{now:%Y%m%d-%H%M%S}"


# ErrorInfo reasons the operator can act on, and what to tell them.
_REASONS = {
    "OVERPRODUCTION_BLOCKED": "refused_overproduction",
    "LOT_QUARANTINED": "refused_quarantined",
    "WRONG_STATION": "refused_wrong_station",
    "INVALID_CARD_STATE": "refused_card_state",
    "NO_OPEN_SIGNAL": "refused_no_signal",
    "INSTRUCTION_WITHDRAWN": "refused_withdrawn",
    "CARD_NOT_FOUND": "refused_unknown_card",
    # Only the terminal's own --station and --site name these.
    "STATION_NOT_FOUND": "refused_unknown_station",
    "SITE_NOT_FOUND": "refused_unknown_station",
}

_CODES = {
    grpc.StatusCode.PERMISSION_DENIED: "refused_permission",
    grpc.StatusCode.UNAUTHENTICATED: "refused_token",
    grpc.StatusCode.UNAVAILABLE: "refused_offline",
    grpc.StatusCode.DEADLINE_EXCEEDED: "refused_offline",
    grpc.StatusCode.NOT_FOUND: "refused_not_found",
}


def refusal_message(code: grpc.StatusCode, reason: str) -> str:
    """The catalogue key for a refusal: by its ErrorInfo reason, else by its status
    code; "refused_other" (shown with the service's own words) for anything else."""
    return _REASONS.get(reason) or _CODES.get(code) or "refused_other"


class RepeatGuard:
    """Scanners sometimes read one barcode twice in a row. At the supplier the
    second read would complete the card it just started, reporting a container
    nobody made; so a code read again within `window` seconds is ignored."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._last_code = ""
        self._last_at = 0.0

    def is_repeat(self, code: str, now: float) -> bool:
        repeat = code == self._last_code and now - self._last_at < self._window
        self._last_code, self._last_at = code, now
        return repeat
