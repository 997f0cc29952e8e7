"""Small conversions every servicer needs."""

import enum
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from services.core.errors import InvalidArgument

# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
# Its first and last second are refused: asyncpg stores datetime.min and datetime.max
# as -infinity and infinity, which come back without a time zone.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def read_timestamp(field: str, message: Any, name: str | None = None) -> datetime | None:
    """The Timestamp field `name` (default: `field`) of `message`; None when not set."""
    name = name or field
    if not message.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    if not (_MIN_SECONDS < stamp.seconds < _MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000):
        raise InvalidArgument(field, "is not a valid timestamp")
    when: datetime = stamp.ToDatetime(tzinfo=UTC)
    return when


# Proto enums are the domain enums with a prefix: LOT_STATUS_QUARANTINED <-> QUARANTINED.
E = TypeVar("E", bound=enum.Enum)


def enum_from_proto(wrapper: EnumTypeWrapper, cls: type[E], value: int, field: str) -> E | None:
    """A proto enum value as the domain's enum of the same name; UNSPECIFIED is None."""
    if value == 0:
        return None
    prefix = wrapper.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    try:
        return cls(wrapper.Name(value).removeprefix(prefix))
    except ValueError:
        raise InvalidArgument(field, f"unknown value {value}") from None


def required_enum(wrapper: EnumTypeWrapper, cls: type[E], value: int, field: str) -> E:
    parsed = enum_from_proto(wrapper, cls, value, field)
    if parsed is None:
        raise InvalidArgument(field, "is required")
    return parsed


def enum_to_proto(wrapper: EnumTypeWrapper, value: enum.Enum | None) -> int:
    if value is None:
        return 0
    prefix = wrapper.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    return int(wrapper.Value(prefix + value.value))
