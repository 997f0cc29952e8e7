"""Event dataclasses <-> `kanban.events.v1.Event`; field names match one to one."""

import dataclasses
import re
import uuid
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from kanban.events.v1 import events_pb2

from services.core.errors import InvalidArgument
from services.core.events import PAYLOAD_TYPES, Payload
from services.core.inbox import ReceivedEvent


def _oneof_field(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def to_proto(
    event_id: str, site_id: str, source: str, occurred_at: datetime, payload: Payload
) -> events_pb2.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(occurred_at)
    message = getattr(events_pb2, type(payload).__name__)(**dataclasses.asdict(payload))
    return events_pb2.Event(
        event_id=event_id,
        site_id=site_id,
        source=source,
        occurred_at=stamp,
        **{_oneof_field(type(payload)): message},
    )


def from_proto(event: events_pb2.Event) -> ReceivedEvent:
    try:
        uuid.UUID(event.event_id)
    except ValueError:
        raise InvalidArgument("events.event_id", "must be a UUID") from None
    field = event.WhichOneof("payload")
    if field is None:
        raise InvalidArgument("events.payload", "is empty or of a kind this service does not know")
    message = getattr(event, field)
    cls = PAYLOAD_TYPES[type(message).DESCRIPTOR.name]
    payload = cls(**{f.name: getattr(message, f.name) for f in dataclasses.fields(cls)})
    return ReceivedEvent(
        event_id=event.event_id,
        site_id=event.site_id,
        source=event.source,
        occurred_at=event.occurred_at.ToDatetime(tzinfo=UTC),
        payload=payload,
    )
