"""`kanbanctl simulate`: the line simulator against cases worked by hand, its
bottleneck against lines whose bottleneck is known, its previews, and its refusals."""

import copy
import io
import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients.kanbanctl import cli
from clients.kanbanctl.layout import LayoutError, load_layout
from clients.kanbanctl.simulate import (
    Changes,
    SimulationError,
    apply_changes,
    model_from_layout,
    simulate,
)
from services.stations.analytics import CardTrip

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "line.yaml"


def example() -> dict[str, Any]:
    return load_layout(EXAMPLE)


def two_stations(
    supplier_minutes: float, container: int = 5, cards: int = 3, arrivals: str = "fixed"
) -> dict[str, Any]:
    """A makes parts in containers for B, the pacemaker, which gets orders of one
    unit, 10 an hour, and takes a minute over each: fixed unless `arrivals` says."""
    return {
        "site": {"site_id": "S", "name": "Plant"},
        "stations": [{"station_id": "A"}, {"station_id": "B"}],
        "items": [{"item_id": "P"}, {"item_id": "F"}],
        "loops": [
            {
                "loop_id": "P",
                "item_id": "P",
                "supplier_station_id": "A",
                "consumer_station_id": "B",
                "container_quantity": container,
                "card_count": cards,
            }
        ],
        "products": [{"item_id": "F", "pacemaker_station_id": "B", "container_quantity": 1}],
        "simulation": {
            "hours": 20,
            "warmup_hours": 2,
            "stations": {"A": {"process_minutes": supplier_minutes}, "B": {"process_minutes": 1}},
            "demand": {"B": {"units_per_hour": 10, "distribution": arrivals}},
        },
    }


def run(layout: dict[str, Any], changes: Changes | None = None, seed: int | None = None):
    model, settings = model_from_layout(layout)
    if changes:
        model = apply_changes(model, changes)
    return simulate(model, settings.hours, settings.warmup_hours, seed or settings.seed)


def test_a_fixed_line_makes_what_is_ordered_with_the_utilisation_worked_by_hand():
    result = run(two_stations(supplier_minutes=12))
    (loop,) = result.loops
    # 10 units an hour in containers of 5: 2 containers an hour of 12 minutes each.
    assert loop.throughput_units_per_hour == pytest.approx(10, abs=0.5)
    assert loop.consumption_units_per_hour == pytest.approx(10, abs=0.5)
    supplier, pacemaker = result.stations
    assert supplier.station_id == "A" and supplier.utilisation == pytest.approx(0.4, abs=0.02)
    assert pacemaker.pacemaker and pacemaker.utilisation == pytest.approx(10 / 60, abs=0.02)
    # Lead time: the signal waits for nothing and takes 12 minutes.
    assert loop.lead_time_p50_hours == pytest.approx(0.2, abs=0.01)
    assert loop.stockouts == 0
    (demand,) = result.demand
    assert demand.served_units == pytest.approx(200, abs=2)
    assert demand.backlog_units <= 1


def test_a_supplier_slower_than_demand_starves_its_consumer_and_is_the_bottleneck():
    # 2 containers an hour wanted, 40 minutes each: A can make 1.5 an hour.
    result = run(two_stations(supplier_minutes=40))
    (loop,) = result.loops
    assert loop.throughput_units_per_hour == pytest.approx(7.5, abs=0.5)
    assert loop.stockouts > 0 and loop.stockout_wait_hours > 1
    assert result.stations[0].utilisation > 0.95
    assert result.bottleneck is not None and result.bottleneck.station_id == "A"
    assert any("no full container" in fact for fact in result.bottleneck.evidence)
    assert result.demand[0].backlog_units > result.demand[0].backlog_start_units


def test_the_example_lines_bottleneck_is_welding_as_its_comment_says():
    result = run(example())
    assert result.bottleneck is not None and result.bottleneck.station_id == "WELD"
    utilisation = {s.station_id: s.utilisation for s in result.stations}
    assert utilisation["WELD"] == max(utilisation.values())
    assert 0.8 < utilisation["WELD"] < 0.97


def test_two_lines_that_differ_in_their_slow_station_have_different_bottlenecks():
    slow_stamping = example()
    stations = slow_stamping["simulation"]["stations"]
    # 176 brackets an hour in containers of 500 at 160 minutes each: 94 % busy,
    # while welding at 30 minutes a container of 50 frames is 44 % busy.
    stations["STAMP"] = {"process_minutes": 160}
    stations["WELD"] = {"process_minutes": 30}
    assert run(slow_stamping).bottleneck.station_id == "STAMP"
    assert run(example()).bottleneck.station_id == "WELD"


def test_the_same_seed_gives_the_same_run_and_another_seed_another():
    assert run(example()).to_json() == run(example()).to_json()
    assert run(example(), seed=2).to_json() != run(example()).to_json()


def test_a_preview_changes_only_what_it_says():
    model, _ = model_from_layout(example())
    changed = apply_changes(model, Changes(cards={"FRAME": 5}))
    frame, bracket = changed.loop("FRAME"), changed.loop("BRACKET")
    assert frame == replace(model.loop("FRAME"), card_count=5)
    assert bracket == model.loop("BRACKET")
    assert (changed.demand, changed.process) == (model.demand, model.process)

    containers = apply_changes(model, Changes(container={"FRAME": 25}))
    assert containers.loop("FRAME") == replace(model.loop("FRAME"), container_quantity=25)
    scaled = apply_changes(model, Changes(demand_scale=1.5))
    assert [d.units_per_hour for d in scaled.demand] == [44 * 1.5]
    assert scaled.loops == model.loops


def test_more_cards_at_the_bottleneck_buy_fewer_stockouts_with_more_wip():
    # A is busy 80 % of the time; orders come at random, so one card runs out.
    starved = run(two_stations(supplier_minutes=24, cards=1, arrivals="exponential"))
    eased = run(two_stations(supplier_minutes=24, cards=4, arrivals="exponential"))
    assert starved.loops[0].stockouts > 0
    # Same customers either way: only the cards differ.
    assert eased.demand[0].orders_arrived == starved.demand[0].orders_arrived
    assert eased.loops[0].stockout_wait_hours < starved.loops[0].stockout_wait_hours
    assert eased.loops[0].average_wip_units > starved.loops[0].average_wip_units
    assert eased.demand[0].average_wait_hours < starved.demand[0].average_wait_hours


def test_a_supermarket_never_holds_more_full_containers_than_the_loop_has_cards():
    for changes in (Changes(), Changes(cards={"FRAME": 1}), Changes(demand_scale=0.2)):
        result = run(example(), changes)
        for loop in result.loops:
            assert 0 <= loop.max_full <= loop.card_count
        # A card is in one trip at a time: its trips never overlap.
        by_card: dict[str, list[CardTrip]] = {}
        for trip in result.trips:
            by_card.setdefault(trip.card_code, []).append(trip)
        for trips in by_card.values():
            for before, after in itertools.pairwise(trips):
                assert before.completed_at is not None and before.completed_at <= after.raised_at


def with_simulation(**section: Any) -> dict[str, Any]:
    layout = copy.deepcopy(example())
    layout["simulation"] = section
    return layout


@pytest.mark.parametrize(
    "section, message",
    [
        ({"hourz": 5}, "simulation: unknown field(s): hourz"),
        ({"hours": 0}, "simulation.hours: must be above 0"),
        ({"seed": "one"}, "simulation.seed: must be a whole number"),
        ({"stations": {"PAINT": {}}}, "simulation.stations.PAINT: no such station"),
        (
            {"stations": {"WELD": {"process_minutes": {"distribution": "gamma", "mean": 3}}}},
            "simulation.stations.WELD.process_minutes.distribution: must be one of",
        ),
        (
            {"stations": {"WELD": {"process_minutes": {"distribution": "uniform", "min": 3}}}},
            "simulation.stations.WELD.process_minutes.max: required for uniform",
        ),
        (
            {"stations": {"WELD": {"process_minutes": {"mean": 3, "cv": 0.2}}}},
            "simulation.stations.WELD.process_minutes.cv: not a parameter of fixed",
        ),
        (
            {"stations": {"WELD": {"process_minutes": -2}}},
            "simulation.stations.WELD.process_minutes: must be at least 0",
        ),
        ({"loops": {"FRAME": {"usage": 0}}}, "simulation.loops.FRAME.usage: must be above 0"),
        ({"demand": {"ASSY": {}}}, "simulation.demand.ASSY.units_per_hour: required"),
        ({"demand": {"WELD": {"units_per_hour": 5}}}, "simulation.demand.WELD: not a pacemaker"),
        (
            {"demand": {"ASSY": {"units_per_hour": 5, "order_quantity": 0}}},
            "simulation.demand.ASSY.order_quantity: must be a whole number",
        ),
    ],
)
def test_a_bad_simulation_field_is_refused_by_its_path(section: dict[str, Any], message: str):
    with pytest.raises(LayoutError) as refused:
        model_from_layout(with_simulation(**section))
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        (Changes(cards={"PAINT": 3}), "--cards PAINT: no such loop"),
        (Changes(cards={"FRAME": 0}), "--cards FRAME: must be at least 1"),
        (Changes(container={"FRAME": -5}), "--container FRAME: must be at least 1"),
        (Changes(demand={"WELD": 5}), "--demand WELD: not a pacemaker"),
        (Changes(demand_scale=-1), "--demand-scale: must be at least 0"),
    ],
)
def test_a_change_that_does_not_fit_the_line_is_refused(changes: Changes, message: str):
    model, _ = model_from_layout(example())
    with pytest.raises(SimulationError, match=message):
        apply_changes(model, changes)


async def simulate_command(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await cli.run(cli.parse(["simulate", *argv]), out, err)
    return status, out.getvalue(), err.getvalue()


async def test_the_command_prints_the_line_as_it_is_and_as_changed_side_by_side():
    status, out, err = await simulate_command(str(EXAMPLE), "--cards", "FRAME=5", "--hours", "24")
    assert (status, err) == (0, "")
    assert "changed: loop FRAME: 5 cards" in out
    cards = next(line for line in out.splitlines() if line.strip().startswith("cards"))
    assert cards.split()[1:] == ["4", "4"]  # BRACKET's, unchanged
    assert "bottleneck (baseline) WELD:" in out


async def test_the_command_reports_json_for_other_programs(tmp_path):
    layout = tmp_path / "line.yaml"
    layout.write_text(yaml.safe_dump(two_stations(supplier_minutes=12)))
    status, out, _ = await simulate_command(str(layout), "--json", "--demand-scale", "2")
    assert status == 0
    report = json.loads(out)
    assert report["changes"] == ["all demand x 2"]
    assert report["baseline"]["demand"][0]["units_per_hour"] == 10
    assert report["changed"]["demand"][0]["units_per_hour"] == 20
    baseline, changed = report["baseline"]["stations"][0], report["changed"]["stations"][0]
    assert changed["utilisation"] == pytest.approx(2 * baseline["utilisation"], rel=0.05)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cards", "FRAME"], "--cards FRAME: give NAME=a whole number"),
        (["--cards", "FRAME=many"], "--cards FRAME=many: give NAME=a whole number"),
        (["--container", "PAINT=5"], "--container PAINT: no such loop"),
    ],
)
async def test_the_command_refuses_a_bad_change_without_a_traceback(argv, message):
    status, out, err = await simulate_command(str(EXAMPLE), *argv)
    assert (status, out) == (1, "")
    assert message in err
