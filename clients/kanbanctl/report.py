"""What `kanbanctl apply` did to each entity, and the summary it prints."""

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from clients.kanbanctl.layout import Entity


class Status(StrEnum):
    CREATED = "created"
    # A loop whose card count the file changed: ResizeLoop.
    RESIZED = "resized"
    UNCHANGED = "unchanged"
    DIFFERS = "differs"
    FAILED = "failed"


# Why an entity that exists with other content stays as it is.
_NO_UPDATE = "the services have no update for an existing {kind}"
_WHY_UNCHANGEABLE = {
    "loop": "of an existing loop only card_count can change, by a resize",
    "product": "a product is fixed once defined",
}


@dataclass(frozen=True)
class Outcome:
    entity: Entity
    status: Status
    detail: str = ""


def differs(entity: Entity, what: str) -> Outcome:
    why = _WHY_UNCHANGEABLE.get(entity.kind.name, _NO_UPDATE.format(kind=entity.kind.name))
    return Outcome(entity, Status.DIFFERS, f"{what}; cannot be changed in place ({why})")


@dataclass(frozen=True)
class Report:
    outcomes: list[Outcome]

    @property
    def ok(self) -> bool:
        """Everything in the file is now as the file says."""
        return all(
            o.status in (Status.CREATED, Status.RESIZED, Status.UNCHANGED) for o in self.outcomes
        )

    def render(self) -> str:
        width = max((len(o.entity.key) for o in self.outcomes), default=0)
        lines = [
            f"{o.entity.kind.name:<9} {o.entity.key:<{width}}  {o.status}"
            + (f": {o.detail}" if o.detail else "")
            for o in self.outcomes
        ]
        counts = Counter(o.status for o in self.outcomes)
        summary = ", ".join(f"{counts[s]} {s}" for s in Status if counts[s])
        lines.append(f"{len(self.outcomes)} entities: {summary or 'none'}")
        if not self.ok:
            lines.append("Not everything is as the file says: see 'differs' and 'failed' above.")
        return "\n".join(lines)
