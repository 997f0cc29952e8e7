"""The line's analysis, worked out in a process of its own.

An analysis reads every trip of its window and goes over each several times: a day
of a plant scanning once a second is 86,400 trips and about a second of CPU, a
year's window minutes. In the service's event loop that second would stall every
scan, every signal on its way to a terminal and every probe. So analyses run as
`python -m services.stations.analyst SCHEMA`, which reads the trips from the
database itself: only the questions and the answers (a few figures per loop and
station) cross between the processes, pickled, both ends being this code.
"""

import asyncio
import pickle
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.core.db import APPLICATION_PREFIX
from services.stations import analytics, storage
from services.stations.analytics import LineAnalysis, Safety, Window

# Where `-m services.stations.analyst` is found.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Question:
    """One site's line over a window; only one loop of it, if `loop_id` is set."""

    site_id: str
    window: Window
    safeties: Mapping[str, Safety]
    default_safety: Safety = analytics.NO_SAFETY
    loop_id: str = ""


class Analyst:
    """Analyses sites' lines over windows: one batch of questions at a time, each
    batch in a process that is killed if its caller stops waiting (a deadline, a
    cancelled call, the service's shutdown cancelling its background work)."""

    def __init__(self, database_url: str, schema: str) -> None:
        self._database_url = database_url
        self._schema = schema
        # One at a time: an analysis takes a core while it runs, and the scans need
        # the others.
        self._one_at_a_time = asyncio.Semaphore(1)

    async def analyze(self, questions: Sequence[Question]) -> list[LineAnalysis]:
        """The answers, in order, as the database holds the trips when the analysis
        reads them. A batch pays for one process start (a tenth of a second)."""
        if not questions:
            return []
        # The URL on standard input, not the command line: it may hold a password.
        batch = (self._database_url, list(questions))
        async with self._one_at_a_time:
            # subprocess's Popen, not asyncio's (uvloop's): it starts the process with
            # vfork, where a fork would have gRPC log a warning amid the JSON logs.
            worker = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", __name__, self._schema],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            try:
                answers, _ = await asyncio.to_thread(worker.communicate, pickle.dumps(batch))
            finally:
                if worker.poll() is None:  # the caller stopped waiting
                    worker.kill()
                    await asyncio.to_thread(worker.wait)
        if worker.returncode != 0:
            # Killed, say for memory: a failure of this round, as a database outage
            # would be, and the next round starts a new process.
            raise ChildProcessError(f"the analysis process ended with status {worker.returncode}")
        found: list[LineAnalysis] | Exception = pickle.loads(answers)
        if isinstance(found, Exception):
            raise found
        return found


async def answer_all(
    database_url: str, schema: str, questions: list[Question]
) -> list[LineAnalysis]:
    conn = await asyncpg.connect(
        database_url,
        server_settings={
            "search_path": schema,
            "application_name": f"{APPLICATION_PREFIX}{schema}-analyst",
        },
    )
    try:
        return [await _answer(conn, question) for question in questions]
    finally:
        await conn.close()


async def _answer(conn: asyncpg.Connection, question: Question) -> LineAnalysis:
    window = question.window
    # One snapshot: the loops' cards and their trips as of one moment.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        shapes = await storage.loop_shapes(conn, question.site_id)
        trips = await storage.card_trips(
            conn, question.site_id, window.start, window.end, question.loop_id
        )
    if question.loop_id:
        shapes = [shape for shape in shapes if shape.loop_id == question.loop_id]
    return analytics.analyze_line(shapes, trips, window, question.safeties, question.default_safety)


if __name__ == "__main__":
    database_url, questions = pickle.load(sys.stdin.buffer)
    outcome: list[LineAnalysis] | Exception
    try:
        outcome = asyncio.run(answer_all(database_url, sys.argv[1], questions))
    except Exception as error:
        # Raised again by the service, as if it had read the trips itself: a database
        # that is away answers UNAVAILABLE, and a failed round of the gauges is retried.
        outcome = error
    pickle.dump(outcome, sys.stdout.buffer)
