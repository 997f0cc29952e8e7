"""What a scan asks the service for, and what its refusals tell the operator."""

from datetime import UTC, datetime

import grpc
import pytest
from kanban.stations.v1 import stations_pb2 as pb

from clients.terminal.actions import (
    Action,
    RepeatGuard,
    for_card,
    for_instruction,
    lot_id,
    refusal_message,
    request_id,
)
from clients.terminal.i18n import MESSAGES


@pytest.mark.parametrize(
    ("station", "state", "action"),
    [
        ("WELD", pb.CARD_STATE_FULL, Action.SCAN),
        # Sent anyway: the service says why not, and counts it.
        ("WELD", pb.CARD_STATE_EMPTY, Action.SCAN),
        ("STAMP", pb.CARD_STATE_EMPTY, Action.START),
        ("STAMP", pb.CARD_STATE_IN_PROCESS, Action.COMPLETE),
        # Completing a card nobody emptied is over-production: the service refuses it.
        ("STAMP", pb.CARD_STATE_FULL, Action.COMPLETE),
        ("ASSY", pb.CARD_STATE_FULL, None),
    ],
)
def test_a_card_asks_for_what_its_loop_means_at_this_station(station, state, action):
    assert for_card(station, state, supplier="STAMP", consumer="WELD") is action


def test_an_instruction_is_started_then_completed():
    assert for_instruction(pb.INSTRUCTION_STATE_OPEN) is Action.START_INSTRUCTION
    assert for_instruction(pb.INSTRUCTION_STATE_STARTED) is Action.COMPLETE_INSTRUCTION


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "OVERPRODUCTION_BLOCKED",
            "Buffer full: do not produce",
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "LOT_QUARANTINED",
            "Lot quarantined: set this container aside",
        ),
        (grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND", "Unknown card: check the code"),
        (grpc.StatusCode.NOT_FOUND, "LOOP_NOT_FOUND", "Not found: check the code"),
        (
            grpc.StatusCode.NOT_FOUND,
            "STATION_NOT_FOUND",
            "Unknown station or site: check this terminal's settings",
        ),
        (grpc.StatusCode.PERMISSION_DENIED, "", "This terminal may not do that"),
        (grpc.StatusCode.UNAUTHENTICATED, "", "Token not accepted"),
        (grpc.StatusCode.UNAVAILABLE, "", "No connection: scan the card again"),
        (grpc.StatusCode.INVALID_ARGUMENT, "", "Refused: {detail}"),
    ],
)
def test_refusals_are_told_in_plain_words(code, reason, message):
    assert MESSAGES["en"][refusal_message(code, reason)] == message


def test_every_refusal_reason_has_words():
    reasons = ["WRONG_STATION", "INVALID_CARD_STATE", "NO_OPEN_SIGNAL", "INSTRUCTION_WITHDRAWN"]
    keys = {refusal_message(grpc.StatusCode.FAILED_PRECONDITION, r) for r in reasons}
    assert "refused_other" not in keys and len(keys) == len(reasons)


def test_a_lot_is_named_after_its_card_and_the_second_it_was_made():
    made = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert lot_id("P-001", made) == "P-001-20300102-030405"
    assert len(lot_id("C" * 64, made)) == 64  # ids may have 64 characters at most


def test_each_intended_change_gets_its_own_request_id():
    assert request_id("STAMP").startswith("STAMP-")
    assert request_id("STAMP") != request_id("STAMP")


def test_a_code_read_twice_at_once_counts_once():
    guard = RepeatGuard(window=2.0)
    assert not guard.is_repeat("P-001", now=100.0)
    assert guard.is_repeat("P-001", now=100.5)
    assert not guard.is_repeat("P-002", now=100.6)
    assert not guard.is_repeat("P-001", now=100.7)
    assert not guard.is_repeat("P-001", now=103.0)
