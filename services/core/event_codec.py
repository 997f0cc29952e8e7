"""Event dataclasses <-> `kanban.events.v1.Event`; field names match one to one."""

import dataclasses
import re
import typing
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from kanban.events.v1 import events_pb2

from services.core.errors import InvalidArgument
from services.core.events import PAYLOAD_TYPES, Payload
from services.core.inbox import ReceivedEvent
from services.core.protobuf import timestamp

T = TypeVar("T")


def _oneof_field(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _to_message(value: Any) -> Any:
    """A dataclass as the events_pb2 message of the same name."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is None:
            continue
        if isinstance(item, datetime):
            fields[field.name] = timestamp(item)
        elif isinstance(item, list):
            fields[field.name] = [
                _to_message(e) if dataclasses.is_dataclass(e) else e for e in item
            ]
        else:
            fields[field.name] = item
    return getattr(events_pb2, type(value).__name__)(**fields)


def _from_message(cls: type[T], message: Any) -> T:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        item, hint = getattr(message, field.name), hints[field.name]
        if hint is datetime:
            fields[field.name] = item.ToDatetime(tzinfo=UTC)
        elif hint == datetime | None:
            has = message.HasField(field.name)
            fields[field.name] = item.ToDatetime(tzinfo=UTC) if has else None
        elif typing.get_origin(hint) is list:
            (element,) = typing.get_args(hint)
            nested = dataclasses.is_dataclass(element)
            fields[field.name] = [_from_message(element, m) if nested else m for m in item]
        else:
            fields[field.name] = item
    return cls(**fields)


def to_proto(
    event_id: str, site_id: str, source: str, occurred_at: datetime, payload: Payload
) -> events_pb2.Event:
    return events_pb2.Event(
        event_id=event_id,
        site_id=site_id,
        source=source,
        occurred_at=timestamp(occurred_at),
        **{_oneof_field(type(payload)): _to_message(payload)},
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
    payload = _from_message(cls, message)
    return ReceivedEvent(
        event_id=event.event_id,
        site_id=event.site_id,
        source=event.source,
        occurred_at=event.occurred_at.ToDatetime(tzinfo=UTC),
        payload=payload,
    )
