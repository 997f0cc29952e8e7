"""Settings of one service process, read from the environment."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from services.core.db import database_url, start_embedded_postgres

EMBEDDED_DATA_DIR = Path(__file__).resolve().parents[2] / "var" / "pgdata"

# Every service that may receive events; KANBAN_<NAME>_ADDR says where it listens.
PEERS = ("orders", "stations", "stock", "alerts")


@dataclass(frozen=True)
class Settings:
    database_url: str
    grpc_port: int = 0
    # None: no /metrics endpoint (tests read the registry directly).
    metrics_port: int | None = None
    # Event destination name -> address, e.g. {"stock": "localhost:50052"}.
    peers: dict[str, str] = field(default_factory=dict)
    heartbeat_seconds: float = 5.0
    relay_poll_seconds: float = 1.0
    # Delivered events are kept this long (to look into what was sent), then deleted;
    # the deletion runs every outbox_prune_seconds.
    outbox_retention_seconds: float = 7 * 24 * 3600.0
    outbox_prune_seconds: float = 3600.0
    gauge_refresh_seconds: float = 2.0
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    # Alerts: how often time-based rules are evaluated, how long a condition must
    # stay clear before its alert resolves, and where alert changes are POSTed.
    alert_evaluate_seconds: float = 5.0
    alert_clear_seconds: float = 60.0
    alert_webhook_urls: tuple[str, ...] = ()
    # Stations: how often the analysis gauges are computed, over how long a window
    # ending now, and how often due sizing policies are applied.
    analysis_refresh_seconds: float = 60.0
    analysis_window_seconds: float = 24 * 3600.0
    sizing_check_seconds: float = 60.0
    # Every call needs a bearer token; off only for tests and trials, and never
    # in production, which also refuses development tokens.
    auth_enabled: bool = True
    production: bool = False
    # The token this service presents when it delivers events to the others.
    service_token: str = ""
    # PEM files. With a certificate and its key the gRPC port speaks TLS only; with a
    # client CA too, callers must present a certificate it signed (mutual TLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # The CA this service trusts when it delivers events to its peers; unset, the
    # relay speaks plaintext.
    tls_ca_file: str = ""
    # A plaintext port serving gRPC health only, for Kubernetes probes, which cannot
    # speak TLS. None: no such port; 0 picks one.
    health_port: int | None = None

    @classmethod
    def from_env(cls, service: str) -> "Settings":
        env = os.environ
        metrics_port = env.get("KANBAN_METRICS_PORT")
        health_port = env.get("KANBAN_HEALTH_PORT")
        return cls(
            database_url=database_url(service) or start_embedded_postgres(EMBEDDED_DATA_DIR),
            grpc_port=int(env.get("KANBAN_GRPC_PORT", "0")),
            metrics_port=int(metrics_port) if metrics_port else None,
            peers={
                name: env[f"KANBAN_{name.upper()}_ADDR"]
                for name in PEERS
                if env.get(f"KANBAN_{name.upper()}_ADDR")
            },
            heartbeat_seconds=float(env.get("KANBAN_HEARTBEAT_SECONDS", "5")),
            outbox_retention_seconds=float(env.get("KANBAN_OUTBOX_RETENTION_SECONDS", "604800")),
            outbox_prune_seconds=float(env.get("KANBAN_OUTBOX_PRUNE_SECONDS", "3600")),
            shutdown_grace_seconds=float(env.get("KANBAN_SHUTDOWN_GRACE_SECONDS", "10")),
            log_level=env.get("KANBAN_LOG_LEVEL", "INFO"),
            alert_evaluate_seconds=float(env.get("KANBAN_ALERT_EVALUATE_SECONDS", "5")),
            alert_clear_seconds=float(env.get("KANBAN_ALERT_CLEAR_SECONDS", "60")),
            analysis_refresh_seconds=float(env.get("KANBAN_ANALYSIS_REFRESH_SECONDS", "60")),
            analysis_window_seconds=float(env.get("KANBAN_ANALYSIS_WINDOW_SECONDS", "86400")),
            sizing_check_seconds=float(env.get("KANBAN_SIZING_CHECK_SECONDS", "60")),
            auth_enabled=env.get("KANBAN_AUTH", "on") != "off",
            production=env.get("KANBAN_ENVIRONMENT", "development") == "production",
            service_token=env.get("KANBAN_SERVICE_TOKEN", ""),
            tls_cert_file=env.get("KANBAN_TLS_CERT_FILE", ""),
            tls_key_file=env.get("KANBAN_TLS_KEY_FILE", ""),
            tls_client_ca_file=env.get("KANBAN_TLS_CLIENT_CA_FILE", ""),
            tls_ca_file=env.get("KANBAN_TLS_CA_FILE", ""),
            health_port=int(health_port) if health_port else None,
            alert_webhook_urls=tuple(
                url for url in env.get("KANBAN_ALERT_WEBHOOK_URLS", "").split(",") if url
            ),
        )
