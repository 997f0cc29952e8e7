"""Who may call each RPC of the alerts service."""

from services.core.auth import EVERY_ROLE, Role, allow, for_service

# Every person and terminal may see the alerts.
READ_ALERTS = allow(*EVERY_ROLE)
TUNE = allow(Role.PLANNER, Role.ADMIN)

PERMISSIONS = for_service(
    "kanban.alerts.v1.AlertsService",
    {
        "ListAlerts": READ_ALERTS,
        "GetAlert": READ_ALERTS,
        "WatchAlerts": READ_ALERTS,
        "AcknowledgeAlert": allow(Role.PLANNER, Role.WAREHOUSE, Role.QUALITY, Role.ADMIN),
        "SetAlertThreshold": TUNE,
        "ListAlertThresholds": TUNE,
    },
)
