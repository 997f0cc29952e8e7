"""Alerts from the running line: each rule fires once, resolves by itself, can be
acknowledged and watched; thresholds per scope; webhooks retried until delivered."""

import asyncio
import http.server
import json
import threading
from dataclasses import replace
from typing import ClassVar

import asyncpg
import grpc
import pytest
from kanban.alerts.v1 import alerts_pb2 as pb
from kanban.stations.v1 import stations_pb2 as stations_pb
from kanban.stock.v1 import stock_pb2

from services.alerts import commands, service, webhooks
from tests.conftest import Line, eventually, new_id, refused
from tests.stock_site import StockSite


@pytest.fixture
async def plant(stack) -> tuple[Line, StockSite]:
    line = await Line(stack.stations, new_id("site")).create(cards=3, container_quantity=100)
    site = await StockSite(stack.stock, line.site_id).create()
    return line, site


async def set_threshold(stack, site_id, rule, value, scope=pb.SCOPE_KIND_SITE, scope_id=""):
    return await stack.alerts.SetAlertThreshold(
        pb.SetAlertThresholdRequest(
            request_id=new_id("r"),
            site_id=site_id,
            rule=rule,
            scope=scope,
            scope_id=scope_id,
            value=value,
        )
    )


async def alerts(stack, site_id, **filters) -> list[pb.Alert]:
    reply = await stack.alerts.ListAlerts(
        pb.ListAlertsRequest(site_id=site_id, page_size=1000, **filters)
    )
    return list(reply.alerts)


async def open_subjects(stack, site_id, rule) -> set[str]:
    return {a.subject for a in await alerts(stack, site_id, rule=rule, open_only=True)}


async def until_open(stack, site_id, rule, subjects: set[str]) -> None:
    async def check():
        return await open_subjects(stack, site_id, rule) == subjects

    assert await eventually(check), await open_subjects(stack, site_id, rule)


async def test_a_signal_not_started_in_time_fires_and_resolves_when_started(stack, plant):
    line, _ = plant
    await set_threshold(
        stack, line.site_id, pb.RULE_SIGNAL_NOT_STARTED, 0.5, pb.SCOPE_KIND_LOOP, "P"
    )
    await line.scan("WELD", "P-001")

    await until_open(stack, line.site_id, pb.RULE_SIGNAL_NOT_STARTED, {"card/P-001"})
    (alert,) = await alerts(stack, line.site_id, rule=pb.RULE_SIGNAL_NOT_STARTED)
    assert alert.severity == pb.SEVERITY_CRITICAL
    assert "WELD will starve" in alert.message

    await line.start("STAMP", "P-001")
    await until_open(stack, line.site_id, pb.RULE_SIGNAL_NOT_STARTED, set())
    (resolved,) = await alerts(stack, line.site_id, rule=pb.RULE_SIGNAL_NOT_STARTED)
    assert resolved.alert_id == alert.alert_id
    assert resolved.state == pb.ALERT_STATE_RESOLVED


async def test_full_containers_waiting_and_cards_not_seen(stack, plant):
    line, _ = plant
    await set_threshold(stack, line.site_id, pb.RULE_FULL_CONTAINER_WAITING, 0.5)
    await set_threshold(
        stack, line.site_id, pb.RULE_CARD_NOT_SEEN, 0.5, pb.SCOPE_KIND_ITEM, "WELDED"
    )

    full = {f"card/{loop}-00{n}" for loop in "PW" for n in (1, 2, 3)}
    await until_open(stack, line.site_id, pb.RULE_FULL_CONTAINER_WAITING, full)
    await until_open(
        stack, line.site_id, pb.RULE_CARD_NOT_SEEN, {"card/W-001", "card/W-002", "card/W-003"}
    )
    await line.scan("WELD", "P-002")
    await until_open(stack, line.site_id, pb.RULE_FULL_CONTAINER_WAITING, full - {"card/P-002"})


async def test_wip_above_its_share_of_cap_fires_once_and_resolves_below_the_band(stack, plant):
    line, _ = plant
    await set_threshold(
        stack, line.site_id, pb.RULE_WIP_ABOVE_THRESHOLD, 0.9, pb.SCOPE_KIND_LOOP, "P"
    )

    await until_open(stack, line.site_id, pb.RULE_WIP_ABOVE_THRESHOLD, {"loop/P"})
    await line.scan("WELD", "P-001")
    await until_open(stack, line.site_id, pb.RULE_WIP_ABOVE_THRESHOLD, set())
    await line.start("STAMP", "P-001")  # in process counts: back to the cap
    await until_open(stack, line.site_id, pb.RULE_WIP_ABOVE_THRESHOLD, {"loop/P"})

    history = await alerts(stack, line.site_id, rule=pb.RULE_WIP_ABOVE_THRESHOLD)
    assert [a.state for a in history] == [pb.ALERT_STATE_FIRING, pb.ALERT_STATE_RESOLVED]


async def test_overproduction_attempts_make_one_alert(stack, plant):
    line, _ = plant
    for _ in range(3):
        await refused(line.complete("STAMP", "P-001", "LOT-X", 100))

    await until_open(stack, line.site_id, pb.RULE_OVERPRODUCTION_ATTEMPTED, {"station/STAMP"})
    (alert,) = await alerts(stack, line.site_id, rule=pb.RULE_OVERPRODUCTION_ATTEMPTED)
    await eventually(lambda: _message_has(stack, line.site_id, alert.alert_id, "3 refused so far"))
    await set_threshold(stack, line.site_id, pb.RULE_OVERPRODUCTION_ATTEMPTED, 0.5)
    await until_open(stack, line.site_id, pb.RULE_OVERPRODUCTION_ATTEMPTED, set())


async def _message_has(stack, site_id, alert_id, text) -> bool:
    reply = await stack.alerts.GetAlert(pb.GetAlertRequest(site_id=site_id, alert_id=alert_id))
    return text in reply.alert.message


async def test_quarantine_count_variance_and_stock_lines(stack, plant):
    line, site = plant
    await site.receive("LOT-1", 100)
    await site.quarantine("LOT-1", "porosity")
    await until_open(stack, line.site_id, pb.RULE_LOT_QUARANTINED, {"lot/LOT-1"})
    await site.stub.ReleaseLot(
        stock_pb2.ReleaseLotRequest(request_id=new_id("r"), site_id=line.site_id, lot_id="LOT-1")
    )
    await until_open(stack, line.site_id, pb.RULE_LOT_QUARANTINED, set())

    await site.stub.SetThreshold(
        stock_pb2.SetThresholdRequest(
            request_id=new_id("r"), site_id=line.site_id, item_id="RAW", safety_stock=150
        )
    )
    await until_open(stack, line.site_id, pb.RULE_STOCK_BELOW_SAFETY_STOCK, {"stock/RAW"})
    await site.receive("LOT-2", 100)
    await until_open(stack, line.site_id, pb.RULE_STOCK_BELOW_SAFETY_STOCK, set())

    await site.stub.OpenCount(
        stock_pb2.OpenCountRequest(
            request_id=new_id("r"), site_id=line.site_id, count_id="C1", location_id="BIN-A"
        )
    )
    for lot, counted in (("LOT-1", 100), ("LOT-2", 90)):
        await site.stub.RecordCount(
            stock_pb2.RecordCountRequest(
                request_id=new_id("r"),
                site_id=line.site_id,
                count_id="C1",
                item_id="RAW",
                lot_id=lot,
                counted_quantity=counted,
            )
        )
    await site.stub.ReconcileCount(
        stock_pb2.ReconcileCountRequest(request_id=new_id("r"), site_id=line.site_id, count_id="C1")
    )
    await until_open(stack, line.site_id, pb.RULE_COUNT_VARIANCE, {"count/C1/RAW/LOT-2"})
    await site.stub.ApproveCount(
        stock_pb2.ApproveCountRequest(request_id=new_id("r"), site_id=line.site_id, count_id="C1")
    )
    await until_open(stack, line.site_id, pb.RULE_COUNT_VARIANCE, set())


async def test_acknowledge_then_resolve_and_the_stream_resumes(stack, plant):
    line, site = plant
    await site.receive("LOT-1", 10)
    await site.quarantine("LOT-1")
    await until_open(stack, line.site_id, pb.RULE_LOT_QUARANTINED, {"lot/LOT-1"})
    (alert,) = await alerts(stack, line.site_id, rule=pb.RULE_LOT_QUARANTINED)
    request = pb.AcknowledgeAlertRequest(
        request_id=new_id("r"), site_id=line.site_id, alert_id=alert.alert_id, comment="lab called"
    )

    acked = await stack.alerts.AcknowledgeAlert(request, metadata=(("kanban-actor", "li"),))
    again = await stack.alerts.AcknowledgeAlert(request, metadata=(("kanban-actor", "li"),))

    assert acked == again
    assert acked.alert.state == pb.ALERT_STATE_ACKNOWLEDGED
    assert (acked.alert.acknowledged_by, acked.alert.acknowledge_comment) == ("li", "lab called")
    await site.stub.ReleaseLot(
        stock_pb2.ReleaseLotRequest(request_id=new_id("r"), site_id=line.site_id, lot_id="LOT-1")
    )
    await until_open(stack, line.site_id, pb.RULE_LOT_QUARANTINED, set())
    late = await refused(
        stack.alerts.AcknowledgeAlert(replace_request(request, request_id=new_id("r")))
    )
    assert late.reason == "ALERT_RESOLVED"

    # The stream from the start replays the alert's latest state; from the
    # acknowledgement on, only what came after.
    seen = await stream(stack, line.site_id, 0, count=1)
    later = await stream(stack, line.site_id, acked.alert.sequence, count=1)
    assert [(a.alert_id, a.state) for a in seen] == [(alert.alert_id, pb.ALERT_STATE_RESOLVED)]
    assert [a.state for a in later] == [pb.ALERT_STATE_RESOLVED]
    assert later[0].sequence > acked.alert.sequence


def replace_request(request, **fields):
    copy = type(request)()
    copy.CopyFrom(request)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


async def stream(stack, site_id, after, count) -> list[pb.Alert]:
    call = stack.alerts.WatchAlerts(pb.WatchAlertsRequest(site_id=site_id, after_sequence=after))
    got: list[pb.Alert] = []
    async with asyncio.timeout(30):
        async for message in call:
            if message.HasField("alert"):
                got.append(message.alert)
            if len(got) == count:
                break
    call.cancel()
    return got


async def test_the_stream_tells_of_a_new_alert_at_once(stack, plant):
    line, site = plant
    call = stack.alerts.WatchAlerts(pb.WatchAlertsRequest(site_id=line.site_id))
    await site.receive("LOT-1", 10)
    await site.quarantine("LOT-1")

    async with asyncio.timeout(30):
        async for message in call:
            if message.HasField("alert"):
                break
    call.cancel()
    assert message.alert.rule == pb.RULE_LOT_QUARANTINED
    assert message.alert.state == pb.ALERT_STATE_FIRING


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that fails its first call, then accepts."""

    bodies: ClassVar[list[dict[str, object]]] = []
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).calls == 1:
            self.send_response(503)
        else:
            type(self).bodies.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


async def test_webhooks_are_retried_until_delivered(stack, plant):
    line, site = plant
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    running = stack.alerts_service
    # An evaluator of this service that also calls the webhook, for this site.
    evaluator = service.Evaluator(running.db, replace(running.settings, alert_webhook_urls=(url,)))
    try:
        await site.receive("LOT-1", 10)
        await site.quarantine("LOT-1")
        await until_open(stack, line.site_id, pb.RULE_LOT_QUARANTINED, {"lot/LOT-1"})
        (alert,) = await alerts(stack, line.site_id, rule=pb.RULE_LOT_QUARANTINED)
        await evaluator.acknowledge(
            commands.AcknowledgeAlert(new_id("r"), line.site_id, "li", alert.alert_id, "")
        )

        async def delivered() -> bool:
            await webhooks.deliver_due(running.db)
            return bool(Receiver.bodies)

        assert await eventually(delivered)
        assert Receiver.calls == 2  # one failure, one retry
        (body,) = Receiver.bodies
        assert (body["alert_id"], body["state"], body["acknowledged_by"]) == (
            alert.alert_id,
            "ACKNOWLEDGED",
            "li",
        )
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rule": pb.RULE_UNSPECIFIED}, "rule"),
        ({"rule": 99}, "rule"),
        ({"rule": pb.RULE_LOT_QUARANTINED}, "rule"),
        ({"scope": pb.SCOPE_KIND_UNSPECIFIED}, "scope"),
        ({"scope": pb.SCOPE_KIND_LOOP, "scope_id": ""}, "scope_id"),
        ({"scope_id": "P"}, "scope_id"),
        ({"value": 1.5}, "value"),
        ({"value": -1.0}, "value"),
        ({"value": float("nan")}, "value"),
        ({"request_id": ""}, "request_id"),
    ],
)
async def test_bad_thresholds_name_the_field(stack, fields, field):
    values = dict(
        request_id=new_id("r"),
        site_id="S1",
        rule=pb.RULE_WIP_ABOVE_THRESHOLD,
        scope=pb.SCOPE_KIND_SITE,
        value=0.5,
    )
    values.update(fields)

    refusal = await refused(stack.alerts.SetAlertThreshold(pb.SetAlertThresholdRequest(**values)))

    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.fields == [field]


async def test_bad_queries(stack):
    for call, field in [
        (stack.alerts.ListAlerts(pb.ListAlertsRequest(site_id="")), "site_id"),
        (stack.alerts.ListAlerts(pb.ListAlertsRequest(site_id="S", state=42)), "state"),
        (stack.alerts.ListAlerts(pb.ListAlertsRequest(site_id="S", page_token="x")), "page_token"),
        (stack.alerts.GetAlert(pb.GetAlertRequest(site_id="S", alert_id="")), "alert_id"),
    ]:
        refusal = await refused(call)
        assert refusal.fields == [field]
    missing = await refused(stack.alerts.GetAlert(pb.GetAlertRequest(site_id="S", alert_id="A1")))
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_each_loops_wip_is_kept_as_its_cards_move(stack, database_url, plant):
    line, _ = plant
    await line.scan("WELD", "P-001")
    await line.start("STAMP", "P-001")
    await line.complete("STAMP", "P-001", "LOT-P1", 100)
    await line.scan("WELD", "P-002")
    await line.start("STAMP", "P-002")
    await line.stub.ResizeLoop(
        stations_pb.ResizeLoopRequest(
            request_id=new_id("r"), site_id=line.site_id, loop_id="P", card_count=2
        )
    )
    await line.scan("WELD", "P-003")  # comes back empty and retires

    conn = await asyncpg.connect(database_url)
    try:

        async def kept_and_counted():
            return await conn.fetchrow(
                """SELECT l.wip_units AS kept,
                          (SELECT sum(CASE c.state WHEN 'FULL' THEN c.quantity
                                                   WHEN 'IN_PROCESS' THEN l.container_quantity
                                                   ELSE 0 END)
                           FROM alerts.cards c
                           WHERE c.site_id = l.site_id AND c.loop_id = l.loop_id) AS counted,
                          (SELECT count(*) FROM alerts.cards c
                           WHERE c.site_id = l.site_id AND c.loop_id = l.loop_id) AS cards
                   FROM alerts.loops l WHERE l.site_id = $1 AND l.loop_id = 'P'""",
                line.site_id,
            )

        # P-001 FULL again (100) and P-002 in process (a container, 100); P-003 retired.
        async def settled():
            row = await kept_and_counted()
            return (row["kept"], row["counted"], row["cards"]) == (200, 200, 2)

        assert await eventually(settled), dict(await kept_and_counted())
    finally:
        await conn.close()
