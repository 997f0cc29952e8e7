"""Every metric the dashboards and the alerts read is one the services export: a
renamed metric or a typo in a query fails here, not on an ops screen."""

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.observability import alerting_rules, dashboard_queries, source_metric_names

# Series Prometheus writes itself for each target it scrapes.
SCRAPE_SERIES = {"up"}
# The names a family's samples take, by its type.
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def series_names(exposition: str) -> set[str]:
    """Every series name the exposition declares. A labelled series has no sample
    until its first use, but its family is declared from the start."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }


async def test_every_metric_the_dashboards_and_alerts_read_is_exported(stack):
    # The stack's four services run in this process: the default registry holds
    # what all of them export on /metrics.
    exported = series_names(generate_latest(REGISTRY).decode())
    expressions = [(query.where, query.expr) for query in dashboard_queries()] + [
        (f"alert {rule['alert']}", rule["expr"]) for rule in alerting_rules()
    ]

    missing = {
        where: sorted(unknown)
        for where, expr in expressions
        if (unknown := source_metric_names(expr) - exported - SCRAPE_SERIES)
    }

    assert missing == {}
