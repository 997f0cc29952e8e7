"""Errors a caller can act on, raised by domain and service code.

They carry no gRPC or protobuf types; `services.core.rpc_errors` turns them into
a `google.rpc.Status` with BadRequest or ErrorInfo details.
"""

from collections.abc import Mapping


class KanbanError(Exception):
    """A refusal the caller caused; never a bug on our side."""


class InvalidArgument(KanbanError):
    """A request field is malformed: the caller must change the request."""

    def __init__(self, field: str, description: str) -> None:
        # No field (""): the request as a whole is at fault.
        super().__init__(f"{field}: {description}" if field else description)
        self.field = field
        self.description = description


class NotFound(KanbanError):
    def __init__(self, resource: str, key: str) -> None:
        super().__init__(f"{resource} {key!r} not found")
        self.resource = resource
        self.key = key


class AlreadyExists(KanbanError):
    def __init__(self, resource: str, key: str, reason: str = "ALREADY_EXISTS") -> None:
        super().__init__(f"{resource} {key!r} already exists with different content")
        self.resource = resource
        self.key = key
        self.reason = reason


class FailedPrecondition(KanbanError):
    """The request is well formed but the system's state refuses it.

    `reason` is a stable UPPER_SNAKE_CASE code (e.g. OVERPRODUCTION_BLOCKED) that
    programs switch on; `metadata` carries the facts behind it (e.g. the card's
    current state).
    """

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})


def require_same(resource: str, key: str, wanted: object, stored: object) -> None:
    """Creating what exists with the same content is a no-op; with other content, refused."""
    if wanted != stored:
        raise AlreadyExists(resource, key)
