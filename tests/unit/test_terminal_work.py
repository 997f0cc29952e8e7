"""The terminal's picture of its station's work, from stream messages alone."""

from google.protobuf import timestamp_pb2
from kanban.stations.v1 import stations_pb2 as pb

from clients.terminal.work import StationWork


def signal(card: str, sequence: int) -> pb.WatchSignalsResponse:
    return pb.WatchSignalsResponse(
        signal=pb.Signal(card_code=card, sequence=sequence, state=pb.SIGNAL_STATE_OPEN)
    )


def instruction(
    instruction_id: str, sequence: int, *, due: int = 1000, priority: int = 0, quantity: int = 10
) -> pb.WatchSignalsResponse:
    return pb.WatchSignalsResponse(
        instruction=pb.Instruction(
            instruction_id=instruction_id,
            sequence=sequence,
            due_time=timestamp_pb2.Timestamp(seconds=due),
            priority=priority,
            quantity=quantity,
            state=pb.INSTRUCTION_STATE_OPEN,
        )
    )


def withdrawal(instruction_id: str, sequence: int) -> pb.WatchSignalsResponse:
    return pb.WatchSignalsResponse(
        withdrawal=pb.Withdrawal(instruction_id=instruction_id, sequence=sequence)
    )


def notice(lot: str, status: int, sequence: int, *cards: str) -> pb.WatchSignalsResponse:
    return pb.WatchSignalsResponse(
        lot_hold_notice=pb.LotHoldNotice(
            lot_id=lot, status=status, sequence=sequence, card_codes=cards
        )
    )


def heartbeat(last: int) -> pb.WatchSignalsResponse:
    return pb.WatchSignalsResponse(heartbeat=pb.Heartbeat(last_sequence=last))


def codes(work: StationWork) -> list[str]:
    return [
        item.card_code if isinstance(item, pb.Signal) else item.instruction_id
        for item in work.queue()
    ]


def test_the_cursor_is_the_highest_sequence_applied_and_heartbeats_do_not_move_it():
    work = StationWork()
    assert work.apply(signal("P-001", 1))
    assert work.apply(notice("LOT-1", pb.LOT_HOLD_STATUS_HELD, 3, "W-001"))
    assert not work.apply(heartbeat(7))
    assert work.cursor == 3


def test_signals_queue_oldest_first_after_instructions_most_urgent_first():
    work = StationWork()
    for message in (
        signal("P-002", 5),
        signal("P-001", 2),
        instruction("LATE", 1, due=2000, priority=9),
        instruction("SOON-LOW", 3, due=1000, priority=1),
        instruction("SOON-HIGH", 4, due=1000, priority=5),
    ):
        work.apply(message)
    assert codes(work) == ["SOON-HIGH", "SOON-LOW", "LATE", "P-001", "P-002"]


def test_a_message_seen_twice_is_queued_once():
    work = StationWork()
    work.apply(signal("P-001", 1))
    work.apply(signal("P-001", 1))
    assert codes(work) == ["P-001"]


def test_a_newer_signal_of_a_card_replaces_the_older_one():
    # The card went round once while this terminal was not looking.
    work = StationWork()
    work.apply(signal("P-001", 1))
    work.apply(signal("P-001", 4))
    assert [s.sequence for s in work.queue()] == [4]


def test_a_withdrawal_takes_an_instruction_off_and_a_new_announcement_replaces_it():
    work = StationWork()
    work.apply(instruction("I-1", 1, quantity=10))
    work.apply(instruction("I-2", 2, quantity=10))
    work.apply(instruction("I-2", 3, quantity=4))  # its order shrank
    work.apply(withdrawal("I-1", 4))
    assert [(i.instruction_id, i.quantity) for i in work.queue()] == [("I-2", 4)]
    assert work.cursor == 4


def test_holds_show_until_released_or_written_off():
    work = StationWork()
    work.apply(notice("LOT-1", pb.LOT_HOLD_STATUS_HELD, 1, "P-001", "P-002"))
    work.apply(notice("LOT-2", pb.LOT_HOLD_STATUS_HELD, 2, "P-003"))
    assert [list(h.card_codes) for h in work.holds()] == [["P-001", "P-002"], ["P-003"]]

    work.apply(notice("LOT-1", pb.LOT_HOLD_STATUS_RELEASED, 3, "P-001", "P-002"))
    work.apply(notice("LOT-2", pb.LOT_HOLD_STATUS_WRITTEN_OFF, 4, "P-003"))
    assert work.holds() == []


def test_what_the_terminal_starts_leaves_the_queue():
    work = StationWork()
    work.apply(signal("P-001", 1))
    work.apply(instruction("I-1", 2))
    work.signal_started("P-001")
    started = pb.Instruction(instruction_id="I-1", state=pb.INSTRUCTION_STATE_STARTED)
    work.instruction_started(started)
    assert work.queue() == []
    assert work.started_instructions() == [started]
    assert work.instruction("I-1") is started

    work.instruction_completed("I-1")
    assert work.started_instructions() == []
    assert work.instruction("I-1") is None


def test_signals_started_at_another_terminal_are_forgotten_once_the_board_shows_it():
    work = StationWork()
    work.apply(signal("P-001", 1))
    work.apply(signal("P-002", 2))
    work.apply(signal("P-003", 3))
    states = {
        "P-001": pb.CARD_STATE_IN_PROCESS,  # started elsewhere
        "P-002": pb.CARD_STATE_EMPTY,  # still waiting
        "P-003": pb.CARD_STATE_FULL,  # read before its signal was raised
    }
    work.forget_started_elsewhere(states, as_of=2)
    assert codes(work) == ["P-002", "P-003"]


def test_a_withdrawn_signal_leaves_the_queue_but_a_newer_one_of_its_card_stays():
    work = StationWork()
    for message in (signal("P-001", 1), signal("P-002", 2)):
        work.apply(message)

    work.apply(
        pb.WatchSignalsResponse(
            signal_withdrawal=pb.SignalWithdrawal(card_code="P-002", signal_sequence=2, sequence=3)
        )
    )
    # An older signal's withdrawal does not take a newer signal of the card with it.
    work.apply(
        pb.WatchSignalsResponse(
            signal_withdrawal=pb.SignalWithdrawal(card_code="P-001", signal_sequence=0, sequence=4)
        )
    )

    assert [s.card_code for s in work.queue()] == ["P-001"]
    assert work.cursor == 4
