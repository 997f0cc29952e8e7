"""A sizing policy's resize survives SIGKILL: each is one transaction (the resize,
its audit record, its events in the outbox, the policy marked checked), so a crash
leaves a policy either applied once, with everything that goes with it, or still
due, and applied after the restart. Never twice, never half."""

import asyncio
import random
from datetime import timedelta

import asyncpg
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from tests.conftest import Line, eventually, new_id
from tests.e2e.conftest import SETTINGS, Launcher, open_channel

LOOPS = 40
CARDS, TARGET, CONTAINER = 3, 2, 100
KILLS = 4
CONVERGE_SECONDS = 60.0


async def applied(conn: asyncpg.Connection, site_id: str) -> int:
    return await conn.fetchval(
        """SELECT count(*) FROM stations.sizing_policies
           WHERE site_id = $1 AND resized_at IS NOT NULL""",
        site_id,
    )


async def test_stations_killed_while_policies_resize_applies_each_exactly_once(
    database_url: str, tmp_path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # No policy round until the policies are all set: the first round runs at start.
    launcher = Launcher(database_url, tmp_path, {**SETTINGS, "KANBAN_SIZING_CHECK_SECONDS": "3600"})
    conn = await asyncpg.connect(database_url)
    try:
        services = await launcher.start_line()
        stations = services["stations"]
        async with open_channel(stations.address) as channel:
            stub = stations_pb2_grpc.StationsServiceStub(channel)
            line = await Line(stub, new_id("site")).create()
            loops = [f"L{n:02d}" for n in range(LOOPS)]
            for loop_id in loops:
                # Every card EMPTY and waiting: shrinking retires one at once.
                await line.create_loop(
                    loop_id, "PART", "STAMP", "WELD", CARDS, CONTAINER, pb.CARD_STATE_EMPTY
                )
                request = pb.SetSizingPolicyRequest(
                    request_id=new_id("r"),
                    site_id=line.site_id,
                    loop_id=loop_id,
                    enabled=True,
                    min_cards=TARGET,
                    max_cards=TARGET,
                )
                request.period.FromTimedelta(timedelta(days=1))
                request.window.FromTimedelta(timedelta(hours=1))
                await stub.SetSizingPolicy(request)

        # Restarted checking often, then killed while it works through the policies.
        stations.env["KANBAN_SIZING_CHECK_SECONDS"] = "0.01"
        at_kills = []
        for _ in range(KILLS):
            await stations.kill()
            await stations.start()
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            at_kills.append(await applied(conn, line.site_id))
        await stations.kill()
        await stations.start()

        async def all_applied() -> bool:
            return await applied(conn, line.site_id) == LOOPS

        assert await eventually(all_applied, timeout=CONVERGE_SECONDS)

        async with open_channel(stations.address) as channel:
            stub = stations_pb2_grpc.StationsServiceStub(channel)
            for loop_id in loops:
                found = await stub.GetLoop(pb.GetLoopRequest(site_id=line.site_id, loop_id=loop_id))
                states = sorted(pb.CardState.Name(c.state) for c in found.cards)
                assert (found.loop.target_card_count, found.loop.card_count) == (TARGET, TARGET)
                # The third retired at once (its signal withdrawn, below).
                assert states == ["CARD_STATE_EMPTY"] * TARGET

        audited = await conn.fetch(
            """SELECT target, count(*) AS n FROM stations.audit_log
               WHERE site_id = $1 AND actor = 'sizing-policy' GROUP BY target""",
            line.site_id,
        )
        assert {r["target"]: r["n"] for r in audited} == dict.fromkeys(loops, 1)
        withdrawn = await conn.fetch(
            """SELECT loop_id, count(*) AS n FROM stations.signals
               WHERE site_id = $1 AND state = 'WITHDRAWN' GROUP BY loop_id""",
            line.site_id,
        )
        assert {r["loop_id"]: r["n"] for r in withdrawn} == dict.fromkeys(loops, 1)

        # Announced: stock's supermarkets and alerts' loops have the smaller cap.
        smaller = dict.fromkeys(loops, TARGET * CONTAINER)

        async def followed() -> bool:
            stock_caps = await conn.fetch(
                "SELECT location_id, cap_units FROM stock.location_caps WHERE site_id = $1",
                line.site_id,
            )
            alerts_caps = await conn.fetch(
                "SELECT loop_id, cap_units FROM alerts.loops WHERE site_id = $1", line.site_id
            )
            in_stock = {r[0].removeprefix("SM-"): r[1] for r in stock_caps}
            in_alerts = {r[0]: r[1] for r in alerts_caps}
            return all({k: caps.get(k) for k in loops} == smaller for caps in (in_stock, in_alerts))

        assert await eventually(followed, timeout=CONVERGE_SECONDS)
    finally:
        await conn.close()
        await launcher.close()
    print(
        f"\nsizing policies: seed={seed} loops={LOOPS}, stations SIGKILLed {KILLS} times "
        f"with {at_kills} policies applied just before each kill; each applied once"
    )
