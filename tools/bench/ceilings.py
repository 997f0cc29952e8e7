"""Ceilings the scan benchmark reports our service against, each printed as one JSON
object: {"rate", "p50_ms", "p95_ms", "p99_ms", "requests", "failed", "connections",
"streams"} (rate in calls per second, counting those that succeeded).

    python -m tools.bench.ceilings empty --seconds S [--connections C --streams M]

An empty grpc.aio unary call (tools.bench.bare --empty, started here on a free
port), driven by h2load with M calls in flight on each of C connections.

    python -m tools.bench.ceilings sql --database-url URL --site-id SITE --cards FILE
        --seconds S [--concurrency N] [--schema stations]

The scan's SQL alone (tools.bench.scan_sql), N scans at a time through an asyncpg
pool of N connections, until the cards run out or S seconds pass. FILE holds a JSON
list of {"card_code": ..., "station_id": ...}: FULL cards, each with its loop's
consumer station, each scanned once. Reported with connections N, streams 1.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from services.devstack.processes import ROOT, free_port, wait_until_serving
from tools.bench import bare, h2load, scan_sql

STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
REPORTED = ("rate", "p50_ms", "p95_ms", "p99_ms", "requests", "failed", "connections", "streams")


@dataclass(frozen=True)
class CardToScan:
    card_code: str
    station_id: str


def empty_ceiling(seconds: float, connections: int, streams: int) -> dict[str, Any]:
    """The empty call's rate and latencies, on a server started for it and stopped after."""
    port = free_port()
    address = f"localhost:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tools.bench.bare", "--empty", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_until_serving(address, STARTUP_SECONDS, lambda: server.poll() is None))
        measured = h2load.run(
            address,
            bare.EMPTY_PATH,
            b"",
            seconds=seconds,
            connections=connections,
            streams=streams,
        )
    finally:
        server.terminate()
        server.wait(STOP_SECONDS)
    return {key: measured[key] for key in REPORTED}


def read_cards(path: Path) -> list[CardToScan]:
    return [CardToScan(c["card_code"], c["station_id"]) for c in json.loads(path.read_text())]


async def sql_ceiling(
    database_url: str,
    site_id: str,
    cards: list[CardToScan],
    *,
    seconds: float,
    concurrency: int,
    schema: str = "stations",
) -> dict[str, Any]:
    """Scans the cards, `concurrency` at a time, each on a connection of its own from
    the pool, until they run out or `seconds` pass."""
    pool = await bare.open_pool(database_url, schema, concurrency)
    # Shared by the workers: each card is scanned once.
    to_scan = iter(cards)
    latencies: list[float] = []
    refused = 0

    async def worker(deadline: float) -> None:
        nonlocal refused
        for card in to_scan:
            started = time.perf_counter()
            if started >= deadline:
                return
            try:
                async with pool.acquire() as conn:
                    await scan_sql.scan(
                        conn, site_id, card.station_id, card.card_code, str(uuid.uuid4())
                    )
            except scan_sql.Refusal:
                refused += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    try:
        began = time.perf_counter()
        await asyncio.gather(*(worker(began + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    finally:
        await pool.close()
    if elapsed < seconds:
        print(
            f"sql ceiling: the {len(cards)} cards ran out after {elapsed:.1f} s of {seconds} s",
            file=sys.stderr,
        )
    return {
        "rate": len(latencies) / elapsed,
        **h2load.latency_percentiles(latencies),
        "requests": len(latencies) + refused,
        "failed": refused,
        "connections": concurrency,
        "streams": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.ceilings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ceilings = parser.add_subparsers(dest="ceiling", required=True)
    empty = ceilings.add_parser("empty", help="an empty grpc.aio unary call, driven by h2load")
    empty.add_argument("--seconds", type=float, required=True)
    empty.add_argument("--connections", type=int, default=4)
    empty.add_argument("--streams", type=int, default=16, help="in flight per connection")
    sql = ceilings.add_parser("sql", help="the scan's SQL alone, through asyncpg")
    sql.add_argument("--database-url", required=True)
    sql.add_argument("--site-id", required=True)
    sql.add_argument("--cards", type=Path, required=True, help="JSON list of card and station")
    sql.add_argument("--seconds", type=float, required=True)
    sql.add_argument("--concurrency", type=int, default=16)
    sql.add_argument("--schema", default="stations")
    args = parser.parse_args()
    if args.ceiling == "empty":
        measured = empty_ceiling(args.seconds, args.connections, args.streams)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            measured = runner.run(
                sql_ceiling(
                    args.database_url,
                    args.site_id,
                    read_cards(args.cards),
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                    schema=args.schema,
                )
            )
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
