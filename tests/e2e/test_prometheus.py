"""A real Prometheus scrapes the four services, run as processes, through a short
shift: it loads the rules and evaluates each without error, and every query of the
Grafana dashboards returns data."""

import asyncio
import contextlib
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2 as stock_pb
from kanban.stock.v1 import stock_pb2_grpc

from tests.conftest import Line, eventually, free_port, new_id, refused
from tests.deploy.observability import PROMETHEUS_DIR, RULE_FILES, dashboard_queries, rules
from tests.e2e.conftest import Launcher, ServiceProcess, open_channel
from tests.stock_site import StockSite

# Generous: a slow machine makes this test slower, never red.
READY_SECONDS = 60.0
DATA_SECONDS = 120.0


def prometheus_config(services: dict[str, ServiceProcess]) -> dict[str, Any]:
    """The example configuration, pointed at these processes and scraping every second."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in RULE_FILES]
    for job in config["scrape_configs"]:
        service = services[job["job_name"].removeprefix("kanban-")]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{service.metrics_port}"]}]
    return config


def new_log(path: Path) -> BinaryIO:
    return open(path, "wb")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    async def api(self, path: str, **params: str) -> Any:
        body = await asyncio.to_thread(
            get_json, f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        )
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=promql)
        return list(data["result"])

    async def ready(self) -> bool:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5):
                    return True
            except (urllib.error.URLError, ConnectionError):
                return False

        return await asyncio.to_thread(answers)


@contextlib.asynccontextmanager
async def running_prometheus(
    services: dict[str, ServiceProcess], work_dir: Path
) -> AsyncIterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make system-deps` installs Debian's package"
    config = work_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(services)))
    address = f"127.0.0.1:{free_port()}"
    log_path = work_dir / "prometheus.log"
    with new_log(log_path) as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work_dir / 'tsdb'}",
            f"--web.listen-address={address}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://{address}")

    async def ready() -> bool:
        assert process.returncode is None, f"Prometheus exited:\n{log_path.read_text()}"
        return await prometheus.ready()

    try:
        assert await eventually(ready, timeout=READY_SECONDS, interval=0.2), (
            f"Prometheus did not start:\n{log_path.read_text()[-3000:]}"
        )
        yield prometheus
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def shift(
    line: Line, stock: StockSite, alerts: ServiceProcess, prometheus: Prometheus
) -> None:
    """Both loops cycle, stamping tries to over-produce, steel runs below its safety
    line, quality holds a coil while the alerts service is down (stock's outbox
    retries until it is back), and a cycle count finds less than the books."""
    site = line.site_id
    await stock.receive("COIL-1", 500, location="BIN-A")
    await stock.receive("COIL-2", 100, location="BIN-B")
    await stock.stub.SetThreshold(
        stock_pb.SetThresholdRequest(
            request_id=new_id("r"), site_id=site, item_id="RAW", safety_stock=200
        )
    )
    await stock.issue("COIL-1", 450, location="BIN-A")

    for consumer, supplier, card in (
        ("WELD", "STAMP", "P-001"),
        ("WELD", "STAMP", "P-002"),
        ("ASSY", "WELD", "W-001"),
    ):
        await line.scan(consumer, card)
        await line.start(supplier, card)
        await line.complete(supplier, card, f"LOT-{card}", 500)
    refusal = await refused(line.complete("STAMP", "P-001", "LOT-AGAIN", 500))
    assert refusal.reason == "OVERPRODUCTION_BLOCKED"

    await alerts.kill()
    await stock.quarantine("COIL-2", "rust on the edges")

    async def delivery_failed() -> bool:
        return bool(
            await prometheus.query(
                'kanban_outbox_delivery_failures_total{job="kanban-stock",destination="alerts"}'
            )
        )

    assert await eventually(delivery_failed, timeout=DATA_SECONDS, interval=0.5)
    await alerts.start()

    count = {"site_id": site, "count_id": "CC-1"}
    await stock.stub.OpenCount(
        stock_pb.OpenCountRequest(
            request_id=new_id("r"), location_id="BIN-A", tolerance_percent=2, **count
        )
    )
    await stock.stub.RecordCount(
        stock_pb.RecordCountRequest(
            request_id=new_id("r"), item_id="RAW", lot_id="COIL-1", counted_quantity=40, **count
        )
    )
    await stock.stub.ReconcileCount(stock_pb.ReconcileCountRequest(request_id=new_id("r"), **count))


async def test_prometheus_loads_the_rules_and_every_dashboard_query_has_data(
    launcher: Launcher, tmp_path: Path
):
    services = await launcher.start_line()
    async with (
        running_prometheus(services, tmp_path) as prometheus,
        open_channel(services["stations"].address) as stations_channel,
        open_channel(services["stock"].address) as stock_channel,
    ):
        line = await Line(
            stations_pb2_grpc.StationsServiceStub(stations_channel), new_id("site")
        ).create(cards=3, container_quantity=500)
        stock = await StockSite(
            stock_pb2_grpc.StockServiceStub(stock_channel), line.site_id
        ).create()
        await shift(line, stock, services["alerts"], prometheus)
        shift_ended = time.monotonic()

        queries = dashboard_queries()
        series: dict[str, int] = {}

        async def every_query_has_data() -> bool:
            for query in (q for q in queries if q.where not in series):
                if found := await prometheus.query(query.promql(line.site_id)):
                    series[query.where] = len(found)
            return len(series) == len(queries)

        await eventually(every_query_has_data, timeout=DATA_SECONDS, interval=1)
        waited = time.monotonic() - shift_ended

        # Prometheus says "unknown" until a rule was evaluated, "err" if it failed.
        health: dict[str, str] = {}

        async def every_rule_evaluated() -> bool:
            groups = (await prometheus.api("rules"))["groups"]
            health.update({rule["name"]: rule["health"] for g in groups for rule in g["rules"]})
            return set(health.values()) == {"ok"}

        await eventually(every_rule_evaluated, timeout=DATA_SECONDS, interval=1)

    assert [q.where for q in queries if q.where not in series] == []
    assert health == {rule.get("alert") or rule["record"]: "ok" for rule in rules()}
    print(
        f"\n{len(queries)} dashboard queries returned {sum(series.values())} series "
        f"{waited:.1f} s after the shift; {len(health)} rules loaded and evaluated"
    )
