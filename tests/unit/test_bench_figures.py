"""The benchmark's arithmetic: k6's points read back, a phase's figures, scan to
signal, and the ratios to the ceilings."""

import json
import os

import pytest

from tools.bench import usage
from tools.bench.k6 import Call, Run, read_points
from tools.bench.line import Card, interleaved, take
from tools.bench.report import (
    SATURATION,
    Phase,
    Result,
    add_signals,
    compute_ratios,
    render,
    scan_path_cpu,
    summarize,
)


def point(metric: str, time: str, value: float, **data: object) -> str:
    return json.dumps(
        {"metric": metric, "type": "Point", "data": {"time": time, "value": value, **data}}
    )


K6_OUTPUT = [
    json.dumps({"type": "Metric", "metric": "grpc_req_duration", "data": {"type": "trend"}}),
    point(
        "grpc_req_duration",
        "2026-01-01T00:00:01.250000000Z",
        250.0,
        tags={"status": "0", "method": "ScanCard"},
        metadata={"card": "L0001-001"},
    ),
    point(
        "grpc_req_duration",
        "2026-01-01T01:00:02.5+01:00",
        500.0,
        tags={"status": "9"},
        metadata={"card": "L0001-002"},
    ),
    point("iterations", "2026-01-01T00:00:02Z", 1, tags={}),
    point("dropped_iterations", "2026-01-01T00:00:03Z", 3, tags={}),
    point("dropped_iterations", "2026-01-01T00:00:04Z", 2, tags={}),
]
EPOCH_2026 = 1767225600.0


def test_k6_points_are_calls_that_started_their_duration_before_their_time():
    calls, dropped = read_points(K6_OUTPUT)
    assert calls == [
        Call("L0001-001", EPOCH_2026 + 1.0, 250.0, ok=True),
        Call("L0001-002", EPOCH_2026 + 2.0, 500.0, ok=False),
    ]
    assert dropped == 5


def test_a_run_lasts_from_the_first_start_to_the_last_end():
    run = Run([Call("a", 10.0, 500.0, True), Call("b", 10.2, 1000.0, True)], 0, 0.0)
    assert run.window == pytest.approx(1.2)
    assert Run([], 0, 0.0).window == 0.0


def calls(count: int, ms: float = 10.0, ok: bool = True) -> list[Call]:
    """`count` calls started 10 ms apart."""
    return [Call(f"C{n}", 100 + n / 100, ms, ok) for n in range(count)]


def test_a_phase_counts_succeeded_calls_per_second_and_their_latency():
    run = Run([*calls(99), Call("X", 100.5, 900.0, False)], 7, 1.5)
    phase = summarize("scan", "50%", 120.0, run, {"stations": 2.0}, 0.1)
    assert phase.calls == 100
    assert phase.failed == 1
    assert phase.dropped == 7
    # 99 successes from 100.00 to 101.4 (the failed call's end).
    assert phase.seconds == pytest.approx(1.4)
    assert phase.rate == pytest.approx(99 / 1.4)
    # Kept up until the events it caused were delivered, 0.1 s later.
    assert phase.sustained == pytest.approx(99 / 1.5)
    assert phase.latency == {"p50_ms": 10.0, "p95_ms": 10.0, "p99_ms": 10.0}


def test_a_closed_loop_has_no_dropped_calls_only_cards_left_over():
    phase = summarize("scan", SATURATION, None, Run(calls(3), 40, 0.0), {}, 0.0)
    assert phase.dropped == 0


def test_scan_to_signal_runs_from_the_scan_start_to_the_signal_arrival():
    phase = summarize("scan", "25%", 10.0, Run(calls(3), 0, 0.0), {}, 0.0)
    arrivals = {"C0": 100.004, "C1": 100.030}  # C2's signal never came
    add_signals(phase, calls(3), arrivals)
    assert phase.signal is not None
    assert phase.signal["p50_ms"] == pytest.approx(4.0)
    assert phase.signal["p99_ms"] == pytest.approx(20.0)
    assert phase.signals_missing == 1


def figures(series: str, load: str, rate: float, p50: float, p99: float) -> Phase:
    return Phase(
        series=series,
        load=load,
        offered=None if load == SATURATION else rate,
        rate=rate,
        sustained=rate,
        calls=int(rate * 10),
        failed=0,
        dropped=0,
        seconds=10.0,
        latency={"p50_ms": p50, "p95_ms": p99, "p99_ms": p99},
        cpu={"stations": rate / 100, "k6": 1.0},
        drain_seconds=0.0,
    )


def ceiling(rate: float, p50: float, p99: float | None) -> dict[str, object]:
    """As tools.bench.ceilings prints it."""
    return {"rate": rate, "p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "requests": 1, "failed": 0}


def result() -> Result:
    return Result(
        setup={},
        phases=[
            figures("scan", SATURATION, 100.0, 160.0, 320.0),
            figures("scan", "50%", 50.0, 20.0, 60.0),
            figures("bare scan", SATURATION, 400.0, 40.0, 80.0),
            figures("bare scan", "50%", 200.0, 5.0, 10.0),
        ],
        ceilings={
            "empty call": ceiling(5000.0, 3.2, None),
            "scan SQL": ceiling(800.0, 16.0, 64.0),
        },
        peak_rss_mib={"stations": 80.0},
    )


def test_ratios_are_our_scan_over_each_ceiling():
    ratios = compute_ratios(result())
    assert ratios["bare scan"] == {"rate": 0.25, "p50": 4.0, "p99": 4.0}
    assert ratios["empty call"] == {"rate": 0.02, "p50": 50.0, "p99": None}
    assert ratios["scan SQL"] == {"rate": 0.125, "p50": 10.0, "p99": 5.0}
    assert ratios["bare scan at 50%"] == {"rate": 0.25, "p50": 4.0, "p99": 6.0}


def test_no_ratios_without_our_scan_at_saturation():
    empty = result()
    empty.phases = [p for p in empty.phases if p.series != "scan"]
    assert compute_ratios(empty) == {}


def test_the_table_shows_every_phase_ceiling_ratio_and_cpu_per_call():
    measured = result()
    measured.ratios = compute_ratios(measured)
    table = render(measured)
    assert "bare scan at 50%" in table
    assert "scan SQL" in table and "empty call" in table
    # 1 CPU second for 1000 scans at saturation.
    assert "CPU ms per call" in table and "1.00" in table


def test_cards_are_taken_once():
    cards = [Card(f"C{n}", "L1", "S01", "S02") for n in range(5)]
    first = take(cards, 2)
    assert [c.code for c in first] == ["C0", "C1"]
    assert [c.code for c in take(cards, 10)] == ["C2", "C3", "C4"]
    assert cards == []


def test_cards_are_handed_out_round_the_loops():
    def loop(loop_id: str, count: int) -> list[Card]:
        return [Card(f"{loop_id}-{n}", loop_id, "S01", "S02") for n in range(count)]

    first = interleaved([loop("L1", 3), loop("L2", 2)])
    assert [c.code for c in first] == ["L1-0", "L2-0", "L1-1", "L2-1", "L1-2"]
    # Loops added later join the rounds of the cards left.
    later = interleaved([first[2:], loop("L3", 2)])
    assert [c.code for c in later] == ["L1-1", "L2-1", "L3-0", "L1-2", "L3-1"]


def test_cpu_and_peak_memory_of_a_process_come_from_proc():
    spent = usage.cpu_seconds(os.getpid())
    sum(n * n for n in range(300_000))  # burn a little CPU
    assert usage.cpu_seconds(os.getpid()) >= spent
    assert usage.peak_rss_mib(os.getpid()) > 1
    assert usage.spent({"a": 1.0, "b": 2.0}, {"a": 1.5, "c": 9.0}) == {"a": 0.5}


def test_postgres_time_is_split_by_client_over_the_backends_read_twice():
    clients = {10: "stations", 11: "stations", 12: "stations-relay", 13: "stock"}
    measured = usage.Usage({}, None, clients)
    before = {10: 1.0, 11: 2.0, 12: 0.5, 13: 4.0}
    # Backend 13 closed between the readings; 14 was not there at the first.
    after = {10: 1.5, 11: 2.25, 12: 0.75, 14: 3.0}
    assert measured.by_client(before, after, postgres=2.0) == {
        "pg stations": 0.75,
        "pg stations-relay": 0.25,
        "pg other": 1.0,
    }
    assert measured.by_client(before, after, postgres=None) == {
        "pg stations": 0.75,
        "pg stations-relay": 0.25,
    }


def test_the_table_shows_postgres_time_per_client_after_the_processes():
    measured = result()
    measured.phases[0].cpu |= {"pg stations": 2.0, "pg stations-relay": 0.5, "pg orders": 0.0}
    lines = render(measured).splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("PostgreSQL for"))
    # A client that took no time in any phase is left out.
    assert lines[header].split()[2:] == ["stations", "stations-relay"]
    # Saturation: 1000 calls, so 2.0 s is 2.00 ms a call.
    assert lines[header + 1].split()[-2:] == ["2.00", "0.50"]
    assert lines[header + 2].split()[-2:] == ["2.00", "0.50"]
    processes = next(line for line in lines if line.startswith("CPU seconds"))
    assert processes.split()[2:] == ["k6", "stations"]


def test_the_scan_path_alone_leaves_the_consumers_and_the_load_out():
    measured = result()
    ours, bare = measured.phases[0], measured.phases[2]  # 1000 and 4000 calls
    ours.cpu |= {"stations": 2.0, "pg stations": 0.8, "pg stations-relay": 0.2, "stock": 9.0}
    bare.cpu |= {"bare": 3.0, "pg bench-bare": 1.0}
    path = scan_path_cpu(measured)
    assert path == pytest.approx({"ours_ms": 3.0, "bare_ms": 1.0, "ratio": 1 / 3})
    measured.scan_path = path
    assert "ours 3.00, bare 1.00; bare / ours 0.33x" in render(measured)
    # Without PostgreSQL's split (a server elsewhere), there is no such figure.
    del ours.cpu["pg stations"]
    assert scan_path_cpu(measured) == {}
