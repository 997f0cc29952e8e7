"""AnalyzeLine and sizing policies on the running services, against figures worked by hand."""

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kanban.audit.v1 import audit_pb2, audit_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb

from services.stations import metrics
from services.stations.analyst import Analyst, Question
from services.stations.analytics import Window
from tests.conftest import eventually, new_id, new_schema, refused

HOUR = timedelta(hours=1)


def stamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


async def make_trips(stack, line, t0: datetime) -> None:
    """Loop P's cards (500 each, 3 cards): P-001 out at t0, started at 0.5 h, full at
    2 h; P-002 out at 1 h, started 1.5 h, full 3 h; P-003 out at 4.5 h, not started.
    The real RPCs make the trips, then their times are moved to these."""
    for card in ("P-001", "P-002"):
        await line.scan("WELD", card)
        await line.start("STAMP", card)
        await line.complete("STAMP", card, new_id("LOT"), 500)
    await line.scan("WELD", "P-003")
    times = {
        "P-001": (t0, t0 + 0.5 * HOUR, t0 + 2 * HOUR),
        "P-002": (t0 + HOUR, t0 + 1.5 * HOUR, t0 + 3 * HOUR),
        "P-003": (t0 + 4.5 * HOUR, None, None),
    }
    async with stack.stations_service.db.pool.acquire() as conn:
        for card, (raised, started, completed) in times.items():
            await conn.execute(
                """UPDATE signals SET raised_at = $3, started_at = $4, completed_at = $5
                   WHERE site_id = $1 AND card_code = $2""",
                line.site_id,
                card,
                raised,
                started,
                completed,
            )


async def analyze(stack, line, start: datetime, end: datetime, **safety):
    return await stack.stations.AnalyzeLine(
        pb.AnalyzeLineRequest(
            site_id=line.site_id, start_time=stamp(start), end_time=stamp(end), **safety
        )
    )


async def test_the_line_over_a_window_by_hand(stack, line):
    t0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    await make_trips(stack, line, t0)

    report = await analyze(stack, line, t0, t0 + 5 * HOUR)

    loops = {loop.loop_id: loop for loop in report.loops}
    p = loops["P"]
    assert (p.completed_cards, p.consumed_cards) == (2, 3)
    assert p.throughput_units_per_hour == 200.0  # 2 x 500 in 5 h
    assert p.consumption_units_per_hour == 300.0
    assert (p.lead_time.count, p.lead_time.p50_seconds) == (2, 7200.0)
    assert p.waiting_time.mean_seconds == 1800.0
    # (2 h + 2 h + 0.5 h) away over 5 h; throughput x lead time 2/5 h x 2 h = 0.8.
    assert round(p.average_replenishing_cards, 9) == 0.9
    assert round(p.littles_law.predicted_cards, 9) == 0.8
    assert p.littles_law.adds_up
    assert p.stockout_fraction == 0.0
    # ceil(300 units/h x 2 h / 500) = 2 cards, one fewer than now.
    assert (p.sizing.current_cards, p.sizing.recommended_cards) == (3, 2)
    assert p.sizing.wip_change_units == -500
    assert not loops["W"].HasField("sizing")  # nothing went round W
    stations = {s.station_id: s for s in report.stations}
    # Stamping worked 0.5-3 h of 5.
    assert round(stations["STAMP"].utilisation, 9) == 0.5
    assert stations["WELD"].utilisation == 0.0
    assert report.bottleneck.station_id == "STAMP"
    assert report.bottleneck.evidence

    safer = await analyze(stack, line, t0, t0 + 5 * HOUR, safety_factor=1.0)
    assert {loop.loop_id: loop for loop in safer.loops}["P"].sizing.recommended_cards == 3


async def test_analysis_gauges_follow_the_line(stack, line):
    await make_trips(stack, line, datetime.now(UTC) - 5 * HOUR)

    async def published() -> bool:
        utilisation = metrics.STATION_UTILISATION.labels(line.site_id, "STAMP")._value.get()
        # Over the last 24 hours stamping worked 2.5 h.
        return abs(utilisation - 2.5 / 24) < 1e-6

    await eventually(published)
    assert metrics.BOTTLENECK.labels(line.site_id, "STAMP")._value.get() == 1
    assert metrics.LOOP_CARDS.labels(line.site_id, "P", "recommended")._value.get() == 1


async def test_bad_analysis_requests_are_refused_by_field(stack, line):
    t0 = datetime(2026, 12, 1, tzinfo=UTC)

    backwards = await refused(analyze(stack, line, t0, t0 - HOUR))
    too_long = await refused(analyze(stack, line, t0 - timedelta(days=400), t0))
    both = await refused(analyze(stack, line, t0 - HOUR, t0, safety_factor=0.2, service_level=0.9))
    certain = await refused(analyze(stack, line, t0 - HOUR, t0, service_level=1.0))
    unknown = await refused(
        stack.stations.AnalyzeLine(pb.AnalyzeLineRequest(site_id=new_id("nowhere")))
    )

    assert (backwards.code, backwards.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["start_time"])
    assert too_long.fields == ["start_time"]
    assert both.fields == ["safety_factor"]
    assert certain.fields == ["service_level"]
    assert unknown.code == grpc.StatusCode.NOT_FOUND


def policy_request(line, **fields) -> pb.SetSizingPolicyRequest:
    values = dict(
        request_id=new_id("r"), site_id=line.site_id, loop_id="P", enabled=True, min_cards=2
    )
    request = pb.SetSizingPolicyRequest(**{**values, "max_cards": 5, **fields})
    request.period.FromTimedelta(timedelta(days=1))
    request.window.FromTimedelta(timedelta(hours=6))
    return request


async def test_a_sizing_policy_resizes_once_per_period_within_its_bounds(stack, line):
    await make_trips(stack, line, datetime.now(UTC) - 5 * HOUR)
    resizes = metrics.SIZING_RESIZES.labels(line.site_id, "P")

    set_policy = await stack.stations.SetSizingPolicy(policy_request(line))
    assert set_policy.policy.enabled and set_policy.policy.period.ToTimedelta().days == 1

    async def resized() -> bool:
        found = await stack.stations.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id="P"))
        return found.loop.target_card_count == 2

    # 1,500 units over 6 h x 2 h lead time / 500 = 1 card; the policy's minimum is 2.
    await eventually(resized)
    report = await analyze(stack, line, datetime.now(UTC) - HOUR, datetime.now(UTC))
    [p] = [loop for loop in report.loops if loop.loop_id == "P"]
    assert p.sizing_policy.HasField("resized_at")
    # Checked many times since (every 0.2 s), resized once: at most once per period.
    checked_at = p.sizing_policy.checked_at.ToDatetime()
    await stack.stations.ResizeLoop(
        pb.ResizeLoopRequest(
            request_id=new_id("r"), site_id=line.site_id, loop_id="P", card_count=4, reason="x"
        )
    )
    # The policy is checked every 0.2 s: a second resize would show within a second.
    await asyncio.sleep(1.0)
    audit = audit_pb2_grpc.AuditServiceStub(stack.channels[0])
    records = await audit.ListAuditRecords(
        audit_pb2.ListAuditRecordsRequest(site_id=line.site_id, actor="sizing-policy")
    )
    assert [(r.rpc, r.target) for r in records.records] == [("SizingPolicy", "P")]
    assert "sizing policy" in records.records[0].after
    assert resizes._value.get() == 1
    again = await analyze(stack, line, datetime.now(UTC) - HOUR, datetime.now(UTC))
    [p] = [loop for loop in again.loops if loop.loop_id == "P"]
    assert p.sizing_policy.checked_at.ToDatetime() == checked_at
    found = await stack.stations.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id="P"))
    assert found.loop.target_card_count == 4


async def test_bad_sizing_policies_are_refused_by_field(stack, line):
    inverted = await refused(stack.stations.SetSizingPolicy(policy_request(line, max_cards=1)))
    no_loop = policy_request(line)
    no_loop.loop_id = "NOPE"
    missing = await refused(stack.stations.SetSizingPolicy(no_loop))
    hasty = policy_request(line)
    hasty.period.FromTimedelta(timedelta(seconds=5))

    assert (inverted.code, inverted.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["max_cards"])
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert (await refused(stack.stations.SetSizingPolicy(hasty))).fields == ["period.seconds"]


async def test_a_retried_policy_request_changes_nothing_more(stack, line):
    request = policy_request(line, service_level=0.95)
    first = await stack.stations.SetSizingPolicy(request)
    again = await stack.stations.SetSizingPolicy(request)

    assert first == again
    assert again.policy.service_level == 0.95
    reused = policy_request(line, max_cards=9)
    reused.request_id = request.request_id
    assert (await refused(stack.stations.SetSizingPolicy(reused))).fields == ["request_id"]


async def test_a_policy_resizing_under_racing_scans_keeps_the_cap_and_one_signal_per_card(
    stack, line
):
    """Consumers scan and suppliers refill a loop of 8 cards while its policy (2 to 3
    cards) shrinks it: no card retires twice or FULL, every other emptied card
    raised exactly one signal, and the cap holds."""
    await line.create_loop("R", "PART", "STAMP", "WELD", 8, 10)
    codes = [f"R-{n:03d}" for n in range(1, 9)]
    rng = random.Random(7)
    scans: list[pb.ScanCardResponse] = []
    policy = policy_request(line, loop_id="R", max_cards=3)
    resized, scanned = asyncio.Event(), asyncio.Event()

    async def loop_r() -> pb.GetLoopResponse:
        return await stack.stations.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id="R"))

    async def consumer() -> None:
        # Until the policy has resized and 20 scans after (or a minute: then it failed).
        deadline = asyncio.get_running_loop().time() + 60
        after = 0
        while after < 20 and asyncio.get_running_loop().time() < deadline:
            try:
                scans.append(await line.scan("WELD", rng.choice(codes)))
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
            after += resized.is_set()
        scanned.set()

    async def supplier(n: int) -> None:
        while not scanned.is_set():
            try:
                started = await line.start("STAMP")
                await line.complete("STAMP", started.card.card_code, new_id(f"L{n}"), 10)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
                await asyncio.sleep(0.01)
            if (await loop_r()).loop.target_card_count != 8:
                resized.set()

    async def planner() -> None:
        await asyncio.sleep(0.1)  # some trips first, for the policy to measure
        await stack.stations.SetSizingPolicy(policy)

    await asyncio.gather(consumer(), consumer(), supplier(1), supplier(2), planner())
    assert resized.is_set(), "the policy never resized the loop"

    found = await loop_r()
    in_loop = [c for c in found.cards if c.state != pb.CARD_STATE_RETIRED]
    assert 2 <= found.loop.target_card_count <= 3
    assert found.loop.card_count == len(in_loop) >= found.loop.target_card_count
    held = sum(c.quantity for c in in_loop) + 10 * sum(
        c.state == pb.CARD_STATE_IN_PROCESS for c in in_loop
    )
    assert held <= found.loop.cap_units == 10 * found.loop.card_count
    retired_on_scan = [s.card.card_code for s in scans if s.card.state == pb.CARD_STATE_RETIRED]
    with_signal = [s for s in scans if s.HasField("signal")]
    assert len(retired_on_scan) + len(with_signal) == len(scans)
    async with stack.stations_service.db.pool.acquire() as conn:
        signals = await conn.fetch(
            "SELECT card_code, state FROM signals WHERE site_id = $1 AND loop_id = 'R'",
            line.site_id,
        )
    # The policy retired, at once, cards EMPTY and not started: their signals withdrawn.
    retired_at_once = [r["card_code"] for r in signals if r["state"] == "WITHDRAWN"]
    retired = retired_on_scan + retired_at_once
    assert len(set(retired)) == len(retired), "a card retired twice"
    assert len(in_loop) + len(retired) == 8
    assert len(signals) == len(with_signal)


@contextlib.asynccontextmanager
async def many_trips(stack, line, trips: int, start: datetime) -> AsyncIterator[None]:
    """Loop P's card P-001 made `trips` trips, one every half second from `start`."""
    pool = stack.stations_service.db.pool
    await pool.execute(
        """INSERT INTO signals (site_id, station_id, sequence, loop_id, card_code, item_id,
                                quantity, state, raised_at, started_at, completed_at)
           SELECT $1, 'STAMP', 1000000 + n, 'P', 'P-001', 'PART', 500, 'COMPLETED',
                  $2::timestamptz + n * interval '0.5 s',
                  $2::timestamptz + n * interval '0.5 s' + interval '10 s',
                  $2::timestamptz + n * interval '0.5 s' + interval '20 s'
           FROM generate_series(1, $3) AS n""",
        line.site_id,
        start,
        trips,
    )
    try:
        yield
    finally:
        await pool.execute(
            "DELETE FROM signals WHERE site_id = $1 AND sequence > 1000000", line.site_id
        )


def analyses_of(schema: str) -> list[int]:
    """The analysis processes this machine runs now for the service of `schema`."""
    running = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"services.stations.analyst" in command and schema.encode() in command:
            running.append(int(entry.name))
    return running


# A month ago: outside the window of the analysis gauges, which run meanwhile.
LAST_MONTH = datetime(2026, 11, 1, tzinfo=UTC)


async def test_the_service_answers_at_once_while_a_long_analysis_runs(stack, line, report):
    """An analysis over many trips is seconds of CPU. It runs in a process of its own,
    so the service's other calls are answered meanwhile, not after it."""
    trips = 150_000
    async with many_trips(stack, line, trips, LAST_MONTH):
        loop = asyncio.get_running_loop()
        began = loop.time()
        analysis = asyncio.create_task(
            analyze(stack, line, LAST_MONTH, LAST_MONTH + timedelta(days=1))
        )
        # The longest wait for an answer while the analysis runs.
        longest = 0.0
        while not analysis.done():
            asked = loop.time()
            await stack.stations.GetCard(pb.GetCardRequest(site_id=line.site_id, card_code="P-002"))
            longest = max(longest, loop.time() - asked)
        result = await analysis
        analysed = loop.time() - began

    report(
        f"{trips} trips analysed in {analysed * 1000:.0f} ms; meanwhile the longest wait "
        f"for a GetCard was {longest * 1000:.1f} ms"
    )
    assert longest < analysed / 4, (longest, analysed)
    [p_loop] = [found for found in result.loops if found.loop_id == "P"]
    assert p_loop.completed_cards == trips


@contextlib.asynccontextmanager
async def schema_of_views(database_url: str) -> AsyncIterator[str]:
    """A schema of its own over stations' loops and signals (all an analysis reads),
    to tell its analysis processes from those of the analysis gauges."""
    schema = new_schema("analysis")
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        f"""CREATE SCHEMA {schema};
            CREATE VIEW {schema}.loops AS SELECT * FROM stations.loops;
            CREATE VIEW {schema}.signals AS SELECT * FROM stations.signals"""
    )
    try:
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def test_an_analysis_whose_caller_stops_waiting_is_stopped(stack, line, database_url):
    """Its process is killed before the call returns: a planner's abandoned request for
    a year of trips does not keep a core busy."""
    async with (
        schema_of_views(database_url) as schema,
        many_trips(stack, line, 150_000, LAST_MONTH),
    ):
        window = Window(LAST_MONTH, LAST_MONTH + timedelta(days=1))
        asking = asyncio.create_task(
            Analyst(database_url, schema).analyze([Question(line.site_id, window, {})])
        )

        async def started() -> bool:
            return bool(analyses_of(schema))

        assert await eventually(started)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        assert analyses_of(schema) == []


async def test_an_analysis_process_killed_midway_fails_that_analysis_only(
    stack, line, database_url
):
    async with (
        schema_of_views(database_url) as schema,
        many_trips(stack, line, 150_000, LAST_MONTH),
    ):
        analyst = Analyst(database_url, schema)
        window = Window(LAST_MONTH, LAST_MONTH + timedelta(days=1))
        asking = asyncio.create_task(analyst.analyze([Question(line.site_id, window, {})]))

        async def started() -> list[int]:
            return analyses_of(schema)

        [worker] = await eventually(started)
        os.kill(worker, signal.SIGKILL)  # as the kernel does a process out of memory
        with pytest.raises(ChildProcessError):
            await asking

        # The next analysis gets a process of its own.
        [again] = await analyst.analyze([Question(line.site_id, window, {})])
        [p_loop] = [found for found in again.loops if found.loop_id == "P"]
        assert p_loop.completed_cards == 150_000


async def test_an_analysis_raises_what_its_reading_raised(line):
    """A database that is away is the caller's to handle as always (UNAVAILABLE for a
    call, a round to retry for the gauges), not a crash of the analysis."""
    nowhere = Analyst("postgresql://postgres@localhost:1/nowhere", "stations")
    window = Window(LAST_MONTH, LAST_MONTH + timedelta(days=1))
    with pytest.raises(ConnectionRefusedError):
        await nowhere.analyze([Question(line.site_id, window, {})])
