"""An example ERP client of the orders service: create, change, cancel and follow orders.

    .venv/bin/python examples/erp_client.py create ORD-1001 --item CHASSIS --quantity 30 \\
        --due 2026-12-01T14:00:00Z --priority 5 --release
    .venv/bin/python examples/erp_client.py change ORD-1001 --quantity 20
    .venv/bin/python examples/erp_client.py cancel ORD-1001 --reason "customer cancelled"
    .venv/bin/python examples/erp_client.py follow --until-done ORD-1001

Each change uses a request id derived from what it asks (the order, the action and
its values), and a call that times out or finds the service unavailable is sent
again with the same id: the orders service applies it once, so an ERP that
retries never creates a second order nor cuts a quantity twice.

It presents the token in KANBAN_TOKEN (or --token): one with the erp role.
"""

import argparse
import asyncio
import hashlib
import os
import sys
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from kanban.orders.v1 import orders_pb2 as pb
from kanban.orders.v1 import orders_pb2_grpc

from services.core import client

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
ATTEMPTS = 10


def request_id(*parts: object) -> str:
    return "erp-" + hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


async def call_with_retries(method: Any, request: Any) -> Any:
    """Sends the same request (same request id) until it gets an answer."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await method(request, timeout=5)
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE or attempt == ATTEMPTS:
                raise
            await asyncio.sleep(min(0.2 * 2**attempt, 5))
    raise AssertionError("unreachable")


def show(order: pb.Order) -> str:
    state = pb.OrderState.Name(order.state).removeprefix("ORDER_STATE_")
    return (
        f"{order.erp_order_id} {order.item_id} {state} made {order.made_quantity}/{order.quantity}"
    )


async def run(args: argparse.Namespace) -> int:
    async with client.channel(args.orders, args.token) as channel:
        orders = orders_pb2_grpc.OrdersServiceStub(channel)
        if args.command == "create":
            due = timestamp_pb2.Timestamp()
            due.FromDatetime(datetime.fromisoformat(args.due.replace("Z", "+00:00")))
            created = await call_with_retries(
                orders.CreateOrder,
                pb.CreateOrderRequest(
                    request_id=request_id(
                        "create",
                        args.site,
                        args.order,
                        args.item,
                        args.quantity,
                        args.due,
                        args.priority,
                    ),
                    site_id=args.site,
                    erp_order_id=args.order,
                    item_id=args.item,
                    quantity=args.quantity,
                    due_time=due,
                    priority=args.priority,
                ),
            )
            print("created", show(created.order), flush=True)
            if args.release:
                released = await call_with_retries(
                    orders.ReleaseOrder,
                    pb.ReleaseOrderRequest(
                        request_id=request_id("release", args.site, args.order),
                        site_id=args.site,
                        erp_order_id=args.order,
                    ),
                )
                print("released", show(released.order), flush=True)
        elif args.command == "change":
            changed = await call_with_retries(
                orders.ChangeOrderQuantity,
                pb.ChangeOrderQuantityRequest(
                    request_id=request_id("change", args.site, args.order, args.quantity),
                    site_id=args.site,
                    erp_order_id=args.order,
                    quantity=args.quantity,
                ),
            )
            print("changed", show(changed.order), flush=True)
        elif args.command == "cancel":
            cancelled = await call_with_retries(
                orders.CancelOrder,
                pb.CancelOrderRequest(
                    request_id=request_id("cancel", args.site, args.order),
                    site_id=args.site,
                    erp_order_id=args.order,
                    reason=args.reason,
                ),
            )
            print("cancelled", show(cancelled.order), flush=True)
        elif args.command == "follow":
            return await follow(orders, args)
    return 0


async def follow(orders: orders_pb2_grpc.OrdersServiceStub, args: argparse.Namespace) -> int:
    """Prints every order change; resumes from the last sequence if the stream drops."""
    last = args.after
    while True:
        stream = orders.WatchOrders(pb.WatchOrdersRequest(site_id=args.site, after_sequence=last))
        try:
            async for message in stream:
                if not message.HasField("update"):
                    continue
                last = message.update.sequence
                order = message.update.order
                print(f"#{last} {show(order)}", flush=True)
                done = (pb.ORDER_STATE_COMPLETED, pb.ORDER_STATE_CANCELLED)
                if order.erp_order_id == args.until_done and order.state in done:
                    return 0
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE:
                raise
            await asyncio.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", default="localhost:50053", help="orders service address")
    parser.add_argument("--site", default="PLANT1")
    parser.add_argument(
        "--token", default=os.environ.get("KANBAN_TOKEN", ""), help="bearer token (erp role)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create an order (and release it)")
    create.add_argument("order")
    create.add_argument("--item", required=True)
    create.add_argument("--quantity", type=int, required=True)
    create.add_argument("--due", required=True, help="ISO time, e.g. 2026-12-01T14:00:00Z")
    create.add_argument("--priority", type=int, default=0)
    create.add_argument("--release", action="store_true", help="release it to production")
    change = commands.add_parser("change", help="change an order's quantity")
    change.add_argument("order")
    change.add_argument("--quantity", type=int, required=True)
    cancel = commands.add_parser("cancel", help="cancel an order")
    cancel.add_argument("order")
    cancel.add_argument("--reason", default="")
    follow_ = commands.add_parser("follow", help="print order changes as they happen")
    follow_.add_argument("--after", type=int, default=0, help="last sequence already seen")
    follow_.add_argument("--until-done", default="", help="stop when this order is done")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except grpc.aio.AioRpcError as error:
        print(f"refused: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
