"""A line layout file (examples/line.yaml): the site, its stations, items, loops,
warehouses, locations and products, read into the entities `kanbanctl apply` makes.

An entity is what one create RPC makes: its kind, its id within the site, and its
content. A field the file leaves out takes the value the create RPC would give
it (empty or 0), so that it compares with what the services store as they would.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kanban.stock.v1 import stock_pb2


class LayoutError(ValueError):
    """The file is not a layout: says where, so it can be fixed."""


@dataclass(frozen=True)
class Kind:
    name: str
    # Where the file lists them, and the field that is their id.
    section: str
    key: str
    # Their content, each field with its type.
    fields: Mapping[str, type]


SITE = Kind("site", "site", "site_id", {"name": str})
STATION = Kind("station", "stations", "station_id", {"name": str})
ITEM = Kind("item", "items", "item_id", {"description": str, "unit_of_measure": str})
LOOP = Kind(
    "loop",
    "loops",
    "loop_id",
    {
        "item_id": str,
        "supplier_station_id": str,
        "consumer_station_id": str,
        "supermarket_location_id": str,
        "container_quantity": int,
        "card_count": int,
    },
)
WAREHOUSE = Kind("warehouse", "warehouses", "warehouse_id", {"name": str})
# A location's kind is written without its prefix: WAREHOUSE_BIN, QUARANTINE ...
LOCATION = Kind("location", "locations", "location_id", {"warehouse_id": str, "kind": str})
PRODUCT = Kind(
    "product",
    "products",
    "item_id",
    {"pacemaker_station_id": str, "container_quantity": int, "finished_goods_location_id": str},
)
# In the order they are created: each may name those before it.
KINDS = (SITE, STATION, ITEM, LOOP, WAREHOUSE, LOCATION, PRODUCT)

LOCATION_KINDS = tuple(
    value.name.removeprefix("LOCATION_KIND_")
    for value in stock_pb2.LocationKind.DESCRIPTOR.values
    if value.number
)


@dataclass(frozen=True)
class Entity:
    kind: Kind
    key: str
    content: Mapping[str, str | int]

    def __str__(self) -> str:
        return f"{self.kind.name} {self.key}"


def load_layout(path: Path) -> dict[str, Any]:
    try:
        layout = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise LayoutError(f"{path}: not YAML: {error}") from error
    if not isinstance(layout, dict):
        raise LayoutError(f"{path}: not a layout (a mapping with site, stations, ...)")
    return layout


def entities(layout: Mapping[str, Any]) -> list[Entity]:
    """Every entity of the layout, in creation order; the site first."""
    unknown = set(layout) - {kind.section for kind in KINDS}
    if unknown:
        raise LayoutError(f"unknown section(s): {', '.join(sorted(unknown))}")
    if not isinstance(layout.get("site"), dict):
        raise LayoutError("site: required, with site_id and name")
    found = [_entity(SITE, "site", layout["site"])]
    for kind in KINDS[1:]:
        entries = layout.get(kind.section) or []
        if not isinstance(entries, list):
            raise LayoutError(f"{kind.section}: must be a list")
        keys: set[str] = set()
        for n, entry in enumerate(entries):
            entity = _entity(kind, f"{kind.section}[{n}]", entry)
            if entity.key in keys:
                raise LayoutError(f"{kind.section}[{n}]: {kind.key} {entity.key} appears twice")
            keys.add(entity.key)
            found.append(entity)
    return found


def _entity(kind: Kind, where: str, entry: object) -> Entity:
    if not isinstance(entry, dict):
        raise LayoutError(f"{where}: must be a mapping of fields")
    unknown = set(entry) - {kind.key, *kind.fields}
    if unknown:
        raise LayoutError(f"{where}: unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    key = entry.get(kind.key)
    if not key:
        raise LayoutError(f"{where}: {kind.key} is required")
    if not isinstance(key, str):
        raise LayoutError(f"{where}: {kind.key} must be text (quote it)")
    content: dict[str, str | int] = {}
    for field, type_ in kind.fields.items():
        value = entry.get(field, type_())
        # The exact type: a bool is an int to isinstance, but never a quantity.
        if not isinstance(value, str | int) or type(value) is not type_:
            raise LayoutError(f"{where}: {field} must be {'a number' if type_ is int else 'text'}")
        content[field] = value
    if kind is LOCATION and content["kind"] not in LOCATION_KINDS:
        raise LayoutError(f"{where}: kind must be one of {', '.join(LOCATION_KINDS)}")
    return Entity(kind, key, content)
