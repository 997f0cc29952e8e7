"""`make bench`: scans and completes per second at saturation, their latency at 25%,
50% and 90% of it, and the time from a scan to its signal on the supplier's stream,
with the CPU and peak memory of each service; then, with the stack stopped, the same
scan on a bare prototype and two more ceilings (an empty gRPC call, the scan's SQL
alone). The headline is our scan as a ratio of each.

The four services run as processes with authentication on and INFO logs, as in
production, on DATABASE_URL if set, else an embedded PostgreSQL (pgserver) in a
temporary directory, deleted afterwards. k6 drives them from a process of its own;
a third process watches the supplier stations' signals. Service logs are in
OUT/logs/. The exit status is 1 if any call failed. Ctrl-C or SIGTERM stops the run
and every process it started.
"""

import argparse
import dataclasses
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.devstack.processes import ROOT
from tools.bench.report import plot, render
from tools.bench.run import Options, bench
from tools.soak.__main__ import database, run_stoppable


def main(argv: list[str] | None = None) -> None:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--seconds", type=float, default=defaults.seconds, help="length of each phase")
    add("--vus", type=int, default=defaults.vus, help="calls in flight at saturation")
    add("--out", type=Path, default=ROOT / "var" / "bench", help="where results and logs go")
    add("--json", type=Path, help="the results (default OUT/bench-<UTC time>.json)")
    add("--png", type=Path, help="the plot (default OUT/bench-<UTC time>.png)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.vus < 1:
        parser.error("--seconds must be positive and --vus at least 1")
    measured_at = datetime.now(UTC)
    stamp = measured_at.strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or out / f"bench-{stamp}.json"
    png_path = args.png or out / f"bench-{stamp}.png"

    options = Options(seconds=args.seconds, vus=args.vus)
    with database() as url:
        result = run_stoppable(bench(options, url, out, lambda line: print(line, flush=True)))
    print(render(result), flush=True)
    figures = {"measured_at": measured_at.isoformat(), **dataclasses.asdict(result)}
    json_path.write_text(json.dumps(figures, indent=2) + "\n")
    plot(result, png_path)
    for written, latest in ((json_path, out / "latest.json"), (png_path, out / "latest.png")):
        if written.resolve() != latest.resolve():
            shutil.copyfile(written, latest)
    print(f"\nresults  {json_path} (and {out / 'latest.json'})")
    print(f"plot     {png_path} (and {out / 'latest.png'})")
    failed = sum(phase.failed for phase in result.phases)
    if failed:
        sys.exit(f"{failed} calls failed: the figures are not of a healthy stack; see {out}/logs")


if __name__ == "__main__":
    main()
