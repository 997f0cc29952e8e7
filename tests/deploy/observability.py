"""What the checks of deploy/ share: the dashboards' queries with Grafana's variables
filled in, the Prometheus rules, the metric names an expression reads, and promtool."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

# Grafana picks windows from the scrape interval and the time range; any valid
# duration parses the same, and 5m spans the whole of the end-to-end test's shift.
WINDOW = "5m"


@dataclass(frozen=True)
class Query:
    # Dashboard, panel and query, to say which one failed.
    where: str
    # As Grafana sends it, with its variables.
    expr: str

    def promql(self, site_id: str) -> str:
        """The expression with the variables filled in, as Prometheus receives it."""
        values = {
            "site_id": site_id,
            "__rate_interval": WINDOW,
            "__interval": WINDOW,
            "__range": WINDOW,
        }
        return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], self.expr)


def load_dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[Query]:
    """Every query of every panel, and of every variable."""
    queries = []
    for dashboard in load_dashboards().values():
        title = dashboard["title"]
        for variable in dashboard.get("templating", {}).get("list", []):
            where = f"{title}: variable {variable['name']}"
            # label_values(metric, label) is Grafana's, not PromQL: this is what it asks.
            found = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"])
            assert found, f"{where}: not label_values(metric, label)"
            metric, label = found.groups()
            queries.append(Query(where, f"group by ({label}) ({metric})"))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                where = f"{title}: {panel['title']} ({target['refId']})"
                queries.append(Query(where, target["expr"]))
    return queries


def rules() -> list[dict[str, Any]]:
    """Every alerting and recording rule of deploy/prometheus/rules."""
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


# What PromQL spells with letters but is not a metric. Functions are recognised by
# the parenthesis that follows them.
_KEYWORDS = {"and", "or", "unless", "bool", "atan2", "group_left", "group_right", "inf", "nan"}
_LABEL_LISTS = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads, as written (recorded series included)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # ranges and subqueries
    bare = re.sub(r"\boffset\s+\w+", "", bare)
    bare = re.sub(_LABEL_LISTS, "", bare)
    names = set()
    for token in re.finditer(r"\d+(?:\.\d*)?(?:e[+-]?\d+)?|([a-zA-Z_:][\w:]*)(\s*\()?", bare):
        name, called = token.groups()
        if name and not called and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


@cache
def recorded() -> dict[str, str]:
    """Recorded series name -> the expression it is recorded from."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def source_metric_names(expr: str) -> set[str]:
    """The names the services must export for the expression: recorded series are
    followed to the expressions they are recorded from."""
    names = set()
    for name in metric_names(expr):
        names |= source_metric_names(recorded()[name]) if name in recorded() else {name}
    return names


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make system-deps` installs Debian's prometheus package"
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120, check=False)
