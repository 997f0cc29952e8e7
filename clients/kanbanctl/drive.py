"""`kanbanctl simulate --drive`: plays a simulated run against the real stations
service, as the station terminals would, in real time or faster (`speed`).

The site must be the layout's, already applied (`kanbanctl apply`), with every
card of each loop FULL, as the simulation starts. Each simulated card is played by
the site's card of the same rank (card codes in order). When a consumer takes a full
container it scans the card (ScanCard); the supplier starts it (StartSignal) and
completes it full with a lot of its own (CompleteCard, the container quantity).
Customer orders at the pacemaker are simulated but not sent to the orders service:
the pacemaker's consumption shows as its scans.
"""

import asyncio
import uuid
from collections.abc import Sequence
from typing import TextIO

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from clients.kanbanctl.simulate import Action, LineModel, SimulationError


async def card_codes(
    stub: stations_pb2_grpc.StationsServiceStub, model: LineModel
) -> dict[tuple[str, str], str]:
    """The site's card for each simulated one; SimulationError if the site is not the
    model's line with every card FULL."""
    codes: dict[tuple[str, str], str] = {}
    for loop in model.loops:
        try:
            found = await stub.GetLoop(
                pb.GetLoopRequest(site_id=model.site_id, loop_id=loop.loop_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise SimulationError(
                    f"loop {loop.loop_id}: not on site {model.site_id}; kanbanctl apply the layout"
                ) from error
            raise
        cards = sorted(
            (c for c in found.cards if c.state != pb.CARD_STATE_RETIRED), key=lambda c: c.card_code
        )
        if (
            found.loop.container_quantity != loop.container_quantity
            or len(cards) != loop.card_count
        ):
            raise SimulationError(
                f"loop {loop.loop_id}: the site has {len(cards)} cards of"
                f" {found.loop.container_quantity}, the simulation {loop.card_count} of"
                f" {loop.container_quantity}"
            )
        not_full = [c.card_code for c in cards if c.state != pb.CARD_STATE_FULL]
        if not_full:
            raise SimulationError(
                f"loop {loop.loop_id}: cards {', '.join(not_full)} are not FULL; the"
                " simulation starts with every card full"
            )
        for simulated, card in zip(loop.card_codes(), cards, strict=True):
            codes[(loop.loop_id, simulated)] = card.card_code
    return codes


async def drive(
    channel: grpc.aio.Channel,
    model: LineModel,
    actions: Sequence[Action],
    speed: float,
    out: TextIO,
) -> None:
    """Sends each action when its simulated time, divided by `speed`, has come."""
    if speed <= 0:
        raise SimulationError("--speed: must be above 0")
    stub = stations_pb2_grpc.StationsServiceStub(channel)
    codes = await card_codes(stub, model)
    clock = asyncio.get_running_loop().time
    started = clock()
    run = uuid.uuid4().hex[:8]
    calls = dict.fromkeys(("scan", "start", "complete"), 0)
    for action in actions:
        delay = started + action.at_seconds / speed - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        code = codes[(action.loop_id, action.card_code)]
        card = {
            "request_id": f"sim-{run}-{sum(calls.values()) + 1}",
            "site_id": model.site_id,
            "station_id": action.station_id,
            "card_code": code,
        }
        if action.kind == "scan":
            await stub.ScanCard(pb.ScanCardRequest(**card))
        elif action.kind == "start":
            await stub.StartSignal(pb.StartSignalRequest(**card))
        else:
            lot_id = f"SIM-{run}-{calls['complete'] + 1}"
            await stub.CompleteCard(
                pb.CompleteCardRequest(**card, lot_id=lot_id, quantity=action.quantity)
            )
        calls[action.kind] += 1
        print(f"{_clock(action.at_seconds)} {action.kind:<8} {action.station_id} {code}", file=out)
    print(
        "drove {scan} scans, {start} starts, {complete} completions".format(**calls),
        file=out,
    )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:03d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
