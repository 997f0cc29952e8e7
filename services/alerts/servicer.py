"""gRPC face of the alerts service: translates messages, nothing more."""

from collections.abc import AsyncIterator

from kanban.alerts.v1 import alerts_pb2 as pb
from kanban.alerts.v1 import alerts_pb2_grpc

from services.alerts import commands, service, storage, webhooks
from services.alerts.domain import Alert, AlertState, Rule, Scope, Threshold
from services.core.auth import actor
from services.core.config import Settings
from services.core.db import Database
from services.core.feeds import Heartbeat
from services.core.notify import Notifications
from services.core.periodic import every
from services.core.protobuf import enum_from_proto, enum_to_proto, required_enum, timestamp
from services.core.server import Components

# Webhook deliveries due are looked for this often.
WEBHOOK_POLL_SECONDS = 0.5


def _alert(a: Alert) -> pb.Alert:
    return pb.Alert(
        site_id=a.site_id,
        alert_id=a.alert_id,
        rule=enum_to_proto(pb.Rule, a.rule),
        severity=enum_to_proto(pb.Severity, a.severity),
        state=enum_to_proto(pb.AlertState, a.state),
        subject=a.subject,
        message=a.message,
        value=a.value,
        threshold=a.threshold,
        fired_at=timestamp(a.fired_at),
        acknowledged_by=a.acknowledged_by,
        acknowledge_comment=a.acknowledge_comment,
        acknowledged_at=timestamp(a.acknowledged_at) if a.acknowledged_at else None,
        resolved_at=timestamp(a.resolved_at) if a.resolved_at else None,
        sequence=a.sequence,
    )


def _threshold(t: Threshold) -> pb.AlertThreshold:
    return pb.AlertThreshold(
        site_id=t.site_id,
        rule=enum_to_proto(pb.Rule, t.rule),
        scope=enum_to_proto(pb.ScopeKind, t.scope),
        scope_id=t.scope_id,
        value=t.value,
    )


class AlertsServicer(alerts_pb2_grpc.AlertsServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        db: Database,
        evaluator: service.Evaluator,
        notifications: Notifications,
        settings: Settings,
    ) -> None:
        self._db = db
        self._evaluator = evaluator
        self._notifications = notifications
        self._settings = settings

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: object
    ) -> pb.ListAlertsResponse:
        page = await service.list_alerts(
            self._db,
            request.site_id,
            enum_from_proto(pb.AlertState, AlertState, request.state, "state"),
            enum_from_proto(pb.Rule, Rule, request.rule, "rule"),
            request.open_only,
            request.page_size,
            request.page_token,
        )
        return pb.ListAlertsResponse(
            alerts=[_alert(a) for a in page.rows], next_page_token=page.next_page_token
        )

    async def GetAlert(self, request: pb.GetAlertRequest, context: object) -> pb.GetAlertResponse:
        alert = await service.get_alert(self._db, request.site_id, request.alert_id)
        return pb.GetAlertResponse(alert=_alert(alert))

    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: object
    ) -> pb.AcknowledgeAlertResponse:
        alert = await self._evaluator.acknowledge(
            commands.AcknowledgeAlert(
                request.request_id,
                request.site_id,
                actor(),
                request.alert_id,
                request.comment,
            )
        )
        return pb.AcknowledgeAlertResponse(alert=_alert(alert))

    async def WatchAlerts(
        self, request: pb.WatchAlertsRequest, context: object
    ) -> AsyncIterator[pb.WatchAlertsResponse]:
        changes = service.watch_alerts(
            self._db,
            self._notifications,
            request.site_id,
            request.after_sequence,
            self._settings.heartbeat_seconds,
        )
        async for change in changes:
            if isinstance(change, Heartbeat):
                yield pb.WatchAlertsResponse(
                    heartbeat=pb.Heartbeat(
                        sent_at=timestamp(change.sent_at), last_sequence=change.last_sequence
                    )
                )
            else:
                yield pb.WatchAlertsResponse(alert=_alert(change))

    async def SetAlertThreshold(
        self, request: pb.SetAlertThresholdRequest, context: object
    ) -> pb.SetAlertThresholdResponse:
        rule = required_enum(pb.Rule, Rule, request.rule, "rule")
        scope = required_enum(pb.ScopeKind, Scope, request.scope, "scope")
        threshold = await service.set_threshold(
            self._db,
            commands.SetAlertThreshold(
                request.request_id,
                request.site_id,
                rule,
                scope,
                request.scope_id,
                request.value,
            ),
        )
        return pb.SetAlertThresholdResponse(threshold=_threshold(threshold))

    async def ListAlertThresholds(
        self, request: pb.ListAlertThresholdsRequest, context: object
    ) -> pb.ListAlertThresholdsResponse:
        page = await service.list_thresholds(
            self._db, request.site_id, request.page_size, request.page_token
        )
        return pb.ListAlertThresholdsResponse(
            thresholds=[_threshold(t) for t in page.rows],
            next_page_token=page.next_page_token,
        )


def assemble(db: Database, settings: Settings) -> Components:
    notifications = Notifications(settings.database_url, storage.ALERTS_CHANNEL)
    picture_changed = Notifications(settings.database_url, storage.PICTURE_CHANNEL)
    evaluator = service.Evaluator(db, settings)
    return Components(
        servicers=[
            (
                alerts_pb2_grpc.add_AlertsServiceServicer_to_server,
                AlertsServicer(db, evaluator, notifications, settings),
            ),
        ],
        service_names=[pb.DESCRIPTOR.services_by_name["AlertsService"].full_name],
        background=[
            notifications.run(),
            picture_changed.run(),
            evaluator.run(picture_changed),
            every(WEBHOOK_POLL_SECONDS, lambda: webhooks.deliver_due(db)),
        ],
        on_stop=[notifications.close, picture_changed.close],
    )
