"""Opaque page tokens for keyset pagination: the last row's key, base64 JSON."""

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.core.errors import InvalidArgument

T = TypeVar("T")


def encode_token(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_token(token: str, length: int) -> list[str] | None:
    """The key after which the page starts, or None for the first page."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        key = None
    # Keys are ids, numbers and times, all printable; anything else (a NUL, which
    # PostgreSQL cannot take) was not made here.
    if (
        not isinstance(key, list)
        or len(key) != length
        or not all(isinstance(part, str) and part.isprintable() for part in key)
    ):
        raise InvalidArgument("page_token", "is not a token this service returned")
    return key


def decode_position(token: str) -> int | None:
    """The number (an id or a sequence) after which a page starts, or None."""
    key = decode_token(token, 1)
    if key is None:
        return None
    # The digits of a bigint: str.isdigit() alone also takes "²", which int() refuses,
    # and PostgreSQL compares no larger number with an id.
    digits = key[0]
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19) or int(digits) >= 2**63:
        raise InvalidArgument("page_token", "is not a token this service returned")
    return int(digits)


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_page_token: str


def page_of(rows: list[T], limit: int, key: Callable[[T], list[str]]) -> Page[T]:
    """A page from up to limit + 1 rows read: the extra one says there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_token(key(rows[-1])) if more and rows else "")
