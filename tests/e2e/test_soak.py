"""`make soak` in small, in `make test`: the same code (tools/soak) for about half a
minute at a modest rate. It asserts what must hold on any machine (work was done,
no call failed, every invariant held) and reports the figures without judging
them: a slow machine makes them worse, never red."""

from tools.soak.line import Options
from tools.soak.run import soak

SHORT = Options(
    minutes=0.4,
    rate=15,
    terminals=12,
    stations=5,
    loops=8,
    cards=3,
    watchers=1,
    interval=3,
    reconnect_seconds=6,
)


async def test_a_short_soak_keeps_every_invariant(database_url, tmp_path, report):
    result = await soak(SHORT, database_url, tmp_path)
    report(result.summary())
    done = {d.rpc for d in result.done}
    assert {"ScanCard", "StartSignal", "CompleteCard"} <= done, done
    assert result.compared > 0, [(check.name, check.compared) for check in result.checks]
    assert not result.errors, result.errors[:10]
    assert not result.violations, result.violations[:10]
