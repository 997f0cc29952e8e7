"""Driving a gRPC method with h2load, and reading what it measured.

h2load speaks plain HTTP/2 (h2c with an http:// address): each request is a POST of
one prepared gRPC frame with gRPC's headers. It counts HTTP statuses only, and a
gRPC error still comes back as HTTP 200 with the error in the trailers: its
"succeeded" means the server answered, not that the call succeeded. For the empty
call, which cannot fail, that is enough; to count gRPC errors use a gRPC client.

Latency percentiles come from h2load's per-request log (--log-file): its summary
gives only min, max, mean and standard deviation.
"""

import math
import re
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

WARM_UP_SECONDS = 1.0
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")

_FINISHED = re.compile(r"^finished in .*?, ([\d.]+) req/s", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_REQUEST_TIMES = re.compile(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", re.MULTILINE)
_TIME = re.compile(r"^([\d.]+)(us|ms|s)$")
_MILLISECONDS_PER = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: not compressed, its length, itself."""
    return struct.pack(">BI", 0, len(message)) + message


def run(
    address: str,
    path: str,
    body: bytes,
    *,
    seconds: float,
    connections: int,
    streams: int,
    warm_up: float = WARM_UP_SECONDS,
) -> dict[str, Any]:
    """Calls `path` (/package.Service/Method) at `address` (host:port) for `seconds`
    after `warm_up`, with `streams` calls in flight on each of `connections`.
    `body` is the serialized request message; every call sends the same one."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as scratch:
        body_file = Path(scratch, "body")
        body_file.write_bytes(grpc_frame(body))
        log_file = Path(scratch, "requests.log")
        done = subprocess.run(
            [
                "h2load",
                f"--duration={_milliseconds(seconds)}ms",
                f"--warm-up-time={_milliseconds(warm_up)}ms",
                f"--clients={connections}",
                f"--max-concurrent-streams={streams}",
                f"--data={body_file}",
                *(f"--header={header}" for header in GRPC_HEADERS),
                f"--log-file={log_file}",
                f"http://{address}{path}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr or done.stdout}")
        latencies = latencies_ms(log_file.read_text().splitlines())
    return {
        **parse_summary(done.stdout),
        **latency_percentiles(latencies),
        "connections": connections,
        "streams": streams,
    }


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def parse_summary(output: str) -> dict[str, Any]:
    """Rate, request counts and the min/mean/max time for a request (ms) from h2load's
    summary. The counts are of the measured duration only, warm-up left out."""
    finished = _FINISHED.search(output)
    requests = _REQUESTS.search(output)
    times = _REQUEST_TIMES.search(output)
    if not (finished and requests and times):
        raise ValueError(f"not an h2load summary:\n{output}")
    total, _, _, succeeded, failed, _, _ = (int(n) for n in requests.groups())
    low, high, mean = (_to_ms(t) for t in times.groups())
    return {
        "rate": float(finished.group(1)),
        "requests": total,
        "succeeded": succeeded,
        # h2load's failed includes its errored and timed-out requests.
        "failed": failed,
        "min_ms": low,
        "mean_ms": mean,
        "max_ms": high,
    }


def _to_ms(text: str) -> float:
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"not an h2load time: {text!r}")
    return float(match.group(1)) * _MILLISECONDS_PER[match.group(2)]


def latencies_ms(log_lines: list[str]) -> list[float]:
    """Each answered request's time (ms) from h2load's log: lines of start time (µs
    since the epoch), HTTP status (-1 for a failed stream), duration (µs)."""
    latencies = []
    for line in log_lines:
        _, status, duration = line.split("\t")[:3]
        if status != "-1":
            latencies.append(int(duration) / 1000)
    return latencies


def latency_percentiles(latencies: list[float]) -> dict[str, float | None]:
    """p50, p95 and p99 (nearest rank) of latencies in ms; None without any."""
    ordered = sorted(latencies)
    return {
        f"p{q}_ms": ordered[math.ceil(q / 100 * len(ordered)) - 1] if ordered else None
        for q in (50, 95, 99)
    }
