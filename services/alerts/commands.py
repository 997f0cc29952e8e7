"""What callers ask the alerts service to do; each checks its own fields."""

import math
from dataclasses import dataclass

from services.alerts.domain import Rule, Scope
from services.core.errors import InvalidArgument
from services.core.validation import require_id, require_request_id, require_text

# A year, in seconds: no threshold of time needs more.
MAX_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True)
class AcknowledgeAlert:
    request_id: str
    site_id: str
    actor: str
    alert_id: str
    comment: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("alert_id", self.alert_id)
        require_text("comment", self.comment, required=False)


@dataclass(frozen=True)
class SetAlertThreshold:
    request_id: str
    site_id: str
    rule: Rule
    scope: Scope
    scope_id: str
    value: float

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        if self.scope is Scope.SITE:
            if self.scope_id:
                raise InvalidArgument("scope_id", "must be empty for the site scope")
        else:
            require_id("scope_id", self.scope_id)
        limit = 1.0 if self.rule is Rule.WIP_ABOVE_THRESHOLD else MAX_SECONDS
        unit = "a share of cap" if self.rule is Rule.WIP_ABOVE_THRESHOLD else "seconds"
        if math.isnan(self.value) or not 0 <= self.value <= limit:
            raise InvalidArgument("value", f"must be between 0 and {limit:g} ({unit})")
