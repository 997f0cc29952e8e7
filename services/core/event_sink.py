"""The gRPC receiver of events, the same in every service that consumes them."""

from kanban.events.v1 import events_pb2, events_pb2_grpc

from services.core import event_codec, metrics
from services.core.db import Database
from services.core.inbox import EventHandler, apply_once


class EventSinkServicer(events_pb2_grpc.EventSinkServiceServicer):  # type: ignore[misc]
    def __init__(self, db: Database, handler: EventHandler) -> None:
        self._db = db
        self._handler = handler

    async def DeliverEvents(
        self, request: events_pb2.DeliverEventsRequest, context: object
    ) -> events_pb2.DeliverEventsResponse:
        # All checked before any is applied: a malformed event refuses the whole batch.
        received = [event_codec.from_proto(message) for message in request.events]
        applied = await apply_once(self._db, received, self._handler) if received else []
        for event, is_new in zip(received, applied, strict=True):
            outcome = "applied" if is_new else "duplicate"
            metrics.INBOX_EVENTS.labels(type(event.payload).__name__, outcome).inc()
        return events_pb2.DeliverEventsResponse(
            applied_count=sum(applied), duplicate_count=len(applied) - sum(applied)
        )
