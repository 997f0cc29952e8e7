"""Event dataclasses <-> `kanban.events.v1.Event`; field names match one to one."""

import dataclasses
import math
import re
import typing
import uuid
from datetime import datetime
from typing import Any, TypeVar

from kanban.events.v1 import events_pb2

from services.core.errors import InvalidArgument
from services.core.events import PAYLOAD_TYPES, Payload
from services.core.inbox import ReceivedEvent
from services.core.protobuf import read_timestamp, timestamp
from services.core.validation import optional_id, require_id

T = TypeVar("T")

# A received event is checked before it is applied: the sink takes what any caller
# sends, and a malformed fact must be refused, not fail in a handler or the database.
# Quantities stay far below where sums of them would overflow a bigint.
MAX_NUMBER = 10**15
MAX_TEXT = 2000
MAX_LIST = 1000
# Numbers that are never zero in a fact: a movement moves something, a loop holds
# something, an instruction asks for something.
POSITIVE = {
    "LoopDefined": ("cap_units",),
    "CardEmptied": ("quantity",),
    "CardFilled": ("quantity",),
    "InstructionCompleted": ("quantity",),
    "ReleasedInstruction": ("quantity",),
}


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


def _from_message(cls: type[T], message: Any, path: str) -> T:
    """The dataclass from its message, each field checked; `path` names the message
    in refusals, e.g. "events.card_filled"."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        item, hint, where = getattr(message, field.name), hints[field.name], f"{path}.{field.name}"
        if hint in (datetime, datetime | None):
            fields[field.name] = read_timestamp(where, message, field.name)
            if fields[field.name] is None and hint is datetime:
                raise InvalidArgument(where, "is required")
        elif typing.get_origin(hint) is list:
            if len(item) > MAX_LIST:
                raise InvalidArgument(where, f"must have at most {MAX_LIST} entries")
            (element,) = typing.get_args(hint)
            if isinstance(element, type) and dataclasses.is_dataclass(element):
                fields[field.name] = [_from_message(element, m, where) for m in item]
            else:
                fields[field.name] = [_checked(where, field.name, m) for m in item]
        else:
            fields[field.name] = _checked(where, field.name, item)
    for name in POSITIVE.get(cls.__name__, ()):
        if fields[name] <= 0:
            raise InvalidArgument(f"{path}.{name}", "must be greater than zero")
    return cls(**fields)


def _checked(where: str, name: str, value: Any) -> Any:
    """A scalar as the services send it: ids are ids, texts storable, numbers in range."""
    if isinstance(value, str):
        if name.endswith(("_id", "_code", "_codes")):
            return optional_id(where, value)
        if len(value) > MAX_TEXT or "\x00" in value:
            raise InvalidArgument(where, f"must be at most {MAX_TEXT} characters, without NUL")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int) and not 0 <= value <= MAX_NUMBER:
        raise InvalidArgument(where, f"must be between 0 and {MAX_NUMBER}")
    elif isinstance(value, float) and not (math.isfinite(value) and value >= 0):
        raise InvalidArgument(where, "must be a finite number, zero or more")
    return value


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
    require_id("events.site_id", event.site_id)
    require_id("events.source", event.source)
    occurred_at = read_timestamp("events.occurred_at", event, "occurred_at")
    if occurred_at is None:
        raise InvalidArgument("events.occurred_at", "is required")
    field = event.WhichOneof("payload")
    if field is None:
        raise InvalidArgument("events.payload", "is empty or of a kind this service does not know")
    message = getattr(event, field)
    cls = PAYLOAD_TYPES[type(message).DESCRIPTOR.name]
    payload = _from_message(cls, message, f"events.{field}")
    return ReceivedEvent(
        event_id=event.event_id,
        site_id=event.site_id,
        source=event.source,
        occurred_at=occurred_at,
        payload=payload,
    )
