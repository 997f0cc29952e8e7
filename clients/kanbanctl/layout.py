"""A line layout file (examples/line.yaml): the site, its stations, items, loops,
warehouses, locations and products, read into the entities `kanbanctl apply` makes.
An optional `simulation:` section (see `simulation`) is for `kanbanctl simulate`
only: `apply` ignores it.

An entity is what one create RPC makes: its kind, its id within the site, and its
content. A field the file leaves out takes the value the create RPC would give
it (empty or 0), so that it compares with what the services store as they would.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _field
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
    unknown = set(layout) - {kind.section for kind in KINDS} - {SIMULATION}
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


# The section `kanbanctl simulate` reads, and what it may hold:
#
#   simulation:
#     hours: 72                # measured, after the warm-up
#     warmup_hours: 8
#     seed: 1
#     stations:                # each station's time per container (per order at a pacemaker)
#       WELD: {process_minutes: {mean: 9, distribution: lognormal, cv: 0.3}}
#       ASSY: {process_minutes: 2}          # a number: fixed
#     loops:
#       BRACKET: {usage: 4}    # input units per unit of the consumer's output (default 1)
#     demand:                  # customer orders at a pacemaker
#       ASSY: {units_per_hour: 50, distribution: exponential, order_quantity: 10}
SIMULATION = "simulation"
DISTRIBUTIONS = ("fixed", "exponential", "uniform", "lognormal")
ARRIVALS = ("exponential", "fixed")


@dataclass(frozen=True)
class ProcessTime:
    """Minutes per container: `fixed` and `exponential` take a mean, `uniform` a
    min and max, `lognormal` a mean and cv (standard deviation over mean)."""

    distribution: str = "fixed"
    mean: float = 0.0
    cv: float = 0.0
    min: float = 0.0
    max: float = 0.0

    @property
    def mean_minutes(self) -> float:
        return (self.min + self.max) / 2 if self.distribution == "uniform" else self.mean


@dataclass(frozen=True)
class DemandSpec:
    units_per_hour: float
    distribution: str = "exponential"
    # Units per order; None: the product's container quantity, else 1.
    order_quantity: int | None = None


@dataclass(frozen=True)
class Simulation:
    hours: float = 72.0
    warmup_hours: float = 8.0
    seed: int = 1
    process: Mapping[str, ProcessTime] = _field(default_factory=dict)
    usage: Mapping[str, float] = _field(default_factory=dict)
    demand: Mapping[str, DemandSpec] = _field(default_factory=dict)


def simulation(layout: Mapping[str, Any]) -> Simulation:
    """The layout's `simulation:` section (defaults if it has none), checked against
    its stations and loops: a bad field is refused, named by its path."""
    section = layout.get(SIMULATION) or {}
    where = SIMULATION
    _fields(where, section, {"hours", "warmup_hours", "seed", "stations", "loops", "demand"})
    stations = {e.get("station_id") for e in layout.get("stations") or [] if isinstance(e, dict)}
    loops = {e.get("loop_id") for e in layout.get("loops") or [] if isinstance(e, dict)}
    process: dict[str, ProcessTime] = {}
    for station_id, entry in _named(
        f"{where}.stations", section.get("stations"), stations, "station"
    ):
        at = f"{where}.stations.{station_id}"
        _fields(at, entry, {"process_minutes"})
        process[station_id] = _process_time(
            f"{at}.process_minutes", entry.get("process_minutes", 0)
        )
    usage: dict[str, float] = {}
    for loop_id, entry in _named(f"{where}.loops", section.get("loops"), loops, "loop"):
        at = f"{where}.loops.{loop_id}"
        _fields(at, entry, {"usage"})
        usage[loop_id] = _number(f"{at}.usage", entry.get("usage", 1), positive=True)
    demand: dict[str, DemandSpec] = {}
    for station_id, entry in _named(f"{where}.demand", section.get("demand"), stations, "station"):
        at = f"{where}.demand.{station_id}"
        _fields(at, entry, {"units_per_hour", "distribution", "order_quantity"})
        if "units_per_hour" not in entry:
            raise LayoutError(f"{at}.units_per_hour: required")
        distribution = entry.get("distribution", "exponential")
        if distribution not in ARRIVALS:
            raise LayoutError(f"{at}.distribution: must be one of {', '.join(ARRIVALS)}")
        quantity = entry.get("order_quantity")
        if quantity is not None and (type(quantity) is not int or quantity < 1):
            raise LayoutError(f"{at}.order_quantity: must be a whole number of at least 1")
        demand[station_id] = DemandSpec(
            _number(f"{at}.units_per_hour", entry["units_per_hour"]), distribution, quantity
        )
    seed = section.get("seed", 1)
    if type(seed) is not int:
        raise LayoutError(f"{where}.seed: must be a whole number")
    return Simulation(
        hours=_number(f"{where}.hours", section.get("hours", 72.0), positive=True),
        warmup_hours=_number(f"{where}.warmup_hours", section.get("warmup_hours", 8.0)),
        seed=seed,
        process=process,
        usage=usage,
        demand=demand,
    )


def _fields(where: str, entry: object, allowed: set[str]) -> None:
    if not isinstance(entry, dict):
        raise LayoutError(f"{where}: must be a mapping of fields")
    unknown = set(entry) - allowed
    if unknown:
        raise LayoutError(f"{where}: unknown field(s): {', '.join(sorted(map(str, unknown)))}")


def _named(
    where: str, entries: object, known: set[Any], what: str
) -> list[tuple[str, dict[str, Any]]]:
    """The entries of a mapping keyed by station or loop id, each a mapping itself."""
    if entries is None:
        return []
    if not isinstance(entries, dict):
        raise LayoutError(f"{where}: must be a mapping of {what} ids")
    for key in entries:
        if key not in known:
            raise LayoutError(f"{where}.{key}: no such {what} in the layout")
    return list(entries.items())


def _number(where: str, value: object, positive: bool = False) -> float:
    if type(value) not in (int, float):
        raise LayoutError(f"{where}: must be a number")
    number = float(value)  # type: ignore[arg-type]
    if number < 0 or (positive and number == 0):
        raise LayoutError(f"{where}: must be {'above' if positive else 'at least'} 0")
    return number


def _process_time(where: str, value: object) -> ProcessTime:
    if type(value) in (int, float):
        return ProcessTime("fixed", _number(where, value))
    _fields(where, value, {"distribution", "mean", "cv", "min", "max"})
    assert isinstance(value, dict)
    distribution = value.get("distribution", "fixed")
    if distribution not in DISTRIBUTIONS:
        raise LayoutError(f"{where}.distribution: must be one of {', '.join(DISTRIBUTIONS)}")
    needs = {"uniform": ("min", "max"), "lognormal": ("mean", "cv")}.get(distribution, ("mean",))
    for name in set(value) - {"distribution"} - set(needs):
        raise LayoutError(f"{where}.{name}: not a parameter of {distribution}")
    for name in needs:
        if name not in value:
            raise LayoutError(f"{where}.{name}: required for {distribution}")
    numbers = {name: _number(f"{where}.{name}", value[name]) for name in needs}
    if distribution == "uniform" and numbers["max"] < numbers["min"]:
        raise LayoutError(f"{where}.max: must be at least min")
    return ProcessTime(distribution, **numbers)
