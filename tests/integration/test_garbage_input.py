"""Every RPC, fed random garbage: each answer is a deliberate status, never INTERNAL."""

import asyncio
import random

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from kanban.alerts.v1 import alerts_pb2
from kanban.stations.v1 import stations_pb2
from kanban.stock.v1 import stock_pb2

REQUESTS_PER_RPC = 40
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}
STRINGS = [
    "",
    " ",
    "P-001",
    "WELD",
    "STAMP",
    "a" * 65,
    "Ж" * 300,
    "\x00",
    "x\ny",
    "💥",
    "-1",
    "A" * 100_000,
    "'; DROP TABLE cards;--",
    "%s",
    "../../etc",
]
INTS = [0, 1, -1, 500, 501, 2**31 - 1, -(2**31), 2**62, -(2**62)]


def garbage(message_type, rng: random.Random, site_id: str):
    message = message_type()
    for field in message_type.DESCRIPTOR.fields:
        if field.name == "site_id" and rng.random() < 0.7:
            setattr(message, field.name, site_id)  # reach past the site lookup, often
        elif field.type == FieldDescriptor.TYPE_STRING:
            setattr(message, field.name, rng.choice(STRINGS))
        elif field.type == FieldDescriptor.TYPE_BOOL:
            setattr(message, field.name, rng.random() < 0.5)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            setattr(message, field.name, rng.choice([0, 1, 2, 3, 99, -5]))
        elif field.type == FieldDescriptor.TYPE_DOUBLE:
            setattr(message, field.name, rng.choice([0.0, -1.0, 0.5, 1e308, float("nan")]))
        elif field.type in (FieldDescriptor.TYPE_INT32,):
            setattr(message, field.name, rng.choice([i for i in INTS if abs(i) < 2**31]))
        elif field.type == FieldDescriptor.TYPE_INT64:
            setattr(message, field.name, rng.choice(INTS))
    return message


def rpcs(module, service_name):
    service = module.DESCRIPTOR.services_by_name[service_name]
    return [(service_name, method) for method in service.methods]


@pytest.mark.parametrize(
    ("service_name", "method"),
    rpcs(stations_pb2, "StationsService")
    + rpcs(stock_pb2, "StockService")
    + rpcs(alerts_pb2, "AlertsService"),
    ids=lambda value: getattr(value, "name", value),
)
async def test_garbage_gets_a_deliberate_status(stack, line, service_name, method):
    stub, module = {
        "StationsService": (stack.stations, stations_pb2),
        "StockService": (stack.stock, stock_pb2),
        "AlertsService": (stack.alerts, alerts_pb2),
    }[service_name]
    request_type = getattr(module, method.input_type.name)
    rng = random.Random(method.name)
    seen: dict[grpc.StatusCode, int] = {}
    for _ in range(REQUESTS_PER_RPC):
        request = garbage(request_type, rng, line.site_id)
        call = getattr(stub, method.name)(request, timeout=30)
        try:
            if method.server_streaming:
                async with asyncio.timeout(5):
                    await call.read()
                call.cancel()
            else:
                await call
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            code = error.code()
        seen[code] = seen.get(code, 0) + 1
        assert code in DELIBERATE, f"{method.name}({request}) -> {code}"
    assert set(seen) - {grpc.StatusCode.OK}, f"{method.name}: garbage was never refused"
