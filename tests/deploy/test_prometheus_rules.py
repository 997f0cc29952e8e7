"""The Prometheus rules and the example configuration: promtool accepts them, every
alert is unit-tested both firing and quiet, and deploy/README.md explains each."""

import yaml

from services.devstack.__main__ import SERVICES, metrics_port
from tests.deploy.observability import (
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    RULE_TESTS,
    alerting_rules,
    metric_names,
    promtool,
)


def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", *map(str, RULE_FILES))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerts_pass_their_unit_tests():
    tested = promtool("test", "rules", *map(str, RULE_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_quiet():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alerting_rules()}

    assert alerts - firing == set(), "never seen firing"
    assert alerts - quiet == set(), "never seen quiet"


def test_every_alert_says_how_bad_it_is_and_what_happened():
    readme = (ROOT / "deploy" / "README.md").read_text()
    for rule in alerting_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        assert f"`{rule['alert']}`" in readme, f"deploy/README.md does not explain {rule['alert']}"


def test_the_example_config_scrapes_the_services_as_make_run_starts_them():
    path = PROMETHEUS_DIR / "prometheus.yml"
    checked = promtool("check", "config", str(path))
    config = yaml.safe_load(path.read_text())
    targets = {
        job["job_name"]: [
            target for static in job["static_configs"] for target in static["targets"]
        ]
        for job in config["scrape_configs"]
    }

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert targets == {f"kanban-{s}": [f"localhost:{metrics_port(s)}"] for s in SERVICES}


def test_metric_names_are_what_an_expression_reads():
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{code!~"OK|x"}[5m])))'
        " / on (job) group_left (site_id) b offset 1h > bool 1e3 or vector(Inf)"
    )

    assert metric_names(expr) == {"a_seconds_bucket", "b"}
