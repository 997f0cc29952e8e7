"""Plain-data round trip for frozen dataclasses (commands, results, events).

The request log stores each mutation's answer, and the outbox each event, as
JSON; this turns them back into the dataclasses the service layer speaks.
"""

import dataclasses
import enum
import functools
import json
import types
import typing
from datetime import datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")


# Per class, once: these run for every answer, audit record and event.
@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def from_plain(cls: type[T], data: Any) -> T:
    return typing.cast(T, _decode(cls, data))


def _decode(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = (a for a in typing.get_args(hint) if a is not type(None))
        return _decode(inner, data)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(hint)
        items = [_decode(inner, v) for v in data]
        return tuple(items) if origin is tuple else items
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _type_hints(hint)
        return hint(**{name: _decode(hints[name], v) for name, v in data.items()})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    if hint is datetime:
        return datetime.fromisoformat(data)
    if hint is timedelta:
        return timedelta(seconds=data)
    return data


def dumps(value: Any) -> str:
    return json.dumps(to_plain(value), sort_keys=True, separators=(",", ":"))
