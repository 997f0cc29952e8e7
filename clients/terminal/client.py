"""The terminal's calls to the stations service.

Every call is sent again while the service is unreachable, as the very same
request: a change carries one request id through all its attempts, so the
service acts on it once however many attempts reach it.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core import client

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CALL_TIMEOUT_SECONDS = 5.0
# How long one scan keeps trying before the operator is told to scan again.
GIVE_UP_SECONDS = 30.0
# The stream sends a heartbeat every few seconds (5 by default); this long
# without anything means the connection died without the peer saying so.
SILENCE_SECONDS = 30.0
# gRPC waits up to two minutes between reconnection attempts by default; a
# terminal on the floor should be back within seconds of the service.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
]


class Refused(Exception):
    """The service said no, or could not be reached: the status code and the
    google.rpc ErrorInfo reason, if it gave one."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


def _refused(error: grpc.aio.AioRpcError) -> Refused:
    reason = ""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw:
        for detail in status_pb2.Status.FromString(raw).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
    return Refused(error.code(), reason, error.details() or "")


class StationClient:
    """One station's calls; `on_retry` is told each time a call is sent again."""

    def __init__(
        self,
        address: str,
        token: str,
        site_id: str,
        station_id: str,
        on_retry: Callable[[], None],
    ) -> None:
        self._channel = client.channel(address, token, options=CHANNEL_OPTIONS)
        self._stub = stations_pb2_grpc.StationsServiceStub(self._channel)
        self._site = site_id
        self._station = station_id
        self._on_retry = on_retry

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + GIVE_UP_SECONDS
        pause = 0.2
        while True:
            try:
                return await method(request, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE or loop.time() + pause > give_up_at:
                    raise _refused(error) from error
            self._on_retry()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def card(self, card_code: str) -> Any:
        request = pb.GetCardRequest(site_id=self._site, card_code=card_code)
        return (await self._call(self._stub.GetCard, request)).card

    async def loop(self, loop_id: str) -> Any:
        """The loop and its cards (a GetLoopResponse)."""
        request = pb.GetLoopRequest(site_id=self._site, loop_id=loop_id)
        return await self._call(self._stub.GetLoop, request)

    async def board(self) -> Any:
        return await self._call(self._stub.GetBoard, pb.GetBoardRequest(site_id=self._site))

    async def scan(self, card_code: str, request_id: str) -> Any:
        request = pb.ScanCardRequest(
            request_id=request_id,
            site_id=self._site,
            station_id=self._station,
            card_code=card_code,
        )
        return await self._call(self._stub.ScanCard, request)

    async def start_signal(self, card_code: str, request_id: str) -> Any:
        request = pb.StartSignalRequest(
            request_id=request_id,
            site_id=self._site,
            station_id=self._station,
            card_code=card_code,
        )
        return await self._call(self._stub.StartSignal, request)

    async def complete_card(
        self, card_code: str, lot_id: str, quantity: int, request_id: str
    ) -> Any:
        request = pb.CompleteCardRequest(
            request_id=request_id,
            site_id=self._site,
            station_id=self._station,
            card_code=card_code,
            lot_id=lot_id,
            quantity=quantity,
        )
        return await self._call(self._stub.CompleteCard, request)

    async def start_instruction(self, instruction_id: str, request_id: str) -> Any:
        request = pb.StartInstructionRequest(
            request_id=request_id,
            site_id=self._site,
            station_id=self._station,
            instruction_id=instruction_id,
        )
        return (await self._call(self._stub.StartInstruction, request)).instruction

    async def complete_instruction(
        self, instruction_id: str, lot_id: str, quantity: int, request_id: str
    ) -> Any:
        request = pb.CompleteInstructionRequest(
            request_id=request_id,
            site_id=self._site,
            station_id=self._station,
            instruction_id=instruction_id,
            lot_id=lot_id,
            quantity=quantity,
        )
        return (await self._call(self._stub.CompleteInstruction, request)).instruction

    async def watch(self, after_sequence: int) -> AsyncIterator[Any]:
        """The station's stream from the cursor on. Ends when the service closes it
        (it does at shutdown); raises Refused when it breaks or falls silent."""
        call = self._stub.WatchSignals(
            pb.WatchSignalsRequest(
                site_id=self._site, station_id=self._station, after_sequence=after_sequence
            )
        )
        try:
            while True:
                message = await asyncio.wait_for(call.read(), SILENCE_SECONDS)
                if message is grpc.aio.EOF:
                    return
                yield message
        except grpc.aio.AioRpcError as error:
            raise _refused(error) from error
        except TimeoutError as silent:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "", "the stream fell silent") from silent
        finally:
            call.cancel()
