"""Alert rules and the life of an alert, without I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from services.alerts.domain import (
    Alert,
    AlertState,
    AttemptFacts,
    CardFacts,
    HoldFacts,
    LoopFacts,
    Picture,
    Rule,
    Scope,
    StockFacts,
    Threshold,
    Thresholds,
    VarianceFacts,
    card_age_that_matters,
    conditions,
    review,
)
from services.core.errors import FailedPrecondition

CARD_RULES = (Rule.FULL_CONTAINER_WAITING, Rule.SIGNAL_NOT_STARTED, Rule.CARD_NOT_SEEN)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
LOOP = LoopFacts("P", "PART", "STAMP", "WELD", 1500, 500)


def card(code: str, state: str, minutes_ago: float, quantity: int = 500) -> CardFacts:
    return CardFacts(
        code, "P", state, quantity if state == "FULL" else 0, NOW - timedelta(minutes=minutes_ago)
    )


def picture(cards=(), wip=None, **facts) -> Picture:
    values = dict(loops=[LOOP], cards=list(cards), stock=[], holds=[], variances=[], attempts=[])
    values.update(facts)
    return Picture(wip=wip or {}, **values)


def set_(*thresholds: tuple[Rule, Scope, str, float]) -> Thresholds:
    return Thresholds(
        Threshold("S", rule, scope, scope_id, value) for rule, scope, scope_id, value in thresholds
    )


def keys(found) -> set[str]:
    return {c.key for c in found}


def test_defaults_catch_a_signal_not_started_within_an_hour_and_nothing_else():
    cards = [card("P-001", "EMPTY", 61), card("P-002", "EMPTY", 59), card("P-003", "FULL", 60)]

    found = conditions(picture(cards), set_(), set(), NOW)

    assert keys(found) == {"SIGNAL_NOT_STARTED:card/P-001"}
    (late,) = found
    assert "STAMP has not started it, WELD will starve" in late.message
    assert late.threshold == 3600


def test_the_most_specific_threshold_applies():
    cards = [card("P-001", "FULL", 10)]
    site_wide = set_((Rule.FULL_CONTAINER_WAITING, Scope.SITE, "", 300))
    loop_wins = set_(
        (Rule.FULL_CONTAINER_WAITING, Scope.SITE, "", 300),
        (Rule.FULL_CONTAINER_WAITING, Scope.LOOP, "P", 3600),
    )

    assert keys(conditions(picture(cards), site_wide, set(), NOW)) == {
        "FULL_CONTAINER_WAITING:card/P-001"
    }
    assert keys(conditions(picture(cards), loop_wins, set(), NOW)) == set()


def test_wip_fires_at_its_share_of_cap_and_holds_until_below_the_band():
    share = set_((Rule.WIP_ABOVE_THRESHOLD, Scope.LOOP, "P", 0.8))
    key = "WIP_ABOVE_THRESHOLD:loop/P"

    # 1500 of 1500 >= 80%: fires.
    assert key in keys(conditions(picture(wip={"P": 1500}), share, set(), NOW))
    # 1000 of 1500 (67%): not enough to fire, and below the band (72%) of an open one.
    assert key not in keys(conditions(picture(wip={"P": 1000}), share, set(), NOW))
    assert key not in keys(conditions(picture(wip={"P": 1000}), share, {key}, NOW))
    # 1100 (73%): below the line, but an open alert holds within the band.
    assert key not in keys(conditions(picture(wip={"P": 1100}), share, set(), NOW))
    assert key in keys(conditions(picture(wip={"P": 1100}), share, {key}, NOW))


def test_a_station_threshold_covers_its_input_loops():
    share = set_((Rule.WIP_ABOVE_THRESHOLD, Scope.STATION, "WELD", 1.0))
    other = LoopFacts("Q", "BOLT", "CUT", "WELD", 1000, 100)

    found = conditions(picture(loops=[LOOP, other], wip={"P": 1500, "Q": 1000}), share, set(), NOW)

    # The station's threshold also covers its input loops that have none of their own.
    assert {c.subject: c.value for c in found} == {
        "station/WELD": 2500,
        "loop/P": 1500,
        "loop/Q": 1000,
    }


def test_a_loop_without_cards_holds_no_wip():
    share = set_((Rule.WIP_ABOVE_THRESHOLD, Scope.SITE, "", 0.0001))
    assert keys(conditions(picture(wip={}), share, set(), NOW)) == set()


def test_only_cards_at_least_as_old_as_the_smallest_card_limit_can_matter():
    other = LoopFacts("Q", "BOLT", "CUT", "PAINT", 1000, 100)
    loops = [LOOP, other]
    # Defaults: a signal not started within the hour is the first card rule to fire.
    assert card_age_that_matters(loops, set_()) == 3600
    tuned = set_(
        (Rule.FULL_CONTAINER_WAITING, Scope.STATION, "PAINT", 120),
        (Rule.CARD_NOT_SEEN, Scope.LOOP, "P", 60),
    )
    assert card_age_that_matters(loops, tuned) == 60
    # A rule turned off (0) for one loop does not count; the other loop's limit does.
    off_for_p = set_((Rule.SIGNAL_NOT_STARTED, Scope.LOOP, "P", 0))
    assert card_age_that_matters(loops, off_for_p) == 3600
    every_rule_off = set_(
        *((rule, Scope.SITE, "", 0) for rule in CARD_RULES),
    )
    assert card_age_that_matters(loops, every_rule_off) is None
    assert card_age_that_matters([], set_()) is None


def test_event_driven_conditions():
    found = conditions(
        picture(
            stock=[
                StockFacts("RAW", "", "BELOW_SAFETY_STOCK", 5, 10, 0),
                StockFacts("RAW", "BIN", "ABOVE_OVERSTOCK", 50, 0, 40),
                StockFacts("PART", "", "NORMAL", 5, 1, 10),
            ],
            holds=[HoldFacts("LOT-1", "RAW", "cracks")],
            variances=[VarianceFacts("C1", "BIN", "RAW", "LOT-1", 100, 80)],
            attempts=[
                AttemptFacts("STAMP", 2, NOW - timedelta(minutes=1), "600 > 500"),
                AttemptFacts("WELD", 1, NOW - timedelta(hours=1), "old"),
            ],
        ),
        set_(),
        set(),
        NOW,
    )

    assert keys(found) == {
        "STOCK_BELOW_SAFETY_STOCK:stock/RAW",
        "STOCK_ABOVE_OVERSTOCK:stock/RAW@BIN",
        "LOT_QUARANTINED:lot/LOT-1",
        "COUNT_VARIANCE:count/C1/RAW/LOT-1",
        # WELD's attempt is older than the quiet period: resolved.
        "OVERPRODUCTION_ATTEMPTED:station/STAMP",
    }


def test_a_card_not_seen_for_days_is_probably_lost():
    cards = [card("P-001", "FULL", 8 * 24 * 60)]

    assert "CARD_NOT_SEEN:card/P-001" in keys(conditions(picture(cards), set_(), set(), NOW))


def alert_for(key_condition, state=AlertState.FIRING, clear_since=None) -> Alert:
    fired = Alert.fire("S", "A1", key_condition, NOW - timedelta(minutes=5))
    return Alert(**{**fired.__dict__, "state": state, "clear_since": clear_since})


def test_review_fires_new_conditions_once():
    (condition,) = conditions(picture([card("P-001", "EMPTY", 90)]), set_(), set(), NOW)

    first = review([], [condition], NOW, timedelta(seconds=60))
    again = review([alert_for(condition)], [condition], NOW, timedelta(seconds=60))

    assert first.fire == [condition]
    assert again.fire == [] and again.resolve == []


def test_a_cleared_condition_resolves_at_once_unless_its_rule_waits_out_flapping():
    (late,) = conditions(picture([card("P-001", "EMPTY", 90)]), set_(), set(), NOW)
    (low,) = conditions(
        picture(stock=[StockFacts("RAW", "", "BELOW_SAFETY_STOCK", 5, 10, 0)]), set_(), set(), NOW
    )
    delay = timedelta(seconds=60)

    resolved = review([alert_for(late)], [], NOW, delay)
    waiting = review([alert_for(low)], [], NOW, delay)
    still = review([alert_for(low, clear_since=NOW - timedelta(seconds=30))], [], NOW, delay)
    back = review([alert_for(low, clear_since=NOW - timedelta(seconds=30))], [low], NOW, delay)
    done = review([alert_for(low, clear_since=NOW - timedelta(seconds=61))], [], NOW, delay)

    assert [a.state for a in resolved.resolve] == [AlertState.RESOLVED]
    assert waiting.resolve == [] and waiting.refresh[0].clear_since == NOW
    assert still.resolve == [] and still.refresh == []
    # Back before the delay ran out: the same alert goes on, no new one.
    assert back.fire == [] and back.refresh[0].clear_since is None
    assert [a.resolved_at for a in done.resolve] == [NOW]


def test_acknowledge_records_who_and_a_resolved_alert_cannot_be():
    (late,) = conditions(picture([card("P-001", "EMPTY", 90)]), set_(), set(), NOW)
    acknowledged = alert_for(late).acknowledge("ana", "on it", NOW)

    assert (acknowledged.state, acknowledged.acknowledged_by, acknowledged.acknowledge_comment) == (
        AlertState.ACKNOWLEDGED,
        "ana",
        "on it",
    )
    with pytest.raises(FailedPrecondition) as refused:
        alert_for(late, state=AlertState.RESOLVED).acknowledge("ana", "", NOW)
    assert refused.value.reason == "ALERT_RESOLVED"
