"""How a line performed over a window, and how many cards each loop needs: no I/O.

The input is the cards' trips round their loops. A trip starts when the consumer
empties a container (its signal is raised), waits until the supplier starts it,
and ends when the supplier completes the card, full again. Every figure here is
computed from those trips, so the real line and the simulator are read alike.
Times are in seconds, rates per hour, as planners read them.
"""

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.core.errors import InvalidArgument

HOUR = 3600.0
DAY = 24 * HOUR
YEAR = 365 * DAY
# Consumption's spread and trends are read from this many equal slices of the window.
BUCKETS = 12
# Little's law is checked within this share of the larger side, and ignored
# below the absolute slack (a loop with almost nothing moving adds up trivially).
LITTLE_TOLERANCE = 0.2
LITTLE_SLACK_CARDS = 0.05
# A station at this utilisation or above has no room left: it paces the line.
SATURATED = 0.85
MAX_SAFETY_FACTOR = 10.0


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidArgument("window", "must end after it starts")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class LoopShape:
    loop_id: str
    supplier_station_id: str
    consumer_station_id: str
    container_quantity: int
    # Cards going round now, those waiting to retire not counted.
    card_count: int


@dataclass(frozen=True)
class CardTrip:
    """One trip of a card: emptied (its signal raised), started, full again."""

    loop_id: str
    card_code: str
    raised_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Safety:
    """A loop's safety: a factor `a` in N = D x L x (1 + a) / C, or a service level
    (the chance a lead time's demand is covered) it is worked out from."""

    factor: float | None = None
    service_level: float | None = None

    def __post_init__(self) -> None:
        if (self.factor is None) == (self.service_level is None):
            raise InvalidArgument("safety", "give either a safety factor or a service level")
        if self.factor is not None and not 0 <= self.factor <= MAX_SAFETY_FACTOR:
            raise InvalidArgument("safety_factor", f"must be between 0 and {MAX_SAFETY_FACTOR:g}")
        if self.service_level is not None and not 0.5 <= self.service_level < 1:
            raise InvalidArgument("service_level", "must be at least 0.5 and below 1")


NO_SAFETY = Safety(factor=0.0)


@dataclass(frozen=True)
class Distribution:
    """Durations in seconds; percentiles by nearest rank, so each is a measured value."""

    count: int
    mean: float
    stdev: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution":
        ordered = sorted(values)
        if not ordered:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        return cls(
            count=len(ordered),
            mean=statistics.fmean(ordered),
            stdev=statistics.pstdev(ordered),
            p50=_nearest_rank(ordered, 50),
            p90=_nearest_rank(ordered, 90),
            p99=_nearest_rank(ordered, 99),
        )


@dataclass(frozen=True)
class LittleCheck:
    """Cards in replenishment, measured over time and as throughput x mean lead time."""

    measured_cards: float
    predicted_cards: float

    @property
    def adds_up(self) -> bool:
        gap = abs(self.measured_cards - self.predicted_cards)
        larger = max(self.measured_cards, self.predicted_cards)
        return gap <= max(LITTLE_SLACK_CARDS, LITTLE_TOLERANCE * larger)


@dataclass(frozen=True)
class Sizing:
    current_cards: int
    recommended_cards: int
    safety_factor: float
    demand_units_per_hour: float
    lead_time_hours: float
    # What the change would do: the loop's cap, and so its average stock, move by this.
    wip_change_units: int
    # The chance one lead time's demand exceeds the loop's cap, now and as recommended.
    stockout_risk_current: float
    stockout_risk_recommended: float


@dataclass(frozen=True)
class LoopAnalysis:
    shape: LoopShape
    completed_cards: int
    throughput_units_per_hour: float
    consumed_cards: int
    consumption_units_per_hour: float
    # Change of the consumption rate across the window, as a share of its mean.
    consumption_trend: float
    lead_time: Distribution
    waiting_time: Distribution
    process_time: Distribution
    average_replenishing_cards: float
    average_inventory_units: float
    # Stock in the supermarket plus the containers being made, as the board counts it.
    average_wip_units: float
    # Days of output the WIP holds; None when nothing was made.
    wip_turnover_days: float | None
    # Yearly consumption over average stock; None when the supermarket stayed empty.
    inventory_turnover_per_year: float | None
    stockout_fraction: float
    little: LittleCheck
    # None when no trip completed in the window: no lead time to size with.
    sizing: Sizing | None

    @property
    def loop_id(self) -> str:
        return self.shape.loop_id


@dataclass(frozen=True)
class StationAnalysis:
    station_id: str
    completed_cards: int
    # Share of the window with at least one card in process.
    utilisation: float
    # Signals raised and not yet started, averaged over the window.
    average_queue: float
    queue_growth_per_hour: float
    # The loops it supplies whose supermarket ran empty, and for what share of the window.
    starving_loops: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Bottleneck:
    station_id: str
    # Why: a sentence per fact, for the planner to check.
    evidence: list[str]


@dataclass(frozen=True)
class LineAnalysis:
    window: Window
    loops: list[LoopAnalysis]
    stations: list[StationAnalysis]
    bottleneck: Bottleneck | None


def analyze_line(
    loops: Sequence[LoopShape],
    trips: Iterable[CardTrip],
    window: Window,
    safety: Mapping[str, Safety] | None = None,
    default_safety: Safety = NO_SAFETY,
) -> LineAnalysis:
    """The line over `window`: each loop, each supplying station, and the bottleneck."""
    by_loop: dict[str, list[CardTrip]] = {shape.loop_id: [] for shape in loops}
    for trip in trips:
        if trip.loop_id in by_loop:
            by_loop[trip.loop_id].append(trip)
    safety = safety or {}
    loop_analyses = [
        analyze_loop(
            shape, by_loop[shape.loop_id], window, safety.get(shape.loop_id, default_safety)
        )
        for shape in loops
    ]
    stations = _analyze_stations(loops, by_loop, loop_analyses, window)
    return LineAnalysis(window, loop_analyses, stations, find_bottleneck(stations))


def analyze_loop(
    shape: LoopShape, trips: Sequence[CardTrip], window: Window, safety: Safety = NO_SAFETY
) -> LoopAnalysis:
    hours = window.seconds / HOUR
    quantity = shape.container_quantity
    completed = [t for t in trips if t.completed_at and _within(t.completed_at, window)]
    consumed = [t for t in trips if _within(t.raised_at, window)]
    started = [t for t in trips if t.started_at and _within(t.started_at, window)]
    lead_time = Distribution.of(_seconds(t.raised_at, t.completed_at) for t in completed)
    waiting = Distribution.of(_seconds(t.raised_at, t.started_at) for t in started)
    process = Distribution.of(_seconds(t.started_at, t.completed_at) for t in completed)

    replenishing = [(t.raised_at, t.completed_at) for t in trips]
    in_process = [(t.started_at, t.completed_at) for t in trips if t.started_at]
    average_replenishing = _time_average(replenishing, window)
    average_inventory = max(0.0, shape.card_count - average_replenishing) * quantity
    average_wip = average_inventory + _time_average(in_process, window) * quantity

    throughput = len(completed) * quantity / hours
    consumption = len(consumed) * quantity / hours
    demand_slices = _slice_counts([t.raised_at for t in consumed], window)
    little = LittleCheck(average_replenishing, len(completed) / hours * lead_time.mean / HOUR)
    return LoopAnalysis(
        shape=shape,
        completed_cards=len(completed),
        throughput_units_per_hour=throughput,
        consumed_cards=len(consumed),
        consumption_units_per_hour=consumption,
        consumption_trend=_trend(demand_slices),
        lead_time=lead_time,
        waiting_time=waiting,
        process_time=process,
        average_replenishing_cards=average_replenishing,
        average_inventory_units=average_inventory,
        average_wip_units=average_wip,
        wip_turnover_days=average_wip / (throughput * 24) if throughput else None,
        inventory_turnover_per_year=(
            consumption * YEAR / HOUR / average_inventory if average_inventory else None
        ),
        stockout_fraction=_share_at_least(replenishing, shape.card_count, window),
        little=little,
        sizing=(
            size_loop(
                shape,
                demand_units_per_hour=consumption,
                demand_stdev_per_hour=_stdev_per_hour(demand_slices, quantity, hours),
                lead_time=lead_time,
                safety=safety,
            )
            if lead_time.count
            else None
        ),
    )


def size_loop(
    shape: LoopShape,
    demand_units_per_hour: float,
    demand_stdev_per_hour: float,
    lead_time: Distribution,
    safety: Safety,
) -> Sizing:
    """N = ceil(D x L x (1 + a) / C), with `a` given or from a service level."""
    lead_hours = lead_time.mean / HOUR
    expected = demand_units_per_hour * lead_hours
    # Spread of a lead time's demand: demand varies hour to hour, and so does the lead time.
    spread = math.sqrt(
        lead_hours * demand_stdev_per_hour**2
        + (demand_units_per_hour * lead_time.stdev / HOUR) ** 2
    )
    if safety.factor is not None:
        factor = safety.factor
    else:
        assert safety.service_level is not None
        z = statistics.NormalDist().inv_cdf(safety.service_level)
        factor = min(MAX_SAFETY_FACTOR, z * spread / expected) if expected else 0.0
    # The small margin keeps an exact whole number of cards from rounding up in floating point.
    recommended = max(1, math.ceil(expected * (1 + factor) / shape.container_quantity - 1e-9))
    return Sizing(
        current_cards=shape.card_count,
        recommended_cards=recommended,
        safety_factor=factor,
        demand_units_per_hour=demand_units_per_hour,
        lead_time_hours=lead_hours,
        wip_change_units=(recommended - shape.card_count) * shape.container_quantity,
        stockout_risk_current=stockout_risk(
            shape.card_count * shape.container_quantity, expected, spread
        ),
        stockout_risk_recommended=stockout_risk(
            recommended * shape.container_quantity, expected, spread
        ),
    )


def stockout_risk(cap_units: float, expected_demand: float, spread: float) -> float:
    """The chance that demand over one lead time exceeds `cap_units`, demand taken as normal."""
    if spread <= 0:
        return 0.0 if cap_units >= expected_demand else 1.0
    return 1 - statistics.NormalDist(expected_demand, spread).cdf(cap_units)


def find_bottleneck(stations: Sequence[StationAnalysis]) -> Bottleneck | None:
    """The busiest station; the evidence says whether it also starves its consumers
    and lets its queue grow, which is what makes it the line's limit."""
    working = [s for s in stations if s.utilisation > 0]
    if not working:
        return None
    busiest = max(working, key=lambda s: (s.utilisation, s.queue_growth_per_hour))
    evidence = [f"busy {busiest.utilisation:.0%} of the window, the highest of the line"]
    if busiest.utilisation >= SATURATED:
        evidence.append(f"at or above {SATURATED:.0%}: no room left to catch up")
    for loop_id, share in sorted(busiest.starving_loops.items()):
        evidence.append(f"its loop {loop_id} had no full container {share:.0%} of the window")
    if busiest.queue_growth_per_hour > 0:
        evidence.append(
            f"its queue of waiting signals grew by {busiest.queue_growth_per_hour:.2f} an hour"
            f" (average {busiest.average_queue:.2f})"
        )
    return Bottleneck(busiest.station_id, evidence)


def _analyze_stations(
    loops: Sequence[LoopShape],
    by_loop: Mapping[str, list[CardTrip]],
    analyses: Sequence[LoopAnalysis],
    window: Window,
) -> list[StationAnalysis]:
    suppliers = sorted({shape.supplier_station_id for shape in loops})
    results = []
    for station_id in suppliers:
        supplied = [a for a in analyses if a.shape.supplier_station_id == station_id]
        trips = [t for a in supplied for t in by_loop[a.loop_id]]
        busy = [(t.started_at, t.completed_at) for t in trips if t.started_at]
        queued = [(t.raised_at, t.started_at) for t in trips]
        queue_slices = [_time_average(queued, part) for part in _slices(window)]
        results.append(
            StationAnalysis(
                station_id=station_id,
                completed_cards=sum(a.completed_cards for a in supplied),
                utilisation=_share_at_least(busy, 1, window),
                average_queue=_time_average(queued, window),
                queue_growth_per_hour=_slope(queue_slices) * BUCKETS / (window.seconds / HOUR),
                starving_loops={
                    a.loop_id: a.stockout_fraction for a in supplied if a.stockout_fraction > 0
                },
            )
        )
    return results


# Time arithmetic over intervals that may have begun before the window or not ended yet.

Interval = tuple[datetime | None, datetime | None]


def _within(moment: datetime, window: Window) -> bool:
    return window.start <= moment < window.end


def _seconds(start: datetime | None, end: datetime | None) -> float:
    assert start is not None and end is not None
    return (end - start).total_seconds()


def _clipped(interval: Interval, window: Window) -> tuple[datetime, datetime] | None:
    start, end = interval
    if start is None:
        return None
    start = max(start, window.start)
    end = window.end if end is None else min(end, window.end)
    return (start, end) if end > start else None


def _time_average(intervals: Iterable[Interval], window: Window) -> float:
    """How many intervals were open at once, on average over the window."""
    total = 0.0
    for interval in intervals:
        clipped = _clipped(interval, window)
        if clipped:
            total += (clipped[1] - clipped[0]).total_seconds()
    return total / window.seconds


def _share_at_least(intervals: Iterable[Interval], level: int, window: Window) -> float:
    """The share of the window during which at least `level` intervals were open."""
    changes: list[tuple[datetime, int]] = []
    for interval in intervals:
        clipped = _clipped(interval, window)
        if clipped:
            changes += [(clipped[0], 1), (clipped[1], -1)]
    # Ends sort before starts at the same moment: a card back as another leaves is no gap.
    changes.sort(key=lambda change: (change[0], change[1]))
    open_now, covered, since = 0, 0.0, window.start
    for moment, step in changes:
        if open_now >= level:
            covered += (moment - since).total_seconds()
        open_now += step
        since = moment
    return covered / window.seconds


def _slices(window: Window) -> list[Window]:
    step = (window.end - window.start) / BUCKETS
    return [Window(window.start + step * i, window.start + step * (i + 1)) for i in range(BUCKETS)]


def _slice_counts(moments: Iterable[datetime], window: Window) -> list[int]:
    counts = [0] * BUCKETS
    for moment in moments:
        index = int((moment - window.start) / (window.end - window.start) * BUCKETS)
        counts[min(index, BUCKETS - 1)] += 1
    return counts


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope of values taken at 0, 1, 2, ..."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(values)
    spread = sum((x - mean_x) ** 2 for x in range(n))
    return sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / spread


def _trend(counts: Sequence[int]) -> float:
    mean = statistics.fmean(counts)
    return _slope(counts) * len(counts) / mean if mean else 0.0


def _stdev_per_hour(counts: Sequence[int], quantity: int, hours: float) -> float:
    """Demand's standard deviation over one hour, from the slices' counts: variances add
    over time, so a slice's variance scales to an hour by their lengths' ratio."""
    slice_hours = hours / len(counts)
    variance = statistics.pvariance([c * quantity for c in counts])
    return math.sqrt(variance / slice_hours)


def _nearest_rank(ordered: Sequence[float], percent: int) -> float:
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]
