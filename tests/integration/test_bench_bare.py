"""The benchmark's bare scan (tools/bench/scan_sql.py) does what the real scan does:
the same rows written, the same refusals, on the same database."""

import grpc
import pytest
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.stations.domain import INVALID_CARD_STATE, WRONG_STATION
from tests.conftest import eventually, new_id, refused, stock_by_lot
from tools.bench import bare, scan_sql


async def bare_scan(stack, line, station: str, card: str, request_id: str | None = None):
    async with stack.stations_service.db.pool.acquire() as conn:
        return await scan_sql.scan(conn, line.site_id, station, card, request_id or new_id("r"))


async def rows(stack, sql: str, *args) -> list[dict[str, object]]:
    async with stack.stations_service.db.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


def without(row: dict[str, object], *names: str) -> dict[str, object]:
    return {k: v for k, v in row.items() if k not in names}


async def test_a_bare_scan_writes_what_a_real_scan_writes(stack, line):
    real = await line.scan("WELD", "P-001")
    scanned = await bare_scan(stack, line, "WELD", "P-002")
    # Between two real scans: one numbering of the supplier's signals.
    after = await line.scan("WELD", "P-003")
    assert (real.signal.sequence, scanned.sequence, after.signal.sequence) == (1, 2, 3)

    cards = await rows(
        stack,
        "SELECT * FROM cards WHERE site_id = $1 AND card_code IN ('P-001', 'P-002')"
        " ORDER BY card_code",
        line.site_id,
    )
    assert [c["state"] for c in cards] == ["EMPTY", "EMPTY"]
    assert without(cards[0], "card_code", "updated_at", "emptied_at") == without(
        cards[1], "card_code", "updated_at", "emptied_at"
    )
    signals = await rows(
        stack,
        "SELECT * FROM signals WHERE site_id = $1 AND sequence IN (1, 2) ORDER BY sequence",
        line.site_id,
    )
    assert [(s["station_id"], s["card_code"], s["state"]) for s in signals] == [
        ("STAMP", "P-001", "OPEN"),
        ("STAMP", "P-002", "OPEN"),
    ]
    assert without(signals[0], "card_code", "sequence", "raised_at") == without(
        signals[1], "card_code", "sequence", "raised_at"
    )
    events = await rows(
        stack,
        """SELECT destination, event_type, payload::jsonb - 'card_code' AS payload FROM outbox
           WHERE site_id = $1 AND payload->>'card_code' IN ('P-001', 'P-002')
           ORDER BY payload->>'card_code', destination""",
        line.site_id,
    )
    assert [e["destination"] for e in events] == ["alerts", "stock", "alerts", "stock"]
    assert events[:2] == events[2:]


async def test_stock_applies_a_bare_scans_event(stack, line):
    await bare_scan(stack, line, "WELD", "P-001")

    expected = {"P-OPENING": 1000}
    held = await eventually(lambda: _is(stock_by_lot(stack.stock, line.site_id, "SM-P"), expected))
    assert held == expected


async def _is(levels, expected):
    value = await levels
    return value if value == expected else None


async def test_a_bare_scan_is_refused_where_a_real_one_is_and_keeps_nothing(stack, line):
    await bare_scan(stack, line, "WELD", "P-001")

    with pytest.raises(scan_sql.Refusal) as again:
        await bare_scan(stack, line, "WELD", "P-001")
    real = await refused(line.scan("WELD", "P-001"))
    assert again.value.reason == real.reason == INVALID_CARD_STATE

    request_id = new_id("r")
    with pytest.raises(scan_sql.Refusal) as elsewhere:
        await bare_scan(stack, line, "ASSY", "P-002", request_id)
    assert elsewhere.value.reason == WRONG_STATION
    assert not await rows(stack, "SELECT 1 FROM request_log WHERE request_id = $1", request_id), (
        "a refused scan's claim on its request id rolls back"
    )

    await bare_scan(stack, line, "WELD", "P-002", request_id)
    with pytest.raises(scan_sql.Refusal) as retried:
        await bare_scan(stack, line, "WELD", "P-003", request_id)
    assert retried.value.reason == "REQUEST_SEEN"


async def test_the_bare_server_answers_scans_as_the_real_one(stack, line):
    server, port = await bare.start_server(0, stack.stations_service.db.pool)
    try:
        async with grpc.aio.insecure_channel(f"localhost:{port}") as channel:
            stub = stations_pb2_grpc.StationsServiceStub(channel)
            request = pb.ScanCardRequest(
                request_id=new_id("r"), site_id=line.site_id, station_id="WELD", card_code="P-001"
            )
            answer = await stub.ScanCard(request)
            assert (answer.card.card_code, answer.card.state) == ("P-001", pb.CARD_STATE_EMPTY)
            assert (answer.signal.station_id, answer.signal.sequence) == ("STAMP", 1)
            assert answer.signal.quantity == 500

            request.request_id = new_id("r")
            again = await refused(stub.ScanCard(request))
            assert again.code == grpc.StatusCode.FAILED_PRECONDITION

            other = await refused(stub.GetCard(pb.GetCardRequest(site_id=line.site_id)))
            assert other.code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
