"""Reading every page of a list RPC."""

from collections.abc import Awaitable, Callable
from typing import Any

# The largest page the services serve.
PAGE_SIZE = 1000


async def all_pages(method: Callable[[Any], Awaitable[Any]], request: Any, field: str) -> list[Any]:
    """Calls `method` page after page; returns the `field` entries of them all."""
    request.page_size = PAGE_SIZE
    found: list[Any] = []
    while True:
        reply = await method(request)
        found.extend(getattr(reply, field))
        if not reply.next_page_token:
            return found
        request.page_token = reply.next_page_token
