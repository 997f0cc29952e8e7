"""Small conversions every servicer needs."""

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from services.core.errors import InvalidArgument

# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
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
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000):
        raise InvalidArgument(field, "is not a valid timestamp")
    when: datetime = stamp.ToDatetime(tzinfo=UTC)
    return when
