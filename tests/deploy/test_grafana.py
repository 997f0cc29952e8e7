"""The Grafana dashboards, checked without Grafana: valid JSON, unique ids, the
provisioned datasource everywhere, and PromQL that Prometheus's parser accepts."""

import re
from collections import Counter

import yaml

from tests.deploy.observability import (
    DASHBOARD_FILES,
    GRAFANA_DIR,
    dashboard_queries,
    load_dashboards,
    panels,
    promtool,
)

PROVISIONING = GRAFANA_DIR / "provisioning"


def provisioned_datasource_uid() -> str:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    [datasource] = config["datasources"]
    assert datasource["type"] == "prometheus"
    return str(datasource["uid"])


def test_the_dashboards_are_json_with_unique_uids_and_panel_ids():
    dashboards = load_dashboards()  # raises on invalid JSON

    assert len(dashboards) == 4, DASHBOARD_FILES
    uids = Counter(d["uid"] for d in dashboards.values())
    assert [uid for uid, n in uids.items() if n > 1] == []
    for path, dashboard in dashboards.items():
        ids = Counter(p["id"] for p in panels(dashboard))
        assert [i for i, n in ids.items() if n > 1] == [], path.name


def test_every_panel_and_variable_reads_the_provisioned_datasource():
    uid = provisioned_datasource_uid()
    elsewhere = []
    for path, dashboard in load_dashboards().items():
        for variable in dashboard["templating"]["list"]:
            if variable["datasource"].get("uid") != uid:
                elsewhere.append(f"{path.name}: variable {variable['name']}")
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            if panel.get("datasource", {}).get("uid") != uid:
                elsewhere.append(f"{path.name}: {panel['title']}")
            # A target without a datasource reads the panel's.
            for target in panel.get("targets", []):
                if target.get("datasource", {"uid": uid}).get("uid") != uid:
                    elsewhere.append(f"{path.name}: {panel['title']} ({target['refId']})")
    assert elsewhere == []


def test_grafana_loads_the_dashboards_from_files():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "kanban.yml").read_text())
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses them as recording rules, named after the panel they come from."""
    queries = dashboard_queries()
    rules = [
        {"record": re.sub(r"\W+", "_", query.where), "expr": query.promql(site_id="PLANT1")}
        for query in queries
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))

    checked = promtool("check", "rules", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(queries)} rules found" in checked.stdout
