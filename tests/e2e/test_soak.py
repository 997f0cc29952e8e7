"""`make soak` in small, in `make test`: the same code (tools/soak) for about half a
minute at a modest rate. It asserts what must hold on any machine (work was done,
no call failed, every invariant held) and reports the figures without judging
them: a slow machine makes them worse, never red."""

import asyncio
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

from services.devstack.processes import ROOT
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


# Starts a process of its own as the soak and the bench start services, and stops it
# on the way out; prints its pid once it runs.
STOPPABLE_RUN = """
import asyncio
from tools.soak.__main__ import run_stoppable

async def work():
    # Not on the run's pipes: the test reads them to their end.
    child = await asyncio.create_subprocess_exec(
        "sleep", "600", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        print(child.pid, flush=True)
        await asyncio.sleep(600)
    finally:
        child.terminate()
        await child.wait()

run_stoppable(work())
"""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # dead, waiting for a parent that may never reap it


async def test_sigterm_stops_a_run_and_the_processes_it_started():
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STOPPABLE_RUN, cwd=ROOT, stdout=PIPE, stderr=PIPE
    )
    assert run.stdout is not None
    child = int(await asyncio.wait_for(run.stdout.readline(), 30))
    assert not gone(child)

    run.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(run.communicate(), 30)

    assert run.returncode == 1
    assert b"stopped (SIGTERM)" in stderr
    assert gone(child)
