"""`kanbanctl simulate`: a discrete-event simulation of a kanban line, read from the
same layout file as `kanbanctl apply` (its `simulation:` section gives the process
times and the demand), to preview a change before making it. No I/O here: the
drive mode, which plays a run against the real services, is clients/kanbanctl/drive.py.

The model, kept simple:

- Every loop starts with all its cards FULL: each a full container in its supermarket.
- Each supplying station is a single server working a FIFO queue of jobs: the
  signals of the loops it supplies (make one container), and at a pacemaker the
  customer orders. A station takes its next job when idle, gathers the job's inputs,
  then works it for a time drawn from its process-time distribution (per container,
  or per order at a pacemaker).
- Inputs: a station consumes, for each loop it is the consumer of, `usage` units
  (1 unless the layout says) per unit it makes. It uses its line-side container of
  that loop; when that runs out it takes a full container from the supermarket,
  which empties the card: the card's trip begins (raised), a signal joins the
  supplier's queue, the trip is started when the supplier starts working it and
  completed when the full container is back in the supermarket. If the supermarket
  has no full container, the station waits (a stockout of the loop: counted, and
  the time waited summed) until one comes back.
- Customer demand arrives at the pacemakers (the products' pacemaker stations, and
  any station that consumes but supplies no loop) as orders of a fixed quantity,
  at a rate in units per hour, exponential (or fixed) inter-arrival times.
- Each station and each demand stream draws from a random.Random of its own, seeded
  from the run's seed and its name: the same seed gives the same run, and a changed
  line (cards, container sizes, demand) sees the same customers and the same luck,
  so that baseline and change compare fairly.
- The first `warmup_hours` are left out: the analysis window is the `hours` after.

Every figure a loop or supplying station reports comes from the cards' trips through
services.stations.analytics, as the real line's would; the bottleneck is the one
analytics finds. Stockout counts and waits, demand served and backlog, and the
utilisation of a pacemaker that supplies no loop are counted here.
"""

import heapq
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.kanbanctl.layout import (
    ARRIVALS,
    DemandSpec,
    LayoutError,
    ProcessTime,
    Simulation,
    entities,
    simulation,
)
from services.stations.analytics import (
    HOUR,
    CardTrip,
    LoopShape,
    Window,
    analyze_line,
)

# Simulated time 0: any fixed moment will do, the analysis only reads differences.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
# Units left at line side below this are nothing (usage may be fractional).
EPSILON = 1e-9


class SimulationError(ValueError):
    """A change or option that does not fit the line: says which."""


@dataclass(frozen=True)
class LoopModel:
    loop_id: str
    item_id: str
    supplier_station_id: str
    consumer_station_id: str
    container_quantity: int
    card_count: int
    # Units of this loop's item per unit the consumer makes.
    usage: float = 1.0

    def card_codes(self) -> list[str]:
        return [f"{self.loop_id}-{n:03d}" for n in range(1, self.card_count + 1)]


@dataclass(frozen=True)
class DemandModel:
    station_id: str
    units_per_hour: float
    distribution: str
    order_quantity: int


@dataclass(frozen=True)
class LineModel:
    site_id: str
    stations: tuple[str, ...]
    loops: tuple[LoopModel, ...]
    process: Mapping[str, ProcessTime]
    pacemakers: tuple[str, ...]
    demand: tuple[DemandModel, ...]
    # Units per order at each pacemaker when no demand says otherwise.
    order_quantities: Mapping[str, int] = field(default_factory=dict)

    def loop(self, loop_id: str) -> LoopModel:
        for loop in self.loops:
            if loop.loop_id == loop_id:
                return loop
        raise SimulationError(f"{loop_id}: no such loop in the layout")


@dataclass(frozen=True)
class Changes:
    """What a preview changes: cards and container size per loop, demand per
    pacemaker (units per hour), and a factor on all demand (after those)."""

    cards: Mapping[str, int] = field(default_factory=dict)
    container: Mapping[str, int] = field(default_factory=dict)
    demand: Mapping[str, float] = field(default_factory=dict)
    demand_scale: float = 1.0

    def __bool__(self) -> bool:
        return bool(self.cards or self.container or self.demand or self.demand_scale != 1.0)

    def describe(self) -> list[str]:
        said = [f"loop {k}: {v} cards" for k, v in sorted(self.cards.items())]
        said += [f"loop {k}: containers of {v}" for k, v in sorted(self.container.items())]
        said += [f"demand at {k}: {v:g} units/h" for k, v in sorted(self.demand.items())]
        if self.demand_scale != 1.0:
            said.append(f"all demand x {self.demand_scale:g}")
        return said


def model_from_layout(layout: Mapping[str, Any]) -> tuple[LineModel, Simulation]:
    """The line a layout describes, and its `simulation:` settings; LayoutError if
    either is malformed."""
    found = entities(layout)
    settings = simulation(layout)
    site_id = found[0].key
    stations = tuple(e.key for e in found if e.kind.name == "station")
    loops = tuple(
        LoopModel(
            loop_id=e.key,
            item_id=str(e.content["item_id"]),
            supplier_station_id=str(e.content["supplier_station_id"]),
            consumer_station_id=str(e.content["consumer_station_id"]),
            container_quantity=int(e.content["container_quantity"]),
            card_count=int(e.content["card_count"]),
            usage=settings.usage.get(e.key, 1.0),
        )
        for e in found
        if e.kind.name == "loop"
    )
    for loop in loops:
        for station_id in (loop.supplier_station_id, loop.consumer_station_id):
            if station_id not in stations:
                raise LayoutError(f"loop {loop.loop_id}: no station {station_id} in the layout")
        if loop.container_quantity < 1 or loop.card_count < 1:
            raise LayoutError(f"loop {loop.loop_id}: needs a container quantity and cards")
    order_quantities = {
        str(e.content["pacemaker_station_id"]): int(e.content["container_quantity"]) or 1
        for e in found
        if e.kind.name == "product"
    }
    suppliers = {loop.supplier_station_id for loop in loops}
    consumers = {loop.consumer_station_id for loop in loops}
    pacemakers = tuple(
        s for s in stations if s in order_quantities or (s in consumers and s not in suppliers)
    )
    demand = []
    for station_id, spec in settings.demand.items():
        if station_id not in pacemakers:
            raise LayoutError(
                f"simulation.demand.{station_id}: not a pacemaker (a product's, or a station"
                " that consumes and supplies no loop)"
            )
        demand.append(_demand(station_id, spec, order_quantities))
    model = LineModel(
        site_id=site_id,
        stations=stations,
        loops=loops,
        process=dict(settings.process),
        pacemakers=pacemakers,
        demand=tuple(demand),
        order_quantities=order_quantities,
    )
    return model, settings


def _demand(station_id: str, spec: DemandSpec, quantities: Mapping[str, int]) -> DemandModel:
    quantity = spec.order_quantity or quantities.get(station_id, 1)
    return DemandModel(station_id, spec.units_per_hour, spec.distribution, quantity)


def apply_changes(model: LineModel, changes: Changes) -> LineModel:
    """The line with the changes made, and nothing else changed."""
    known = {loop.loop_id for loop in model.loops}
    for what, values in (("--cards", changes.cards), ("--container", changes.container)):
        for loop_id, value in values.items():
            if loop_id not in known:
                raise SimulationError(f"{what} {loop_id}: no such loop in the layout")
            if value < 1:
                raise SimulationError(f"{what} {loop_id}: must be at least 1")
    for station_id, rate in changes.demand.items():
        if station_id not in model.pacemakers:
            raise SimulationError(f"--demand {station_id}: not a pacemaker of the line")
        if rate < 0:
            raise SimulationError(f"--demand {station_id}: must be at least 0")
    if changes.demand_scale < 0:
        raise SimulationError("--demand-scale: must be at least 0")
    loops = tuple(
        replace(
            loop,
            card_count=changes.cards.get(loop.loop_id, loop.card_count),
            container_quantity=changes.container.get(loop.loop_id, loop.container_quantity),
        )
        for loop in model.loops
    )
    demand = {d.station_id: d for d in model.demand}
    for station_id, rate in changes.demand.items():
        if station_id in demand:
            demand[station_id] = replace(demand[station_id], units_per_hour=rate)
        else:
            quantity = model.order_quantities.get(station_id, 1)
            demand[station_id] = DemandModel(station_id, rate, ARRIVALS[0], quantity)
    scaled = tuple(
        replace(d, units_per_hour=d.units_per_hour * changes.demand_scale) for d in demand.values()
    )
    return replace(model, loops=loops, demand=scaled)


# What the run did, as a terminal would have told the services (for the drive mode).
@dataclass(frozen=True)
class Action:
    at_seconds: float
    # "scan" (the consumer took a full container), "start" or "complete" (the supplier).
    kind: str
    station_id: str
    loop_id: str
    card_code: str
    quantity: int = 0


@dataclass(frozen=True)
class LoopResult:
    loop_id: str
    supplier_station_id: str
    consumer_station_id: str
    card_count: int
    container_quantity: int
    average_wip_units: float
    throughput_units_per_hour: float
    consumption_units_per_hour: float
    # Units the consumer used in the window (line side included), and containers it took.
    units_consumed: float
    containers_taken: int
    # Times the consumer found the supermarket empty, and the hours it waited.
    stockouts: int
    stockout_wait_hours: float
    # Share of the window with every card in replenishment (from analytics).
    stockout_fraction: float
    lead_time_p50_hours: float
    lead_time_p90_hours: float
    recommended_cards: int | None
    # The most full containers the supermarket ever held (never above the cards).
    max_full: int


@dataclass(frozen=True)
class StationResult:
    station_id: str
    utilisation: float
    completed: int
    # Signals waiting, on average (0 at a pacemaker that supplies no loop).
    average_queue: float
    pacemaker: bool


@dataclass(frozen=True)
class DemandResult:
    station_id: str
    units_per_hour: float
    order_quantity: int
    orders_arrived: int
    served_units: int
    # Units ordered and not yet made, at the window's start and at its end.
    backlog_start_units: int
    backlog_units: int
    average_wait_hours: float


@dataclass(frozen=True)
class BottleneckResult:
    station_id: str
    evidence: list[str]


@dataclass(frozen=True)
class Result:
    hours: float
    warmup_hours: float
    seed: int
    loops: list[LoopResult]
    stations: list[StationResult]
    demand: list[DemandResult]
    bottleneck: BottleneckResult | None
    # Not in the JSON: the raw material the figures came from.
    trips: list[CardTrip] = field(repr=False, compare=False)
    actions: list[Action] = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "warmup_hours": self.warmup_hours,
            "seed": self.seed,
            "loops": [vars(loop) for loop in self.loops],
            "stations": [vars(station) for station in self.stations],
            "demand": [vars(demand) for demand in self.demand],
            "bottleneck": vars(self.bottleneck) if self.bottleneck else None,
        }


def sample_minutes(rng: random.Random, process: ProcessTime) -> float:
    if process.distribution == "uniform":
        return rng.uniform(process.min, process.max)
    mean = process.mean
    if mean <= 0:
        return 0.0
    if process.distribution == "exponential":
        return rng.expovariate(1 / mean)
    if process.distribution == "lognormal" and process.cv > 0:
        sigma2 = math.log(1 + process.cv**2)
        return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
    return mean


def simulate(model: LineModel, hours: float, warmup_hours: float = 0.0, seed: int = 1) -> Result:
    """Runs the line for `warmup_hours` plus `hours`; the figures are of the `hours`."""
    if hours <= 0 or warmup_hours < 0:
        raise SimulationError("--hours must be above 0 and --warmup-hours at least 0")
    run = _Run(model, seed, (warmup_hours + hours) * HOUR)
    run.go()
    return run.result(hours, warmup_hours, seed)


@dataclass
class _Trip:
    loop_id: str
    card_code: str
    raised: float
    started: float | None = None
    completed: float | None = None


@dataclass
class _Order:
    station_id: str
    quantity: int
    arrived: float
    completed: float | None = None


@dataclass
class _Job:
    units: int
    loop: LoopModel | None = None
    trip: _Trip | None = None
    order: _Order | None = None


@dataclass
class _Station:
    station_id: str
    inputs: list[LoopModel]
    rng: random.Random
    queue: deque[_Job] = field(default_factory=deque)
    busy: bool = False
    # The head job's inputs still to take from line side, per loop.
    needs: dict[str, float] | None = None
    blocked_on: str | None = None
    blocked_since: float = 0.0
    work: list[tuple[float, float]] = field(default_factory=list)


class _Run:
    def __init__(self, model: LineModel, seed: int, end: float) -> None:
        self.model = model
        self.end = end
        self.now = 0.0
        self.events: list[tuple[float, int, str, Any]] = []
        self.sequence = 0
        self.loops = {loop.loop_id: loop for loop in model.loops}
        self.full = {loop.loop_id: deque(loop.card_codes()) for loop in model.loops}
        self.max_full = {loop.loop_id: loop.card_count for loop in model.loops}
        self.line_side = {loop.loop_id: 0.0 for loop in model.loops}
        self.stations = {
            s: _Station(
                s,
                [loop for loop in model.loops if loop.consumer_station_id == s],
                random.Random(f"{seed}:process:{s}"),
            )
            for s in model.stations
        }
        self.trips: list[_Trip] = []
        self.orders: list[_Order] = []
        self.actions: list[Action] = []
        # Per loop: (time, units) used, and (start, end) of each stockout wait.
        self.used: dict[str, list[tuple[float, float]]] = {k: [] for k in self.loops}
        self.taken: dict[str, list[float]] = {k: [] for k in self.loops}
        self.stockouts: dict[str, list[tuple[float, float]]] = {k: [] for k in self.loops}
        self.demand_rng = {
            d.station_id: random.Random(f"{seed}:demand:{d.station_id}") for d in model.demand
        }
        for demand in model.demand:
            self._next_order(demand)

    def _at(self, when: float, kind: str, payload: Any) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (when, self.sequence, kind, payload))

    def _next_order(self, demand: DemandModel) -> None:
        if demand.units_per_hour <= 0:
            return
        mean = demand.order_quantity / demand.units_per_hour * HOUR
        rng = self.demand_rng[demand.station_id]
        gap = mean if demand.distribution == "fixed" else rng.expovariate(1 / mean)
        self._at(self.now + gap, "order", demand)

    def go(self) -> None:
        while self.events and self.events[0][0] < self.end:
            self.now, _, kind, payload = heapq.heappop(self.events)
            if kind == "order":
                order = _Order(payload.station_id, payload.order_quantity, self.now)
                self.orders.append(order)
                self._queue(payload.station_id, _Job(order.quantity, order=order))
                self._next_order(payload)
            else:
                self._done(payload)
        self.now = self.end
        for station in self.stations.values():
            if station.blocked_on is not None:
                self.stockouts[station.blocked_on].append((station.blocked_since, self.end))

    def _queue(self, station_id: str, job: _Job) -> None:
        self.stations[station_id].queue.append(job)
        self._try_start(self.stations[station_id])

    def _try_start(self, station: _Station) -> None:
        if station.busy or not station.queue:
            return
        job = station.queue[0]
        if station.needs is None:
            station.needs = {loop.loop_id: loop.usage * job.units for loop in station.inputs}
        if not self._gather(station):
            return
        station.queue.popleft()
        station.needs = None
        station.busy = True
        duration = sample_minutes(station.rng, self._process(station.station_id)) * 60
        station.work.append((self.now, self.now + duration))
        if job.trip is not None and job.loop is not None:
            job.trip.started = self.now
            self._act("start", station.station_id, job.loop, job.trip.card_code)
        self._at(self.now + duration, "done", (station, job))

    def _process(self, station_id: str) -> ProcessTime:
        return self.model.process.get(station_id, ProcessTime())

    def _gather(self, station: _Station) -> bool:
        """Takes the head job's inputs; False if a supermarket is empty (it waits)."""
        assert station.needs is not None
        for loop in station.inputs:
            need = station.needs[loop.loop_id]
            if need <= EPSILON:
                continue
            while self.line_side[loop.loop_id] + EPSILON < need:
                if not self.full[loop.loop_id]:
                    if station.blocked_on != loop.loop_id:
                        station.blocked_on, station.blocked_since = loop.loop_id, self.now
                    return False
                self._take(station, loop)
            if station.blocked_on == loop.loop_id:
                self.stockouts[loop.loop_id].append((station.blocked_since, self.now))
                station.blocked_on = None
            self.line_side[loop.loop_id] = max(0.0, self.line_side[loop.loop_id] - need)
            station.needs[loop.loop_id] = 0.0
            self.used[loop.loop_id].append((self.now, need))
        return True

    def _take(self, station: _Station, loop: LoopModel) -> None:
        """The consumer takes a full container: its card empties and signals the supplier."""
        code = self.full[loop.loop_id].popleft()
        self.line_side[loop.loop_id] += loop.container_quantity
        self.taken[loop.loop_id].append(self.now)
        self._act("scan", station.station_id, loop, code)
        trip = _Trip(loop.loop_id, code, self.now)
        self.trips.append(trip)
        self._queue(loop.supplier_station_id, _Job(loop.container_quantity, loop, trip))

    def _done(self, payload: tuple[_Station, _Job]) -> None:
        station, job = payload
        station.busy = False
        if job.order is not None:
            job.order.completed = self.now
        if job.trip is not None and job.loop is not None:
            loop = job.loop
            job.trip.completed = self.now
            self._act("complete", station.station_id, loop, job.trip.card_code, job.units)
            self.full[loop.loop_id].append(job.trip.card_code)
            self.max_full[loop.loop_id] = max(
                self.max_full[loop.loop_id], len(self.full[loop.loop_id])
            )
            consumer = self.stations[loop.consumer_station_id]
            if consumer.blocked_on == loop.loop_id:
                self._try_start(consumer)
        self._try_start(station)

    def _act(self, kind: str, station_id: str, loop: LoopModel, code: str, units: int = 0) -> None:
        self.actions.append(Action(self.now, kind, station_id, loop.loop_id, code, units))

    def result(self, hours: float, warmup_hours: float, seed: int) -> Result:
        start = warmup_hours * HOUR
        window = Window(EPOCH + timedelta(seconds=start), EPOCH + timedelta(seconds=self.end))
        shapes = [
            LoopShape(
                loop.loop_id,
                loop.supplier_station_id,
                loop.consumer_station_id,
                loop.container_quantity,
                loop.card_count,
            )
            for loop in self.model.loops
        ]
        trips = [
            CardTrip(
                t.loop_id,
                t.card_code,
                EPOCH + timedelta(seconds=t.raised),
                _moment(t.started),
                _moment(t.completed),
            )
            for t in self.trips
        ]
        analysis = analyze_line(shapes, trips, window)
        span = self.end - start
        loops = [
            LoopResult(
                loop_id=a.loop_id,
                supplier_station_id=a.shape.supplier_station_id,
                consumer_station_id=a.shape.consumer_station_id,
                card_count=a.shape.card_count,
                container_quantity=a.shape.container_quantity,
                average_wip_units=a.average_wip_units,
                throughput_units_per_hour=a.throughput_units_per_hour,
                consumption_units_per_hour=a.consumption_units_per_hour,
                units_consumed=sum(u for t, u in self.used[a.loop_id] if start <= t < self.end),
                containers_taken=sum(1 for t in self.taken[a.loop_id] if start <= t < self.end),
                stockouts=sum(1 for s, _ in self.stockouts[a.loop_id] if start <= s),
                stockout_wait_hours=_overlap(self.stockouts[a.loop_id], start, self.end) / HOUR,
                stockout_fraction=a.stockout_fraction,
                lead_time_p50_hours=a.lead_time.p50 / HOUR,
                lead_time_p90_hours=a.lead_time.p90 / HOUR,
                recommended_cards=a.sizing.recommended_cards if a.sizing else None,
                max_full=self.max_full[a.loop_id],
            )
            for a in analysis.loops
        ]
        supplying = {s.station_id: s for s in analysis.stations}
        stations = []
        for station_id in self.model.stations:
            if station_id in supplying:
                s = supplying[station_id]
                stations.append(
                    StationResult(
                        station_id,
                        s.utilisation,
                        s.completed_cards,
                        s.average_queue,
                        station_id in self.model.pacemakers,
                    )
                )
            elif station_id in self.model.pacemakers:
                work = self.stations[station_id].work
                done = sum(
                    1 for o in self.orders if o.station_id == station_id and _in(o, start, self.end)
                )
                stations.append(
                    StationResult(
                        station_id, _overlap(work, start, self.end) / span, done, 0.0, True
                    )
                )
        demand = [self._demand_result(d, start) for d in self.model.demand]
        bottleneck = (
            BottleneckResult(analysis.bottleneck.station_id, list(analysis.bottleneck.evidence))
            if analysis.bottleneck
            else None
        )
        return Result(
            hours,
            warmup_hours,
            seed,
            loops,
            stations,
            demand,
            bottleneck,
            trips,
            self.actions,
        )

    def _demand_result(self, demand: DemandModel, start: float) -> DemandResult:
        orders = [o for o in self.orders if o.station_id == demand.station_id]
        served = [o for o in orders if _in(o, start, self.end)]
        waits = [o.completed - o.arrived for o in served if o.completed is not None]
        return DemandResult(
            station_id=demand.station_id,
            units_per_hour=demand.units_per_hour,
            order_quantity=demand.order_quantity,
            orders_arrived=sum(1 for o in orders if start <= o.arrived),
            served_units=sum(o.quantity for o in served),
            backlog_start_units=_backlog(orders, start),
            backlog_units=_backlog(orders, self.end),
            average_wait_hours=sum(waits) / len(waits) / HOUR if waits else 0.0,
        )


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else EPOCH + timedelta(seconds=seconds)


def _in(order: _Order, start: float, end: float) -> bool:
    return order.completed is not None and start <= order.completed < end


def _backlog(orders: Sequence[_Order], moment: float) -> int:
    return sum(
        o.quantity
        for o in orders
        if o.arrived <= moment and (o.completed is None or o.completed > moment)
    )


def _overlap(intervals: Sequence[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)


def render(baseline: Result, changed: Result | None = None, changes: Changes | None = None) -> str:
    """The run (and the changed line's, side by side) as a planner reads it."""
    runs = [baseline] if changed is None else [baseline, changed]
    heads = ["baseline"] if changed is None else ["baseline", "changed"]
    lines = [
        f"simulated {baseline.hours:g} h after a warm-up of {baseline.warmup_hours:g} h,"
        f" seed {baseline.seed}"
    ]
    if changes:
        lines.append("changed: " + "; ".join(changes.describe()))
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    for n, loop in enumerate(baseline.loops):
        others = [run.loops[n] for run in runs]
        row(f"loop {loop.loop_id} ({loop.supplier_station_id} -> {loop.consumer_station_id})", [])
        row("  cards", [str(x.card_count) for x in others])
        row("  container units", [str(x.container_quantity) for x in others])
        row("  average WIP units", [f"{x.average_wip_units:.0f}" for x in others])
        row("  throughput units/h", [f"{x.throughput_units_per_hour:.1f}" for x in others])
        row("  stockouts", [str(x.stockouts) for x in others])
        row("  stockout wait h", [f"{x.stockout_wait_hours:.1f}" for x in others])
        row("  no full container", [f"{x.stockout_fraction:.0%}" for x in others])
        row("  lead time p50 h", [f"{x.lead_time_p50_hours:.2f}" for x in others])
        row("  lead time p90 h", [f"{x.lead_time_p90_hours:.2f}" for x in others])
        row(
            "  recommended cards",
            ["-" if x.recommended_cards is None else str(x.recommended_cards) for x in others],
        )
    for n, station in enumerate(baseline.stations):
        label = f"station {station.station_id}" + (" (pacemaker)" if station.pacemaker else "")
        row(f"{label} utilisation", [f"{run.stations[n].utilisation:.0%}" for run in runs])
    for n, demand in enumerate(baseline.demand):
        others_d = [run.demand[n] for run in runs]
        row(f"demand at {demand.station_id} units/h", [f"{x.units_per_hour:g}" for x in others_d])
        row("  served units", [str(x.served_units) for x in others_d])
        row("  backlog units at the end", [str(x.backlog_units) for x in others_d])
        row("  average order wait h", [f"{x.average_wait_hours:.2f}" for x in others_d])
    row("bottleneck", [run.bottleneck.station_id if run.bottleneck else "none" for run in runs])
    width = max(len(label) for label, _ in rows) + 2
    lines.append(" " * width + "".join(f"{head:>12}" for head in heads))
    for label, values in rows:
        lines.append((label.ljust(width) + "".join(f"{v:>12}" for v in values)).rstrip())
    for head, run in zip(heads, runs, strict=True):
        if run.bottleneck:
            lines.append(f"bottleneck ({head}) {run.bottleneck.station_id}:")
            lines += [f"  - {fact}" for fact in run.bottleneck.evidence]
    return "\n".join(lines)
