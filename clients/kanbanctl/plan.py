"""What applying a layout would do: each entity is missing (to be created), the
same as the services have it, or different from it."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clients.kanbanctl.layout import Entity

# What exists: (kind name, key) -> the content the services keep.
Current = Mapping[tuple[str, str], Mapping[str, str | int]]


@dataclass(frozen=True)
class Difference:
    field: str
    stored: str | int
    wanted: str | int

    def __str__(self) -> str:
        return f"{self.field} {self.stored!r} -> {self.wanted!r}"


@dataclass(frozen=True)
class Step:
    entity: Entity
    exists: bool
    differences: tuple[Difference, ...] = ()


def plan(wanted: Sequence[Entity], current: Current) -> list[Step]:
    steps = []
    for entity in wanted:
        stored = current.get((entity.kind.name, entity.key))
        if stored is None:
            steps.append(Step(entity, exists=False))
            continue
        # A field the reading did not see cannot be told apart: it is not a difference.
        differences = tuple(
            Difference(field, stored[field], value)
            for field, value in entity.content.items()
            if field in stored and stored[field] != value
        )
        steps.append(Step(entity, exists=True, differences=differences))
    return steps
