"""The line's figures and the card count formula, against cases worked by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import InvalidArgument
from services.stations.analytics import (
    CardTrip,
    Distribution,
    LoopShape,
    Safety,
    Window,
    analyze_line,
    analyze_loop,
    size_loop,
    stockout_risk,
)
from services.stations.sizing import SizingPolicy

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(hours: float) -> datetime:
    return T0 + hours * HOUR


def trip(loop_id: str, n: int, raised: float, started: float | None, completed: float | None):
    return CardTrip(
        loop_id,
        f"{loop_id}-{n}",
        at(raised),
        None if started is None else at(started),
        None if completed is None else at(completed),
    )


STEADY = LoopShape("BRACKET", "STAMP", "WELD", container_quantity=10, card_count=3)
# One card emptied each hour from 06:00 to 13:00, started half an hour later, full
# two hours after it was emptied; the window is 06:00-16:00.
STEADY_TRIPS = [trip("BRACKET", i, i, i + 0.5, i + 2) for i in range(8)]
TEN_HOURS = Window(T0, at(10))


def test_a_steady_loop_by_hand():
    loop = analyze_loop(STEADY, STEADY_TRIPS, TEN_HOURS)

    assert (loop.completed_cards, loop.consumed_cards) == (8, 8)
    assert loop.throughput_units_per_hour == pytest.approx(8.0)  # 80 units in 10 h
    assert loop.consumption_units_per_hour == pytest.approx(8.0)
    assert (loop.lead_time.p50, loop.lead_time.p99) == (7200.0, 7200.0)
    assert loop.waiting_time.mean == 1800.0
    assert loop.process_time.mean == 5400.0
    # 8 trips x 2 h in replenishment over 10 h.
    assert loop.average_replenishing_cards == pytest.approx(1.6)
    # (3 cards - 1.6) x 10 in the supermarket, plus 8 x 1.5 h x 10 / 10 h in process.
    assert loop.average_inventory_units == pytest.approx(14.0)
    assert loop.average_wip_units == pytest.approx(26.0)
    assert loop.wip_turnover_days == pytest.approx(26 / (8 * 24))
    assert loop.inventory_turnover_per_year == pytest.approx(8 * 24 * 365 / 14)
    # Never more than two cards away at once: the supermarket never ran dry.
    assert loop.stockout_fraction == 0.0
    assert (loop.little.measured_cards, loop.little.predicted_cards) == pytest.approx((1.6, 1.6))
    assert loop.little.adds_up


def test_cards_needed_are_demand_times_lead_time_over_the_container():
    sizing = analyze_loop(STEADY, STEADY_TRIPS, TEN_HOURS).sizing

    assert sizing is not None
    # ceil(8 units/h x 2 h x (1 + 0) / 10) = ceil(1.6) = 2
    assert (sizing.current_cards, sizing.recommended_cards) == (3, 2)
    assert (sizing.demand_units_per_hour, sizing.lead_time_hours) == (8.0, 2.0)
    assert sizing.wip_change_units == -10

    padded = analyze_loop(STEADY, STEADY_TRIPS, TEN_HOURS, Safety(factor=0.5)).sizing
    assert padded is not None and padded.recommended_cards == 3  # ceil(2.4)


def test_an_exact_whole_number_of_cards_is_not_rounded_up():
    shape = LoopShape("L", "S", "C", container_quantity=8, card_count=2)
    sizing = analyze_loop(shape, STEADY_TRIPS, TEN_HOURS).sizing  # 8/h x 2 h / 8 = 2

    assert sizing is not None and sizing.recommended_cards == 2


def test_a_service_level_sets_the_safety_from_the_spread_of_demand():
    shape = LoopShape("L", "S", "C", container_quantity=25, card_count=8)
    two_hours = Distribution.of([7200.0, 7200.0])

    sizing = size_loop(shape, 100.0, 10.0, two_hours, Safety(service_level=0.95))

    # Lead time demand 200 units, spread sqrt(2 h x 10^2) = 14.14; z(0.95) = 1.645;
    # a = 1.645 x 14.14 / 200 = 0.1163; N = ceil(200 x 1.1163 / 25) = ceil(8.93) = 9.
    assert sizing.safety_factor == pytest.approx(0.1163, abs=1e-4)
    assert sizing.recommended_cards == 9
    # 8 cards hold exactly the expected demand: a coin toss; 9 leave 1.77 spreads.
    assert sizing.stockout_risk_current == pytest.approx(0.5)
    assert sizing.stockout_risk_recommended == pytest.approx(0.0385, abs=1e-4)


def test_stockout_risk_without_any_spread_is_certain_either_way():
    assert stockout_risk(100, 100, 0) == 0.0
    assert stockout_risk(99, 100, 0) == 1.0


def test_a_loop_that_runs_dry_and_a_card_that_never_came_back():
    shape = LoopShape("L", "S", "C", container_quantity=5, card_count=1)
    # Out 0-2 h, back; out again at 3 h, still out at the end of the 4 h window.
    trips = [trip("L", 1, 0, 1, 2), trip("L", 2, 3, None, None)]

    loop = analyze_loop(shape, trips, Window(T0, at(4)))

    assert loop.stockout_fraction == pytest.approx(3 / 4)
    # Measured (2 h + 1 h) / 4 h = 0.75 cards away; throughput x lead time
    # 1 card / 4 h x 2 h = 0.5: the data do not add up, a card is stuck.
    assert loop.little.measured_cards == pytest.approx(0.75)
    assert loop.little.predicted_cards == pytest.approx(0.5)
    assert not loop.little.adds_up


def test_trips_begun_before_the_window_count_only_inside_it():
    shape = LoopShape("L", "S", "C", container_quantity=1, card_count=2)
    trips = [trip("L", 1, -3, -2, 1), trip("L", 2, 9, 9.5, 12)]

    loop = analyze_loop(shape, trips, TEN_HOURS)

    # 1 h of the first and 1 h of the second lie in the window.
    assert loop.average_replenishing_cards == pytest.approx(0.2)
    assert (loop.completed_cards, loop.consumed_cards) == (1, 1)
    assert loop.lead_time.mean == 4 * 3600


def test_percentiles_are_measured_values_by_nearest_rank():
    spread = Distribution.of(float(v) for v in range(1, 101))

    assert (spread.p50, spread.p90, spread.p99) == (50.0, 90.0, 99.0)
    assert Distribution.of([3.0, 1.0, 2.0]).p50 == 2.0
    assert Distribution.of([]).count == 0


def test_rising_consumption_has_a_positive_trend_and_flat_none():
    shape = LoopShape("L", "S", "C", container_quantity=1, card_count=100)
    window = Window(T0, at(12))
    flat = [trip("L", i, i + 0.5, None, None) for i in range(12)]
    # One card in the first hour, two in the second... twelve in the last.
    rising = [
        trip("L", 100 * h + k, h + k / 20, None, None) for h in range(12) for k in range(h + 1)
    ]

    assert analyze_loop(shape, flat, window).consumption_trend == pytest.approx(0.0)
    # Slope 1 card per slice, x 12 slices / mean 6.5 = 1.85: almost twice as much by the end.
    assert analyze_loop(shape, rising, window).consumption_trend == pytest.approx(12 / 6.5)


def test_the_busiest_station_whose_consumers_starve_is_the_bottleneck():
    fast = LoopShape("BRACKET", "STAMP", "WELD", container_quantity=10, card_count=3)
    slow = LoopShape("FRAME", "WELD", "ASSY", container_quantity=10, card_count=1)
    trips = [trip("BRACKET", i, 2 * i, 2 * i, 2 * i + 0.5) for i in range(5)] + [
        trip("FRAME", i, 2 * i, 2 * i + 0.2, 2 * i + 2) for i in range(5)
    ]

    line = analyze_line([fast, slow], trips, TEN_HOURS)

    by_id = {s.station_id: s for s in line.stations}
    assert by_id["STAMP"].utilisation == pytest.approx(0.25)
    assert by_id["WELD"].utilisation == pytest.approx(0.9)
    assert by_id["WELD"].starving_loops == {"FRAME": pytest.approx(1.0)}
    assert line.bottleneck is not None and line.bottleneck.station_id == "WELD"
    assert any("FRAME" in fact for fact in line.bottleneck.evidence)
    assert any("85%" in fact for fact in line.bottleneck.evidence)


def test_a_line_where_nothing_moved_has_no_bottleneck_and_no_sizing():
    line = analyze_line([STEADY], [], TEN_HOURS)

    assert line.bottleneck is None
    assert line.loops[0].sizing is None
    assert line.loops[0].wip_turnover_days is None
    assert line.loops[0].average_inventory_units == 30.0


def test_a_growing_queue_is_evidence():
    shape = LoopShape("L", "S", "C", container_quantity=1, card_count=50)
    # A signal every half hour; the station starts each one an hour late, for 15 minutes.
    trips = [trip("L", i, i / 2, i / 2 + 1, i / 2 + 1.25) for i in range(20)]
    late = [trip("L", 100 + i, 5 + i / 4, None, None) for i in range(20)]

    line = analyze_line([shape], trips + late, TEN_HOURS)

    [station] = line.stations
    assert station.queue_growth_per_hour > 0
    assert line.bottleneck is not None
    assert any("queue" in fact for fact in line.bottleneck.evidence)


@pytest.mark.parametrize(
    ("safety", "field"),
    [
        (dict(factor=0.1, service_level=0.9), "safety"),
        (dict(), "safety"),
        (dict(factor=-0.1), "safety_factor"),
        (dict(service_level=1.0), "service_level"),
        (dict(service_level=0.4), "service_level"),
    ],
)
def test_a_safety_is_a_factor_or_a_service_level_in_range(safety, field):
    with pytest.raises(InvalidArgument) as refused:
        Safety(**safety)
    assert refused.value.field == field


def test_a_window_ends_after_it_starts():
    with pytest.raises(InvalidArgument):
        Window(T0, T0)


POLICY = SizingPolicy(
    site_id="PLANT1",
    loop_id="BRACKET",
    enabled=True,
    min_cards=2,
    max_cards=6,
    safety=Safety(factor=0.0),
    period=timedelta(days=1),
    window=timedelta(days=7),
)


def test_a_policy_keeps_the_recommendation_within_its_bounds():
    sizing = analyze_loop(STEADY, STEADY_TRIPS, TEN_HOURS).sizing
    assert sizing is not None

    assert POLICY.target(sizing, 3) == 2
    assert POLICY.target(None, 3) == 3
    assert POLICY.target(None, 9) == 6
    tight = SizingPolicy(**{**POLICY.__dict__, "min_cards": 4})
    assert tight.target(sizing, 3) == 4


def test_a_policy_is_due_once_per_period():
    assert POLICY.due(T0)
    checked = POLICY.checked(T0, resized=False)
    assert not checked.due(T0 + timedelta(hours=23))
    assert checked.due(T0 + timedelta(days=1))
    assert checked.resized_at is None
    assert not SizingPolicy(**{**POLICY.__dict__, "enabled": False}).due(T0)
