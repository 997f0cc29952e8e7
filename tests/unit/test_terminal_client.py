"""The terminal's calls: sent again as they were while the service is unreachable."""

from typing import Any

import grpc
import pytest

from clients.terminal.client import Refused, StationClient


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")


class FlakyScan:
    """Fails with the given codes, then answers; records every request it got."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.requests: list[Any] = []

    async def __call__(self, request: Any, timeout: float) -> str:
        self.requests.append(request)
        if self.codes:
            raise failure(self.codes.pop(0))
        return "scanned"


def station_client(scan: FlakyScan, retries: list[None]) -> StationClient:
    # Nothing listens there: the stub's ScanCard is replaced, no call leaves.
    station = StationClient("localhost:1", "", "PLANT1", "WELD", lambda: retries.append(None))
    station._stub.ScanCard = scan
    return station


async def test_a_change_is_retried_with_the_same_request_id():
    scan = FlakyScan(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    retries: list[None] = []
    station = station_client(scan, retries)
    try:
        assert await station.scan("P-001", "WELD-r1") == "scanned"
    finally:
        await station.close()
    assert [r.request_id for r in scan.requests] == ["WELD-r1"] * 3
    assert len(retries) == 2


async def test_a_refusal_is_not_retried():
    scan = FlakyScan(grpc.StatusCode.PERMISSION_DENIED)
    station = station_client(scan, [])
    try:
        with pytest.raises(Refused) as refused:
            await station.scan("P-001", "WELD-r1")
    finally:
        await station.close()
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert len(scan.requests) == 1
