"""Checks shared by every service's commands; each names the field at fault."""

import re

from services.core.errors import InvalidArgument

# Codes are printed on cards and typed by scanners: keep them plain.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_REQUEST_ID = 128
MAX_TEXT = 200
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def require_id(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _ID.fullmatch(value):
        raise InvalidArgument(
            field, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def optional_id(field: str, value: str) -> str:
    return require_id(field, value) if value else value


def require_request_id(value: str) -> str:
    if not value:
        raise InvalidArgument("request_id", "is required: a unique id per intended change")
    if len(value) > MAX_REQUEST_ID or not value.isprintable():
        raise InvalidArgument(
            "request_id", f"must be at most {MAX_REQUEST_ID} printable characters"
        )
    return value


def require_text(field: str, value: str, *, required: bool = True) -> str:
    if required and not value.strip():
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_TEXT or not value.isprintable():
        raise InvalidArgument(field, f"must be at most {MAX_TEXT} printable characters")
    return value


def require_positive(field: str, value: int, *, maximum: int) -> int:
    if value <= 0:
        raise InvalidArgument(field, "must be greater than zero")
    if value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum}")
    return value


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE
