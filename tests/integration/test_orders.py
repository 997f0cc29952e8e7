"""The orders service through real gRPC on real PostgreSQL: the ERP's way in."""

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from kanban.events.v1 import events_pb2, events_pb2_grpc
from kanban.orders.v1 import orders_pb2 as pb
from kanban.orders.v1 import orders_pb2_grpc
from prometheus_client import REGISTRY

from services.core.server import start_service
from services.orders.app import SPEC as ORDERS
from tests.conftest import eventually, fast_settings, new_id, refused

DUE = datetime(2030, 5, 10, 16, 0, tzinfo=UTC)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


class Erp:
    """The ERP of one fresh site: product FRAME (containers of 100) made at ASSY."""

    def __init__(self, stack, site_id: str | None = None) -> None:
        self.stub = stack.orders
        self.sink = events_pb2_grpc.EventSinkServiceStub(stack.channels[2])
        self.site_id = site_id or new_id("site")

    async def define(self, item: str = "FRAME", container_quantity: int = 100, **fields):
        request = pb.DefineProductRequest(
            request_id=fields.pop("request_id", new_id("r")),
            site_id=self.site_id,
            item_id=item,
            pacemaker_station_id=fields.pop("pacemaker_station_id", "ASSY"),
            container_quantity=container_quantity,
            finished_goods_location_id=fields.pop("finished_goods_location_id", "FG"),
        )
        return (await self.stub.DefineProduct(request)).product

    async def create(
        self,
        erp_order_id: str,
        quantity: int = 800,
        *,
        item: str = "FRAME",
        due: datetime = DUE,
        priority: int = 5,
        request_id: str | None = None,
    ) -> pb.Order:
        request = pb.CreateOrderRequest(
            request_id=request_id or new_id("r"),
            site_id=self.site_id,
            erp_order_id=erp_order_id,
            item_id=item,
            quantity=quantity,
            due_time=stamp(due),
            priority=priority,
        )
        return (await self.stub.CreateOrder(request)).order

    async def get(self, erp_order_id: str) -> pb.Order:
        request = pb.GetOrderRequest(site_id=self.site_id, erp_order_id=erp_order_id)
        return (await self.stub.GetOrder(request)).order

    async def release(self, erp_order_id: str, request_id: str | None = None) -> pb.Order:
        request = pb.ReleaseOrderRequest(
            request_id=request_id or new_id("r"), site_id=self.site_id, erp_order_id=erp_order_id
        )
        return (await self.stub.ReleaseOrder(request)).order

    async def change(
        self, erp_order_id: str, quantity: int, request_id: str | None = None
    ) -> pb.Order:
        request = pb.ChangeOrderQuantityRequest(
            request_id=request_id or new_id("r"),
            site_id=self.site_id,
            erp_order_id=erp_order_id,
            quantity=quantity,
        )
        return (await self.stub.ChangeOrderQuantity(request)).order

    async def cancel(self, erp_order_id: str, reason: str = "customer cancelled") -> pb.Order:
        request = pb.CancelOrderRequest(
            request_id=new_id("r"), site_id=self.site_id, erp_order_id=erp_order_id, reason=reason
        )
        return (await self.stub.CancelOrder(request)).order

    async def list(self, **filters) -> list[pb.Order]:
        """Every page of ListOrders with these filters, in order."""
        found, token = [], ""
        while True:
            page = await self.stub.ListOrders(
                pb.ListOrdersRequest(site_id=self.site_id, page_token=token, **filters)
            )
            found += page.orders
            if not (token := page.next_page_token):
                return found

    def completed(self, erp_order_id: str, number: int, quantity: int = 100) -> events_pb2.Event:
        """What stations tells orders when the pacemaker completes an instruction."""
        return events_pb2.Event(
            event_id=str(uuid.uuid4()),
            site_id=self.site_id,
            source="stations",
            occurred_at=stamp(datetime.now(UTC)),
            instruction_completed=events_pb2.InstructionCompleted(
                erp_order_id=erp_order_id,
                instruction_id=f"{erp_order_id}-{number:04d}",
                item_id="FRAME",
                location_id="FG",
                lot_id=f"LOT-{number}",
                quantity=quantity,
                station_id="ASSY",
            ),
        )

    async def deliver(self, *events: events_pb2.Event) -> events_pb2.DeliverEventsResponse:
        return await self.sink.DeliverEvents(events_pb2.DeliverEventsRequest(events=events))


@pytest.fixture
async def erp(stack) -> Erp:
    erp = Erp(stack)
    await erp.define()
    return erp


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def sent_to_stations(db, site_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The events orders committed for stations, in order: (type, payload)."""
    rows = await db.fetch(
        """SELECT event_type, payload FROM orders.outbox
           WHERE site_id = $1 AND destination = 'stations' ORDER BY id""",
        site_id,
    )
    return [(r["event_type"], json.loads(r["payload"])) for r in rows]


def instruction_list(payload: dict[str, Any]) -> list[tuple[str, int]]:
    return [(i["instruction_id"], i["quantity"]) for i in payload["instructions"]]


# Products


async def test_defining_a_product_again_returns_it_unless_it_differs(stack):
    erp = Erp(stack)
    first = await erp.define(container_quantity=100)
    assert (first.pacemaker_station_id, first.container_quantity) == ("ASSY", 100)
    assert await erp.define(container_quantity=100) == first

    refusal = await refused(erp.define(container_quantity=50))
    assert refusal.code == grpc.StatusCode.ALREADY_EXISTS
    assert await erp.define(container_quantity=100) == first


# Creating and reading


async def test_a_new_order_is_open_and_reads_back_as_created(erp):
    due = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    created = await erp.create("SO-1", 800, due=due, priority=7)

    assert created.state == pb.ORDER_STATE_OPEN
    assert (created.site_id, created.erp_order_id, created.item_id) == (
        erp.site_id,
        "SO-1",
        "FRAME",
    )
    assert (created.quantity, created.made_quantity, created.priority) == (800, 0, 7)
    assert created.due_time.ToDatetime(tzinfo=UTC) == due
    assert created.created_at == created.updated_at
    assert created.cancel_reason == ""
    assert await erp.get("SO-1") == created


async def test_a_late_order_is_accepted(erp):
    late = await erp.create("LATE-1", due=datetime(2001, 1, 1, tzinfo=UTC))
    assert late.state == pb.ORDER_STATE_OPEN


async def test_an_order_for_an_item_with_no_product_is_not_found(erp, db):
    refusal = await refused(erp.create("SO-1", item="UNKNOWN"))
    assert refusal.code == grpc.StatusCode.NOT_FOUND
    assert refusal.reason == "PRODUCT_NOT_FOUND"
    assert await erp.list() == []


async def test_an_unknown_order_is_not_found(erp):
    for call in (erp.get("NOPE"), erp.release("NOPE"), erp.change("NOPE", 5), erp.cancel("NOPE")):
        refusal = await refused(call)
        assert (refusal.code, refusal.reason) == (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")


async def test_an_order_of_too_many_containers_is_refused_on_quantity(erp):
    refusal = await refused(erp.create("SO-1", 10_000 * 100))
    assert (refusal.code, refusal.fields) == (INVALID, ["quantity"])
    assert await erp.list() == []


# ERP retries


async def test_a_retried_create_returns_the_first_answer(erp):
    first = await erp.create("SO-1", 800, request_id="erp-msg-1")
    await erp.change("SO-1", 600)

    again = await erp.create("SO-1", 800, request_id="erp-msg-1")

    assert again == first
    assert len(await erp.list()) == 1
    assert (await erp.get("SO-1")).quantity == 600


async def test_the_same_erp_order_with_other_content_already_exists(erp):
    first = await erp.create("SO-1", 800, priority=5)
    for other in (
        dict(quantity=801),
        dict(priority=6),
        dict(due=DUE + timedelta(hours=1)),
    ):
        refusal = await refused(erp.create("SO-1", **({"quantity": 800} | other)))
        assert refusal.code == grpc.StatusCode.ALREADY_EXISTS, other
    assert await erp.get("SO-1") == first


async def test_the_same_erp_order_sent_again_with_a_new_request_id_returns_it(erp):
    first = await erp.create("SO-1", 800)
    assert await erp.create("SO-1", 800) == first
    assert await erp.list() == [first]


async def test_racing_copies_of_one_erp_order_create_one_order(erp, db):
    replies = await asyncio.gather(*(erp.create("SO-RACE", 500) for _ in range(10)))

    assert all(reply == replies[0] for reply in replies)
    assert len(await erp.list()) == 1
    updates = await db.fetchval(
        "SELECT count(*) FROM orders.order_updates WHERE site_id = $1", erp.site_id
    )
    assert updates == 1


async def test_a_request_id_reused_for_another_request_is_refused(erp):
    await erp.create("SO-1", request_id="reused")
    refusal = await refused(erp.create("SO-2", request_id="reused"))
    assert (refusal.code, refusal.fields) == (INVALID, ["request_id"])
    assert [o.erp_order_id for o in await erp.list()] == ["SO-1"]


# Listing


async def test_orders_list_by_due_time_then_erp_id_in_pages_and_filter(erp):
    await erp.define("BRACKET", 50)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    plan = [
        ("SO-05", "FRAME", t0 + timedelta(days=3)),
        ("SO-01", "FRAME", t0 + timedelta(days=1)),
        ("SO-03", "BRACKET", t0 + timedelta(days=2)),
        ("SO-02", "FRAME", t0 + timedelta(days=2)),
        ("SO-04", "BRACKET", t0),
        ("SO-06", "FRAME", t0 + timedelta(days=5)),
        ("SO-07", "FRAME", t0 + timedelta(days=2)),
    ]
    for erp_order_id, item, due in plan:
        await erp.create(erp_order_id, 100, item=item, due=due)
    await erp.release("SO-02")
    await erp.cancel("SO-06")

    everything = await erp.list(page_size=2)
    assert [o.erp_order_id for o in everything] == [
        "SO-04",
        "SO-01",
        "SO-02",
        "SO-03",
        "SO-07",
        "SO-05",
        "SO-06",
    ]
    first = await erp.stub.ListOrders(pb.ListOrdersRequest(site_id=erp.site_id, page_size=3))
    assert len(first.orders) == 3 and first.next_page_token
    whole = await erp.stub.ListOrders(pb.ListOrdersRequest(site_id=erp.site_id, page_size=7))
    assert len(whole.orders) == 7 and whole.next_page_token == ""

    def ids(orders):
        return [o.erp_order_id for o in orders]

    assert ids(await erp.list(item_id="BRACKET")) == ["SO-04", "SO-03"]
    assert ids(await erp.list(state=pb.ORDER_STATE_RELEASED)) == ["SO-02"]
    assert ids(await erp.list(state=pb.ORDER_STATE_CANCELLED)) == ["SO-06"]
    assert ids(await erp.list(state=pb.ORDER_STATE_OPEN, item_id="FRAME", page_size=1)) == [
        "SO-01",
        "SO-07",
        "SO-05",
    ]
    window = dict(due_after=stamp(t0 + timedelta(days=1)), due_before=stamp(t0 + timedelta(days=3)))
    assert ids(await erp.list(page_size=1, **window)) == ["SO-01", "SO-02", "SO-03", "SO-07"]
    assert ids(await erp.list(due_after=stamp(t0 + timedelta(days=4)))) == ["SO-06"]
    assert ids(await erp.list(due_before=stamp(t0 + timedelta(days=1)))) == ["SO-04"]
    assert ids(await erp.list(item_id="NONE")) == []


# Releasing


async def test_release_sends_the_pacemaker_one_instruction_per_container(erp, db):
    due = datetime(2030, 3, 1, 12, tzinfo=UTC)
    await erp.create("SO-1", 750, due=due, priority=9)

    released = await erp.release("SO-1")

    assert released.state == pb.ORDER_STATE_RELEASED
    assert released.updated_at.ToDatetime() > released.created_at.ToDatetime()
    [(kind, payload)] = await sent_to_stations(db, erp.site_id)
    assert kind == "OrderReleased"
    assert {k: v for k, v in payload.items() if k != "instructions"} == {
        "erp_order_id": "SO-1",
        "item_id": "FRAME",
        "pacemaker_station_id": "ASSY",
        "location_id": "FG",
        "due_time": due.isoformat(),
        "priority": 9,
        "order_quantity": 750,
    }
    assert instruction_list(payload) == [(f"SO-1-{n:04d}", 100) for n in range(1, 8)] + [
        ("SO-1-0008", 50)
    ]


async def test_a_big_release_is_sent_in_events_of_at_most_100_instructions(stack, db):
    erp = Erp(stack)
    await erp.define("SCREW", container_quantity=1)
    await erp.create("SO-BIG", 1050, item="SCREW")

    await erp.release("SO-BIG")

    events = await sent_to_stations(db, erp.site_id)
    assert [len(payload["instructions"]) for _, payload in events] == [100] * 10 + [50]
    numbers = [i for _, payload in events for i, _ in instruction_list(payload)]
    assert numbers == [f"SO-BIG-{n:04d}" for n in range(1, 1051)]


async def test_releasing_again_changes_nothing_and_sends_nothing(erp, db):
    await erp.create("SO-1", 800)
    first = await erp.release("SO-1")

    assert await erp.release("SO-1") == first
    assert len(await sent_to_stations(db, erp.site_id)) == 1


async def test_a_retried_release_returns_its_first_answer(erp, db):
    await erp.create("SO-1", 800)
    first = await erp.release("SO-1", request_id="rel-1")
    await erp.change("SO-1", 900)

    assert await erp.release("SO-1", request_id="rel-1") == first
    assert [k for k, _ in await sent_to_stations(db, erp.site_id)] == [
        "OrderReleased",
        "OrderReleased",
    ]


async def test_a_closed_order_cannot_be_released(erp):
    await erp.create("SO-1")
    await erp.cancel("SO-1")

    refusal = await refused(erp.release("SO-1"))

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_CLOSED")
    assert refusal.metadata["order_state"] == "CANCELLED"


async def test_released_instructions_reach_the_stations_relay(erp, db):
    """The relay picks the events up; whether stations acts on them is stations' test."""
    await erp.create("SO-1", 200)
    await erp.release("SO-1")
    pending = await db.fetchval(
        "SELECT count(*) FROM orders.outbox WHERE site_id = $1 AND destination = 'stations'",
        erp.site_id,
    )
    assert pending == 1


# Completions from stations


async def test_completed_instructions_count_until_the_order_is_completed(erp):
    await erp.create("SO-1", 250)
    await erp.release("SO-1")

    reply = await erp.deliver(erp.completed("SO-1", 1), erp.completed("SO-1", 2))
    assert reply.applied_count == 2
    progress = await erp.get("SO-1")
    assert (progress.made_quantity, progress.state) == (200, pb.ORDER_STATE_RELEASED)

    await erp.deliver(erp.completed("SO-1", 3, quantity=50))
    done = await erp.get("SO-1")
    assert (done.made_quantity, done.state) == (250, pb.ORDER_STATE_COMPLETED)


async def test_a_completion_counts_once_however_often_it_is_delivered(erp):
    await erp.create("SO-1", 800)
    await erp.release("SO-1")
    event = erp.completed("SO-1", 1)

    await erp.deliver(event)
    again = await erp.deliver(event, event)
    # The same instruction told again under a new event id does not count twice either.
    await erp.deliver(erp.completed("SO-1", 1))

    assert (again.applied_count, again.duplicate_count) == (0, 2)
    assert (await erp.get("SO-1")).made_quantity == 100


async def test_racing_completions_all_count(erp):
    await erp.create("SO-1", 2000)
    await erp.release("SO-1")

    await asyncio.gather(*(erp.deliver(erp.completed("SO-1", n)) for n in range(1, 21)))

    done = await erp.get("SO-1")
    assert (done.made_quantity, done.state) == (2000, pb.ORDER_STATE_COMPLETED)


async def test_a_completion_for_an_unknown_order_is_acknowledged_and_changes_nothing(erp, db):
    reply = await erp.deliver(erp.completed("GHOST-1", 1))

    assert reply.applied_count == 1
    assert await erp.list() == []
    recorded = await db.fetchval(
        "SELECT count(*) FROM orders.instruction_completions WHERE site_id = $1", erp.site_id
    )
    assert recorded == 0


# Changing the quantity


async def test_a_cut_withdraws_and_an_increase_releases_more_continuing_the_numbering(erp, db):
    await erp.create("SO-1", 800)
    await erp.release("SO-1")

    cut = await erp.change("SO-1", 600)
    raised = await erp.change("SO-1", 750)

    assert (cut.quantity, cut.state) == (600, pb.ORDER_STATE_RELEASED)
    assert raised.quantity == 750
    events = await sent_to_stations(db, erp.site_id)
    assert [kind for kind, _ in events] == ["OrderReleased", "OrderReduced", "OrderReleased"]
    assert events[1][1] == {"erp_order_id": "SO-1", "quantity": 600}
    assert instruction_list(events[2][1]) == [("SO-1-0009", 100), ("SO-1-0010", 50)]


async def test_changing_an_open_order_sends_nothing_until_it_is_released(erp, db):
    await erp.create("SO-1", 800)
    assert (await erp.change("SO-1", 300)).quantity == 300
    assert await sent_to_stations(db, erp.site_id) == []

    await erp.release("SO-1")
    [(_, payload)] = await sent_to_stations(db, erp.site_id)
    assert [q for _, q in instruction_list(payload)] == [100, 100, 100]


async def test_a_cut_below_what_was_made_is_refused_with_the_made_quantity(erp, db):
    await erp.create("SO-1", 800)
    await erp.release("SO-1")
    await erp.deliver(*(erp.completed("SO-1", n) for n in (1, 2, 3)))
    before = await erp.get("SO-1")

    refusal = await refused(erp.change("SO-1", 299))

    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.reason == "QUANTITY_BELOW_MADE"
    assert refusal.metadata["made_quantity"] == "300"
    assert await erp.get("SO-1") == before
    assert len(await sent_to_stations(db, erp.site_id)) == 1


async def test_a_cut_to_what_was_made_completes_the_order(erp, db):
    await erp.create("SO-1", 800)
    await erp.release("SO-1")
    await erp.deliver(*(erp.completed("SO-1", n) for n in (1, 2, 3)))

    done = await erp.change("SO-1", 300)

    assert (done.state, done.quantity, done.made_quantity) == (pb.ORDER_STATE_COMPLETED, 300, 300)
    assert (await sent_to_stations(db, erp.site_id))[-1] == (
        "OrderReduced",
        {"erp_order_id": "SO-1", "quantity": 300},
    )
    refusal = await refused(erp.change("SO-1", 400))
    assert refusal.reason == "ORDER_CLOSED"


# Cancelling


async def test_cancelling_a_released_order_withdraws_everything_not_started(erp, db):
    await erp.create("SO-1", 800)
    await erp.release("SO-1")

    cancelled = await erp.cancel("SO-1", reason="customer went elsewhere")

    assert cancelled.state == pb.ORDER_STATE_CANCELLED
    assert cancelled.cancel_reason == "customer went elsewhere"
    assert (await sent_to_stations(db, erp.site_id))[-1] == (
        "OrderReduced",
        {"erp_order_id": "SO-1", "quantity": 0},
    )


async def test_cancelling_an_open_order_sends_nothing(erp, db):
    await erp.create("SO-1", 800)
    assert (await erp.cancel("SO-1")).state == pb.ORDER_STATE_CANCELLED
    assert await sent_to_stations(db, erp.site_id) == []


async def test_a_closed_order_cannot_be_cancelled_or_changed(erp):
    await erp.create("SO-1", 800)
    await erp.cancel("SO-1")
    for call in (erp.cancel("SO-1"), erp.change("SO-1", 900)):
        refusal = await refused(call)
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ORDER_CLOSED",
        )


async def test_started_instructions_finish_and_count_after_a_cancellation(erp):
    await erp.create("SO-1", 800)
    await erp.release("SO-1")
    await erp.cancel("SO-1")

    await erp.deliver(erp.completed("SO-1", 1), erp.completed("SO-1", 2))

    after = await erp.get("SO-1")
    assert (after.state, after.made_quantity) == (pb.ORDER_STATE_CANCELLED, 200)


# WatchOrders


class Watcher:
    """A planning board: reads the site's WatchOrders stream into a queue."""

    def __init__(self, stub, site_id: str, after: int = 0) -> None:
        self.messages: asyncio.Queue[pb.WatchOrdersResponse] = asyncio.Queue()
        self._call = stub.WatchOrders(pb.WatchOrdersRequest(site_id=site_id, after_sequence=after))
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._call:
            await self.messages.put(message)

    async def next_update(self, timeout: float = 30) -> pb.OrderUpdate:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout)
            if message.HasField("update"):
                return message.update

    async def updates(self, count: int) -> list[pb.OrderUpdate]:
        return [await self.next_update() for _ in range(count)]

    async def next_heartbeat(self, timeout: float = 30) -> pb.Heartbeat:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout)
            if message.HasField("heartbeat"):
                return message.heartbeat

    def updates_so_far(self) -> list[pb.OrderUpdate]:
        found = []
        while not self.messages.empty():
            message = self.messages.get_nowait()
            if message.HasField("update"):
                found.append(message.update)
        return found

    def disconnect(self) -> None:
        self._call.cancel()
        self._task.cancel()


def summary(updates: list[pb.OrderUpdate]) -> list[tuple[int, str, str, int, int]]:
    return [
        (
            u.sequence,
            u.order.erp_order_id,
            pb.OrderState.Name(u.order.state),
            u.order.quantity,
            u.order.made_quantity,
        )
        for u in updates
    ]


async def test_a_watcher_gets_every_change_in_sequence_then_live_ones(stack, erp):
    await erp.create("SO-1", 200)
    await erp.release("SO-1")
    watcher = Watcher(stack.orders, erp.site_id)
    try:
        assert summary(await watcher.updates(2)) == [
            (1, "SO-1", "ORDER_STATE_OPEN", 200, 0),
            (2, "SO-1", "ORDER_STATE_RELEASED", 200, 0),
        ]
        await erp.deliver(erp.completed("SO-1", 1))
        await erp.change("SO-1", 150)
        await erp.deliver(erp.completed("SO-1", 2, quantity=50))
        assert summary(await watcher.updates(3)) == [
            (3, "SO-1", "ORDER_STATE_RELEASED", 200, 100),
            (4, "SO-1", "ORDER_STATE_RELEASED", 150, 100),
            (5, "SO-1", "ORDER_STATE_COMPLETED", 150, 150),
        ]
        assert (await watcher.next_heartbeat()).last_sequence == 5
    finally:
        watcher.disconnect()


async def test_a_reconnecting_watcher_misses_nothing_and_gets_nothing_twice(stack, erp):
    watcher = Watcher(stack.orders, erp.site_id)
    await erp.create("SO-1")
    last_seen = (await watcher.next_update()).sequence
    watcher.disconnect()

    # While it is away, orders change.
    await erp.create("SO-2")
    await erp.release("SO-1")
    await erp.cancel("SO-2")

    back = Watcher(stack.orders, erp.site_id, after=last_seen)
    try:
        got = summary(await back.updates(3))
        heartbeat = await back.next_heartbeat()  # nothing more is coming
        assert [(s, o, st) for s, o, st, _, _ in got] == [
            (2, "SO-2", "ORDER_STATE_OPEN"),
            (3, "SO-1", "ORDER_STATE_RELEASED"),
            (4, "SO-2", "ORDER_STATE_CANCELLED"),
        ]
        assert heartbeat.last_sequence == 4
        assert back.updates_so_far() == []
    finally:
        back.disconnect()


async def test_concurrent_changes_get_gapless_sequences(stack, erp):
    watcher = Watcher(stack.orders, erp.site_id)
    try:
        await asyncio.gather(*(erp.create(f"SO-{n}", 100) for n in range(20)))
        got = await watcher.updates(20)
        assert [u.sequence for u in got] == list(range(1, 21))
        assert sorted(u.order.erp_order_id for u in got) == sorted(f"SO-{n}" for n in range(20))
    finally:
        watcher.disconnect()


async def test_a_watcher_sees_only_its_own_site(stack, erp):
    other = Erp(stack)
    await other.define()
    watcher = Watcher(stack.orders, erp.site_id)
    try:
        await other.create("SO-1")
        await erp.create("SO-9")
        update = await watcher.next_update()
        assert (update.sequence, update.order.erp_order_id) == (1, "SO-9")
    finally:
        watcher.disconnect()


async def test_a_watcher_of_a_site_with_no_orders_yet_gets_heartbeats(stack):
    watcher = Watcher(stack.orders, new_id("site"))
    try:
        assert (await watcher.next_heartbeat()).last_sequence == 0
    finally:
        watcher.disconnect()


async def test_shutdown_ends_order_streams_so_watchers_reconnect(stack, database_url):
    replica = await start_service(
        ORDERS,
        fast_settings(database_url, peers={"stations": stack.stations_service.address}),
    )
    channel = grpc.aio.insecure_channel(replica.address)
    try:
        stub = orders_pb2_grpc.OrdersServiceStub(channel)
        call = stub.WatchOrders(pb.WatchOrdersRequest(site_id=new_id("site")))
        assert (await call.read()).HasField("heartbeat")

        await asyncio.wait_for(replica.stop(grace=30), 10)

        assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


async def test_a_change_on_one_replica_reaches_a_watcher_on_another(stack, erp, database_url):
    replica = await start_service(
        ORDERS,
        fast_settings(database_url, peers={"stations": stack.stations_service.address}),
    )
    channel = grpc.aio.insecure_channel(replica.address)
    try:
        watcher = Watcher(orders_pb2_grpc.OrdersServiceStub(channel), erp.site_id)
        await watcher.next_heartbeat()  # subscribed on the replica
        await erp.create("SO-1")  # through the first replica
        assert (await watcher.next_update()).order.erp_order_id == "SO-1"
        watcher.disconnect()
    finally:
        await channel.close()
        await replica.stop(0.5)


# Metrics


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_gauges_and_lead_times_follow_the_orders(erp):
    site = erp.site_id
    await erp.create("SO-1", 250)
    await erp.create("SO-2", 800)
    await erp.create("SO-3", 100)
    await erp.release("SO-1")
    await erp.cancel("SO-3")
    await erp.deliver(*(erp.completed("SO-1", n, q) for n, q in ((1, 100), (2, 100), (3, 50))))

    async def refreshed() -> bool:
        return sample("kanban_order_made_units", {"site_id": site, "item_id": "FRAME"}) == 250

    assert await eventually(refreshed)
    by_state = {
        state: sample("kanban_orders", {"site_id": site, "state": state})
        for state in ("OPEN", "RELEASED", "COMPLETED", "CANCELLED")
    }
    assert by_state == {"OPEN": 1, "RELEASED": 0, "COMPLETED": 1, "CANCELLED": 1}
    assert sample("kanban_order_open_units", {"site_id": site, "item_id": "FRAME"}) == 800
    lead_times = {"site_id": site, "item_id": "FRAME"}
    assert sample("kanban_order_lead_time_seconds_count", lead_times) == 1
    released = sample("kanban_order_instructions_released_total", lead_times)
    assert released == 3
    ignored = {"site_id": site, "reason": "UNKNOWN_ORDER"}
    await erp.deliver(erp.completed("GHOST", 1))
    assert sample("kanban_order_completions_ignored_total", ignored) == 1


# Bad input


def create(**fields):
    return (
        dict(
            request_id="r",
            erp_order_id="SO-BAD",
            item_id="FRAME",
            quantity=10,
            due_time=stamp(DUE),
            priority=0,
        )
        | fields
    )


def define(**fields):
    return (
        dict(
            request_id="r",
            item_id="OTHER",
            pacemaker_station_id="ASSY",
            container_quantity=10,
            finished_goods_location_id="FG",
        )
        | fields
    )


def change(**fields):
    return dict(request_id="r", erp_order_id="SO-1", quantity=10) | fields


def out_of_range_stamp() -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=2**62)


# (rpc, request fields, the field at fault); every request is for the test's site.
CASES = [
    ("CreateOrder", create(request_id=""), "request_id"),
    ("CreateOrder", create(request_id="r" * 500), "request_id"),
    ("CreateOrder", create(erp_order_id=""), "erp_order_id"),
    ("CreateOrder", create(erp_order_id="E" * 49), "erp_order_id"),
    ("CreateOrder", create(erp_order_id="SO 1;--"), "erp_order_id"),
    ("CreateOrder", create(erp_order_id="Ж" * 70), "erp_order_id"),
    ("CreateOrder", create(item_id="x" * 65), "item_id"),
    ("CreateOrder", create(quantity=0), "quantity"),
    ("CreateOrder", create(quantity=-5), "quantity"),
    ("CreateOrder", create(quantity=10_000_001), "quantity"),
    ("CreateOrder", create(quantity=2**62), "quantity"),
    ("CreateOrder", create(priority=-1), "priority"),
    ("CreateOrder", create(priority=1001), "priority"),
    ("CreateOrder", create(due_time=None), "due_time"),
    ("CreateOrder", create(due_time=out_of_range_stamp()), "due_time"),
    ("DefineProduct", define(container_quantity=0), "container_quantity"),
    ("DefineProduct", define(container_quantity=-3), "container_quantity"),
    ("DefineProduct", define(container_quantity=10**12), "container_quantity"),
    ("DefineProduct", define(pacemaker_station_id=""), "pacemaker_station_id"),
    ("DefineProduct", define(finished_goods_location_id="a b"), "finished_goods_location_id"),
    ("ChangeOrderQuantity", change(quantity=0), "quantity"),
    ("ChangeOrderQuantity", change(quantity=-800), "quantity"),
    ("ChangeOrderQuantity", change(quantity=10**9), "quantity"),
    ("ChangeOrderQuantity", change(erp_order_id=""), "erp_order_id"),
    ("ReleaseOrder", dict(request_id="r", erp_order_id="E" * 49), "erp_order_id"),
    ("CancelOrder", dict(request_id="r", erp_order_id="SO-1", reason="x" * 201), "reason"),
    ("CancelOrder", dict(request_id="r", erp_order_id="SO-1", reason="a\x00b"), "reason"),
    ("GetOrder", dict(erp_order_id="bad id"), "erp_order_id"),
    ("ListOrders", dict(state=42), "state"),
    ("ListOrders", dict(state=-1), "state"),
    ("ListOrders", dict(item_id="bad item"), "item_id"),
    ("ListOrders", dict(page_size=-1), "page_size"),
    ("ListOrders", dict(page_size=5000), "page_size"),
    ("ListOrders", dict(page_token="not-a-token"), "page_token"),
    ("ListOrders", dict(page_token="WyJub3QgYSB0aW1lIiwgIlNPLTEiXQ=="), "page_token"),
    ("ListOrders", dict(due_after=stamp(DUE), due_before=stamp(DUE)), "due_before"),
    ("ListOrders", dict(due_after=out_of_range_stamp()), "due_after"),
    ("WatchOrders", dict(after_sequence=-1), "after_sequence"),
]


async def snapshot(erp, db):
    return (
        await erp.list(),
        await sent_to_stations(db, erp.site_id),
        await db.fetchval("SELECT count(*) FROM orders.products WHERE site_id = $1", erp.site_id),
    )


@pytest.fixture
async def released(erp) -> Erp:
    await erp.create("SO-1", 800)
    await erp.release("SO-1")
    return erp


async def _first_message(call):
    async for message in call:
        return message


@pytest.mark.parametrize(("rpc", "fields", "at_fault"), CASES)
async def test_malformed_requests_name_the_field_at_fault(released, db, rpc, fields, at_fault):
    erp = released
    before = await snapshot(erp, db)
    request = getattr(pb, f"{rpc}Request")(
        site_id=erp.site_id, **{k: v for k, v in fields.items() if v is not None}
    )

    call = getattr(erp.stub, rpc)(request)
    if rpc == "WatchOrders":
        call = _first_message(call)
    refusal = await refused(call)

    assert refusal.code == INVALID, refusal.message
    assert refusal.fields == [at_fault]
    assert await snapshot(erp, db) == before


REQUESTS_PER_RPC = 40
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}
STRINGS = ["", " ", "SO-1", "FRAME", "ASSY", "a" * 49, "Ж" * 300, "\x00", "x\ny", "💥", "%s"]
INTS = [0, 1, -1, 100, 800, 1001, 2**31 - 1, -(2**31), 2**62, -(2**62)]


def garbage(message_type, rng: random.Random, site_id: str):
    message = message_type()
    for field in message_type.DESCRIPTOR.fields:
        if field.name == "site_id" and rng.random() < 0.7:
            setattr(message, field.name, site_id)
        elif field.type == FieldDescriptor.TYPE_STRING:
            setattr(message, field.name, rng.choice(STRINGS))
        elif field.type == FieldDescriptor.TYPE_ENUM:
            setattr(message, field.name, rng.choice([0, 1, 2, 3, 4, 99, -5]))
        elif field.type == FieldDescriptor.TYPE_INT32:
            setattr(message, field.name, rng.choice([i for i in INTS if abs(i) < 2**31]))
        elif field.type == FieldDescriptor.TYPE_INT64:
            setattr(message, field.name, rng.choice(INTS))
        elif field.message_type and field.message_type.name == "Timestamp" and rng.random() < 0.8:
            getattr(message, field.name).CopyFrom(
                timestamp_pb2.Timestamp(
                    seconds=rng.choice([0, 1_900_000_000, -(2**40), 2**40]),
                    nanos=rng.choice([0, 5, -1]),
                )
            )
    return message


@pytest.mark.parametrize(
    "method",
    list(pb.DESCRIPTOR.services_by_name["OrdersService"].methods),
    ids=lambda method: method.name,
)
async def test_garbage_gets_a_deliberate_status(released, method):
    erp = released
    request_type = getattr(pb, method.input_type.name)
    rng = random.Random(method.name)
    seen: dict[grpc.StatusCode, int] = {}
    for _ in range(REQUESTS_PER_RPC):
        request = garbage(request_type, rng, erp.site_id)
        call = getattr(erp.stub, method.name)(request, timeout=30)
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
    assert set(seen) <= DELIBERATE, seen
