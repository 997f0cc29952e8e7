"""A bounded soak: the four services as processes, a line of many stations and loops,
many terminals connected, and a steady rate of work for minutes. It prints, per
interval, the services' memory and open file descriptors, the operations' latency
and the time from a scan to the supplier's terminals showing it; then a verdict on
memory and latency over the run, and the invariants checked at the end.

PostgreSQL is DATABASE_URL if set, else an embedded one (pgserver) in a temporary
directory, deleted afterwards. Service logs are in var/soak/. The exit status is 1
if an invariant was violated, an operation or stream failed, or a service's memory
grew grossly (by more than half). Ctrl-C or SIGTERM stops the run and every process
it started.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from services.devstack.processes import ROOT
from tools.soak.line import Options
from tools.soak.run import soak
from tools.soak.verdict import figures, render

SAMPLES_AT_LEAST = 8  # two per quarter: the trends compare quarters

T = TypeVar("T")


def parse(argv: list[str] | None) -> tuple[Options, Path | None]:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--minutes", type=float, default=defaults.minutes, help="how long the load runs")
    add("--rate", type=float, default=defaults.rate, help="operations per second, steady")
    add("--terminals", type=int, default=defaults.terminals, help="WatchSignals streams")
    add("--stations", type=int, default=defaults.stations, help="stations in the line")
    add("--loops", type=int, default=defaults.loops, help="kanban loops")
    add("--cards", type=int, default=defaults.cards, help="cards per loop")
    add("--watchers", type=int, default=defaults.watchers, help="WatchOrders and WatchAlerts each")
    add("--interval", type=float, default=defaults.interval, help="seconds between samples")
    add(
        "--reconnect-seconds",
        type=float,
        default=defaults.reconnect_seconds,
        help="streams reconnect from their cursor every 0.5 to 1.5 times this",
    )
    add("--seed", type=int, default=defaults.seed, help="of the choice of operations")
    add("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.stations < 2 or args.terminals < args.stations or args.loops < 1 or args.cards < 1:
        parser.error("at least 2 stations, a terminal per station, a loop and a card per loop")
    if min(args.minutes, args.rate, args.interval, args.reconnect_seconds) <= 0:
        parser.error("--minutes, --rate, --interval and --reconnect-seconds must be positive")
    if args.minutes * 60 < SAMPLES_AT_LEAST * args.interval:
        parser.error(f"a run needs at least {SAMPLES_AT_LEAST} intervals: shorten --interval")
    json_path = args.json
    del args.json
    return Options(**vars(args)), json_path


@contextlib.contextmanager
def database() -> Iterator[str]:
    """DATABASE_URL, or an embedded PostgreSQL in a temporary directory, deleted after."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    # platformdirs, under pgserver, warns of a variable it does not need.
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    import pgserver

    server = pgserver.get_server(tempfile.mkdtemp(prefix="kanban-soak-"), cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def run_stoppable(work: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, except that SIGTERM stops the run as Ctrl-C does: the processes it
    started are stopped on the way out, not left running on the machine's cores. Exits
    with a message then."""

    async def stoppable() -> T:
        main_task = asyncio.current_task()
        assert main_task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        return await work

    try:
        return asyncio.run(stoppable())
    except asyncio.CancelledError:
        sys.exit("stopped (SIGTERM): the processes it started are stopped")


def main(argv: list[str] | None = None) -> None:
    options, json_path = parse(argv)
    log_dir = ROOT / "var" / "soak"
    log_dir.mkdir(parents=True, exist_ok=True)
    with database() as url:
        result = run_stoppable(soak(options, url, log_dir, lambda line: print(line, flush=True)))
    print(render(result), flush=True)
    if json_path:
        json_path.write_text(json.dumps(figures(result), indent=2) + "\n")
        print(f"figures     {json_path}")
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
