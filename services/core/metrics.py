"""Metrics every service exports: per-RPC counters and latency, event delivery."""

from prometheus_client import Counter, Histogram, start_http_server

RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

RPC_STARTED = Counter("grpc_server_started", "RPCs started on the server.", RPC_LABELS)
RPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by status code.",
    (*RPC_LABELS, "grpc_code"),
)
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to sending its status.",
    RPC_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_DELIVERED = Counter(
    "kanban_outbox_events_delivered",
    "Outbox events acknowledged by their destination.",
    ("destination",),
)
OUTBOX_FAILURES = Counter(
    "kanban_outbox_delivery_failures",
    "Failed attempts to deliver an outbox batch.",
    ("destination",),
)
OUTBOX_PRUNED = Counter(
    "kanban_outbox_events_pruned",
    "Delivered outbox events deleted once kept for the retention period.",
)
INBOX_EVENTS = Counter(
    "kanban_inbox_events",
    "Events received, by whether they were new or duplicates.",
    ("event_type", "outcome"),
)


def serve_metrics(port: int) -> int:
    """Starts the /metrics HTTP endpoint; returns the port it listens on."""
    server, _thread = start_http_server(port)
    return int(server.server_port)
