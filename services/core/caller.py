"""Who is calling, for the records that say who did what.

Until tokens identify callers, a caller names itself in the `kanban-actor`
metadata (a person's badge id, a terminal, "erp"); calls without it are
recorded as "anonymous".
"""

from typing import Any

from services.core.validation import require_text

ACTOR_METADATA = "kanban-actor"
ANONYMOUS = "anonymous"


def actor(context: Any) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA:
            return require_text(ACTOR_METADATA, str(value))
    return ANONYMOUS
