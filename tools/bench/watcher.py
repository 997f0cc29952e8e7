"""The supplier stations' terminals, as a process of its own so that reading the
streams shares no interpreter with anything else.

    python -m tools.bench.watcher --address HOST:PORT --token T --site SITE \\
        --stations S01,S02,... --out FILE

Opens WatchSignals for every station, each on a connection of its own as a terminal
has, and notes the wall-clock time (time.time()) each signal arrives. Prints "ready"
once every stream has sent something (its first heartbeat at the latest), so no
signal raised after that is missed. On SIGTERM it writes {card code: arrival} of
the first signal of each card to FILE and exits.
"""

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import uvloop
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core import client

# gRPC shares one connection among a process's channels to the same address.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def watch(
    stub: Any, site_id: str, station_id: str, arrivals: dict[str, float], heard: asyncio.Event
) -> None:
    request = pb.WatchSignalsRequest(site_id=site_id, station_id=station_id)
    async for message in stub.WatchSignals(request):
        arrived = time.time()
        heard.set()
        if message.WhichOneof("message") == "signal":
            arrivals.setdefault(message.signal.card_code, arrived)


async def main(args: argparse.Namespace) -> None:
    stations = args.stations.split(",")
    arrivals: dict[str, float] = {}
    channels = [client.channel(args.address, args.token, options=OWN_CONNECTION) for _ in stations]
    heard = {station: asyncio.Event() for station in stations}
    streams = [
        asyncio.ensure_future(
            watch(
                stations_pb2_grpc.StationsServiceStub(channel),
                args.site,
                station,
                arrivals,
                heard[station],
            )
        )
        for channel, station in zip(channels, stations, strict=True)
    ]
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await asyncio.gather(*(event.wait() for event in heard.values()))
    print("ready", flush=True)
    await stopping.wait()
    failed = [stream for stream in streams if stream.done()]
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    await asyncio.gather(*(channel.close() for channel in channels))
    args.out.write_text(json.dumps(arrivals))
    if failed:
        raise SystemExit(f"{len(failed)} stream(s) ended early: {failed[0].exception()!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tools.bench.watcher", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--stations", required=True, help="comma-separated station ids")
    parser.add_argument("--out", type=Path, required=True)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
