"""Opaque page tokens for keyset pagination: the last row's key, base64 JSON."""

import base64
import binascii
import json

from services.core.errors import InvalidArgument


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
    if (
        not isinstance(key, list)
        or len(key) != length
        or not all(isinstance(part, str) for part in key)
    ):
        raise InvalidArgument("page_token", "is not a token this service returned")
    return key
