"""A loop's automatic sizing policy: the planner's bounds and pace, with no I/O."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.stations.analytics import Safety, Sizing


@dataclass(frozen=True)
class SizingPolicy:
    site_id: str
    loop_id: str
    enabled: bool
    min_cards: int
    max_cards: int
    safety: Safety
    # At most one resize per period; demand and lead time are read over the window.
    period: timedelta
    window: timedelta
    checked_at: datetime | None = None
    resized_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.enabled and (self.checked_at is None or self.checked_at + self.period <= now)

    def target(self, sizing: Sizing | None, current_cards: int) -> int:
        """The cards the loop should have: the recommendation within the bounds. With no
        trip completed there is nothing to size with, so only the bounds apply."""
        wanted = current_cards if sizing is None else sizing.recommended_cards
        return min(self.max_cards, max(self.min_cards, wanted))

    def checked(self, now: datetime, resized: bool) -> "SizingPolicy":
        return replace(self, checked_at=now, resized_at=now if resized else self.resized_at)


def enabled_safeties(policies: Mapping[str, SizingPolicy]) -> dict[str, Safety]:
    """By loop, the safety of each enabled policy: what the loop is sized with."""
    return {loop_id: policy.safety for loop_id, policy in policies.items() if policy.enabled}
